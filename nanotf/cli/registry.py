"""The registry of ``python -m nanotf`` commands: :func:`subcommand` adds one, :func:`build_parser`
gives each its sub-parser."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["SUBCOMMANDS", "Subcommand", "build_parser", "subcommand"]


@dataclass(frozen=True)
class Subcommand:
    """One ``python -m nanotf <name>`` command."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: str | None = None


#: the registry of commands, in the order ``--help`` lists them
SUBCOMMANDS: dict[str, Subcommand] = {}


def subcommand(
    name: str,
    help: str,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    description: str | None = None,
) -> Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]]:
    """Register ``run(args) -> exit code`` as the command ``name``."""

    def register(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        if name in SUBCOMMANDS:
            raise ValueError(f"the command {name!r} is registered twice")
        SUBCOMMANDS[name] = Subcommand(name, help, add_arguments, run, description)
        return run

    return register


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32, width=100)


def build_parser() -> argparse.ArgumentParser:
    """The parser with one sub-parser per registered command."""
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="python -m nanotf",
        description=(
            "nanotf: a from-scratch Transformer on NumPy/CuPy with every backward pass "
            "written by hand."
        ),
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"nanotf {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for cmd in SUBCOMMANDS.values():
        p = sub.add_parser(
            cmd.name,
            help=cmd.help,
            description=cmd.description or cmd.help,
            formatter_class=_Formatter,
        )
        cmd.add_arguments(p)
    return parser
