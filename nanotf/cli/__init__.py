"""The command line: ``python -m nanotf <command> [options]`` (``--help`` on each command).

Commands:

* ``train``: train a Transformer on a built-in task, print sample outputs, save a checkpoint
  and a loss curve under ``--out`` and end with one line of JSON (the run's numbers). With no
  options it trains the default run on the CPU (NumPy) in a couple of minutes.
* ``translate``: decode inputs with a trained checkpoint (greedy, or beam search with
  ``--beam N``).
* ``generate``: continue prompts with a trained GPT checkpoint (``train --model gpt``), greedy
  or sampled (``--sample``, ``--temperature``, ``--top-k``, ``--top-p``, ``--seed``).
* ``attention``: plot a pretrained BERT's attention maps for a sentence.
* ``embed``: sentence embeddings of a pretrained BERT and their cosine similarities.

The package holds one file per command (``train.py``, ``translate.py``, ``generate.py``,
``attention.py``, ``embed.py``) and the shared parts: ``registry.py`` (the commands and the
parser), ``errors.py`` (``CLIError``, switching backends), ``paths.py`` (output paths checked
before any work), ``inputs.py`` (the checkpoint and texts that ``translate`` and ``generate``
read).

Adding a command: write ``add_arguments(parser)`` and ``run(args) -> exit code``, and register
them::

    def _decode_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--checkpoint", required=True)

    @subcommand("decode", help="...", add_arguments=_decode_arguments)
    def decode_command(args: argparse.Namespace) -> int:
        ...
        return 0

Errors the user can fix (unknown task, a missing or corrupt checkpoint, a character the
vocabulary does not have, a backend that cannot run here, an output path that cannot be
written, a request larger than the task or the model can supply) are printed as one line,
``nanotf <command>: error: ...``, with exit code 2 and no traceback (set ``NANOTF_DEBUG=1`` to
see the traceback too). Output paths are checked before any work starts.

Exit codes: 0 done, 2 bad input, 3 training diverged (a loss or gradient norm that is not
finite; nothing is saved), 130 interrupted (Ctrl-C; ``train`` saves its last completed step).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile  # noqa: F401  (tests reach it as nanotf.cli.tempfile)
from collections.abc import Sequence
from typing import Any

from . import attention, embed
from .errors import CLIError
from .generate import generate_command
from .paths import check_output_dir, check_output_file
from .registry import SUBCOMMANDS, Subcommand, build_parser, subcommand
from .train import train_command
from .translate import translate_command

__all__ = [
    "SUBCOMMANDS",
    "CLIError",
    "Subcommand",
    "build_parser",
    "check_output_dir",
    "check_output_file",
    "attention_command",
    "embed_command",
    "generate_command",
    "main",
    "subcommand",
    "train_command",
    "translate_command",
]


# -- pretrained BERT: attention and embed ---------------------------------------------------------
# Both commands get the encoder from ``_load_encoder``, looked up here when they run, so it can
# be replaced in one place (the tests hand them an encoder read once).


def _load_encoder(model: str | None) -> Any:
    """The pretrained sentence encoder in ``model`` (None: the default one); a model that cannot
    be read becomes a one-line error."""
    from ..pretrained import SentenceEncoder

    try:
        return SentenceEncoder.from_pretrained(model)
    except (FileNotFoundError, ValueError, KeyError) as err:
        raise CLIError(str(err)) from err


@subcommand(
    "attention",
    help=attention.HELP,
    add_arguments=attention.add_arguments,
    description=attention.DESCRIPTION,
)
def attention_command(args: argparse.Namespace) -> int:
    return attention.run(args, _load_encoder)


@subcommand(
    "embed", help=embed.HELP, add_arguments=embed.add_arguments, description=embed.DESCRIPTION
)
def embed_command(args: argparse.Namespace) -> int:
    return embed.run(args, _load_encoder)


# -- entry point ----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; returns the exit code (0 ok, 2 bad input, 3 training diverged, 130
    interrupted)."""
    from ..backend import BackendUnavailableError
    from ..checkpoint import CheckpointError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return SUBCOMMANDS[args.command].run(args)
    except (CLIError, CheckpointError, BackendUnavailableError) as err:
        if os.environ.get("NANOTF_DEBUG"):
            raise
        print(f"nanotf {args.command}: error: {err}", file=sys.stderr)
        return err.exit_code if isinstance(err, CLIError) else 2
    except KeyboardInterrupt:
        if os.environ.get("NANOTF_DEBUG"):
            raise
        print(f"\nnanotf {args.command}: interrupted", file=sys.stderr)
        return 130
