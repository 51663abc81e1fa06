"""``python -m nanotf generate``: continue prompts with a GPT checkpoint (``nanotf train
--model gpt``): greedy, or sampled with ``--sample`` (temperature, top-k, top-p, seed)."""

from __future__ import annotations

import argparse

from ..data import SEPARATOR
from ..train.checks import check_at_least
from .errors import CLIError, as_cli_error, use_backend
from .inputs import add_checkpoint_inputs, read_inputs
from .registry import subcommand

__all__ = ["generate_command"]


def _generate_arguments(parser: argparse.ArgumentParser) -> None:
    add_checkpoint_inputs(
        parser,
        "nanotf train --model gpt",
        "PROMPT",
        f"sources to continue, e.g. abc or 12+34 (a trailing {SEPARATOR!r} is optional)",
    )
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        metavar="N",
        help="most tokens to add (default: the task's longest answer and its <eos>)",
    )
    parser.add_argument(
        "--sample", action="store_true", help="sample the next token instead of the argmax"
    )
    parser.add_argument(
        "--temperature", type=float, default=1.0, metavar="T", help="with --sample (default: 1)"
    )
    parser.add_argument(
        "--top-k", type=int, default=None, metavar="K", help="with --sample: keep the K likeliest"
    )
    parser.add_argument(
        "--top-p",
        type=float,
        default=None,
        metavar="P",
        help="with --sample: keep the likeliest tokens whose probabilities sum to P",
    )
    parser.add_argument(
        "--seed", type=int, default=0, metavar="S", help="with --sample (default: 0)"
    )


@subcommand(
    "generate",
    help="continue prompts with a trained GPT checkpoint",
    add_arguments=_generate_arguments,
    description=(
        "Print the model's continuation of each prompt, one per line.\n\n"
        "  python -m nanotf generate --checkpoint runs/gpt-reverse abcdef"
    ),
)
def generate_command(args: argparse.Namespace) -> int:
    from ..train import load_gpt
    from ..train.lm import continue_prompts

    with as_cli_error():
        if args.max_new_tokens is not None:
            check_at_least("--max-new-tokens", args.max_new_tokens, 1)
        if not args.sample and (
            args.temperature != 1.0 or args.top_k is not None or args.top_p is not None
        ):
            raise ValueError("--temperature, --top-k and --top-p need --sample")
    use_backend(args.backend)
    prompts = read_inputs(args.inputs)
    if not prompts:
        raise CLIError("no prompt given (as arguments, or one per line on standard input)")
    sources = [p[: -len(SEPARATOR)] if p.endswith(SEPARATOR) else p for p in prompts]
    model, lm, _ = load_gpt(args.checkpoint)
    sampling = {}
    if args.sample:
        sampling = {
            "do_sample": True,
            "temperature": args.temperature,
            "top_k": args.top_k,
            "top_p": args.top_p,
            "seed": args.seed,
        }
    try:
        outputs = continue_prompts(model, lm, sources, args.max_new_tokens, **sampling)
    except ValueError as err:
        raise CLIError(str(err)) from err
    for line in outputs:
        print(line)
    return 0
