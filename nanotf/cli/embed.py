"""``python -m nanotf embed``: sentence embeddings of a pretrained BERT and their cosine
similarities."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from ..train.checks import check_at_least
from .errors import as_cli_error

__all__ = ["DESCRIPTION", "HELP", "add_arguments", "run"]

HELP = "sentence embeddings and their cosine similarities"
DESCRIPTION = (
    "Encode sentences with a pretrained BERT (mean pooling, L2 normalisation) and print\n"
    "the matrix of cosine similarities.\n\n"
    '  python -m nanotf embed "A cat sits." "A kitten is sitting." "Stocks fell."'
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sentences", nargs="+", help="two or more sentences")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--model", default=None, help="as for attention")


def run(args: argparse.Namespace, load_encoder: Callable[[str | None], Any]) -> int:
    """Encode ``args.sentences`` with ``load_encoder(args.model)``; print the similarities."""
    with as_cli_error():
        check_at_least("--batch-size", args.batch_size, 1)
    encoder = load_encoder(args.model)
    vectors = encoder.encode(args.sentences, batch_size=args.batch_size)  # (n, H), unit rows
    sims = vectors @ vectors.T  # (n, n) cosine similarities
    width = max(len(f"[{i}]") for i in range(len(sims))) + 1
    print("cosine similarity")
    print(" " * width + "".join(f"{f'[{j}]':>8}" for j in range(len(sims))))
    for i, row in enumerate(sims):
        print(f"{f'[{i}]':<{width}}" + "".join(f"{v:8.3f}" for v in row))
    for i, sentence in enumerate(args.sentences):
        print(f"[{i}] {sentence}")
    return 0
