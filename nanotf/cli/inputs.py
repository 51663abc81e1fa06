"""What the commands that read a trained checkpoint share (``translate``, ``generate``): the
``--checkpoint`` option, the texts to work on (arguments, or lines of standard input) and
``--backend``."""

from __future__ import annotations

import argparse
import sys

from ..backend import BACKENDS

__all__ = ["add_checkpoint_inputs", "read_inputs"]


def add_checkpoint_inputs(
    parser: argparse.ArgumentParser, written_by: str, metavar: str, what: str
) -> None:
    """``--checkpoint PATH`` (written by ``written_by``), the positional texts (``inputs``,
    shown as ``metavar``, described by ``what``) and ``--backend``."""
    parser.add_argument(
        "--checkpoint",
        required=True,
        metavar="PATH",
        help=f"a checkpoint written by `{written_by}` (or its --out directory)",
    )
    parser.add_argument(
        "inputs",
        nargs="*",
        metavar=metavar,
        help=f"{what} (none: read one per line from standard input)",
    )
    parser.add_argument(
        "--backend", choices=list(BACKENDS), default="numpy", help="(default: numpy)"
    )


def read_inputs(given: list[str]) -> list[str]:
    """The texts given as arguments, or else the non-blank lines of standard input."""
    texts = list(given)
    if not texts:
        texts = [line.rstrip("\n") for line in sys.stdin if line.strip()]
    return texts
