"""``python -m nanotf.course build [NAME ...] | check | learner OUT_DIR`` (see notebooks.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import notebooks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nanotf.course", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="execute the sources and write the .ipynb with outputs")
    b.add_argument("names", nargs="*", help="notebooks to build (e.g. 03): default all")
    sub.add_parser("check", help="list the notebooks whose .ipynb is out of date (exit 1)")
    learner = sub.add_parser("learner", help="write the learner's copies, solutions removed")
    learner.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)
    try:
        paths = notebooks.sources()
        if args.command == "build":
            if args.names:
                chosen = [p for p in paths if any(p.stem.startswith(n) for n in args.names)]
                unknown = [n for n in args.names if not any(p.stem.startswith(n) for p in paths)]
                if unknown:
                    parser.error(f"no notebook named {', '.join(unknown)}")
                paths = chosen
            for name, seconds, figures in notebooks.build(paths):
                print(f"built {name}.ipynb: {seconds:.1f} s, {figures} figures")
            return 0
        if args.command == "check":
            out_of_date = notebooks.stale(paths)
            for line in out_of_date:
                print(f"out of date: {line}")
            if not out_of_date:
                print(f"all {len(paths)} notebooks are up to date")
            return 1 if out_of_date else 0
        for path in notebooks.learner_copies(args.out_dir, paths):
            print(f"wrote {path}")
        return 0
    except (ImportError, FileNotFoundError, ValueError, RuntimeError) as err:
        print(f"python -m nanotf.course {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
