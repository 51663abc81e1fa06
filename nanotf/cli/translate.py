"""``python -m nanotf translate``: decode inputs with a trained checkpoint (greedy, or beam
search with ``--beam N``)."""

from __future__ import annotations

import argparse

from ..train.checks import check_at_least
from .errors import CLIError, as_cli_error, use_backend
from .inputs import add_checkpoint_inputs, read_inputs
from .registry import subcommand

__all__ = ["translate_command"]


def _translate_arguments(parser: argparse.ArgumentParser) -> None:
    add_checkpoint_inputs(
        parser, "nanotf train", "INPUT", "source texts to translate"
    )
    parser.add_argument(
        "--beam", type=int, default=1, metavar="N", help="beam width (default: 1, greedy)"
    )
    parser.add_argument(
        "--length-penalty",
        type=float,
        default=0.6,
        metavar="ALPHA",
        help="GNMT length penalty of beam search, ((5+len)/6)^ALPHA (default: 0.6)",
    )
    parser.add_argument(
        "--max-len",
        type=int,
        default=None,
        metavar="N",
        help="most tokens to generate (default: what the model's position table allows)",
    )


@subcommand(
    "translate",
    help="decode inputs with a trained checkpoint",
    add_arguments=_translate_arguments,
    description=(
        "Print the model's output for each input, one per line.\n\n"
        "  python -m nanotf translate --checkpoint runs/reverse/checkpoint.safetensors abcdef"
    ),
)
def translate_command(args: argparse.Namespace) -> int:
    from ..decode import translate
    from ..train import load_model

    with as_cli_error():
        check_at_least("--beam", args.beam, 1)
        if args.max_len is not None:
            check_at_least("--max-len", args.max_len, 1)
    use_backend(args.backend)
    texts = read_inputs(args.inputs)
    model, src_vocab, tgt_vocab, _ = load_model(args.checkpoint)
    if args.beam > len(tgt_vocab):
        raise CLIError(
            f"--beam must be in [1, {len(tgt_vocab)}] (a beam holds at most as many hypotheses "
            f"as the model has target tokens), got {args.beam}"
        )
    if args.max_len is not None and args.max_len > model.max_len:
        raise CLIError(
            f"--max-len must be in [1, {model.max_len}] (the model's position table has "
            f"{model.max_len} positions), got {args.max_len}"
        )
    try:
        outputs = translate(
            model,
            texts,
            src_vocab,
            tgt_vocab,
            beam_width=args.beam,
            max_len=args.max_len,
            length_penalty=args.length_penalty,
        )
    except ValueError as err:
        raise CLIError(str(err)) from err
    for line in outputs:
        print(line)
    return 0
