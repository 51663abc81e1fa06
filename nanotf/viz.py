"""Attention maps with matplotlib: one head, or a grid of all heads of a layer.

Rows are queries (the token that looks), columns are keys (the token looked at); each row of an
attention map sums to 1 (or is all zero where a query may attend to nothing).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .backend import to_numpy

__all__ = ["plot_attention", "plot_attention_heads", "plot_seq2seq_attention"]


def _check_map(probs: np.ndarray, rows: Sequence[str], cols: Sequence[str], what: str) -> None:
    if probs.shape[-2:] != (len(rows), len(cols)):
        raise ValueError(
            f"{what} of shape {probs.shape} does not match {len(rows)} query tokens x "
            f"{len(cols)} key tokens"
        )


def plot_attention(
    probs: Any,
    tokens: Sequence[str],
    query_tokens: Sequence[str] | None = None,
    ax: Any = None,
    title: str | None = None,
    cmap: str = "viridis",
    colorbar: bool = True,
) -> Any:
    """Draw one attention map ``(Tq, Tk)`` with key tokens on x and query tokens on y.

    ``query_tokens`` defaults to ``tokens`` (self-attention); give the target tokens for
    cross-attention. Returns the matplotlib Axes.
    """
    import matplotlib.pyplot as plt

    probs = to_numpy(probs)
    if probs.ndim != 2:
        raise ValueError(f"one attention map must be 2-D (queries, keys), got shape {probs.shape}")
    rows = list(tokens if query_tokens is None else query_tokens)
    cols = list(tokens)
    _check_map(probs, rows, cols, "attention map")
    if ax is None:
        size = max(3.0, 0.35 * max(len(rows), len(cols)) + 1.5)
        _, ax = plt.subplots(figsize=(size + 0.8, size))
    im = ax.imshow(probs, cmap=cmap, vmin=0.0, vmax=max(float(probs.max()), 1e-9))
    ax.set_xticks(range(len(cols)), cols, rotation=90, fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.set_xlabel("key")
    ax.set_ylabel("query")
    if title:
        ax.set_title(title, fontsize=10)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return ax


def plot_attention_heads(
    probs: Any,
    tokens: Sequence[str],
    query_tokens: Sequence[str] | None = None,
    ncols: int = 4,
    title: str | None = None,
    cmap: str = "viridis",
) -> Any:
    """A grid with every head of one layer, ``probs: (H, Tq, Tk)``. Returns the Figure."""
    import matplotlib.pyplot as plt

    probs = to_numpy(probs)
    if probs.ndim != 3:
        raise ValueError(f"a layer's attention must be (heads, queries, keys), got {probs.shape}")
    rows = list(tokens if query_tokens is None else query_tokens)
    _check_map(probs, rows, list(tokens), "attention")
    n_heads = probs.shape[0]
    ncols = max(1, min(ncols, n_heads))
    nrows = math.ceil(n_heads / ncols)
    cell = max(2.5, 0.3 * max(len(rows), len(tokens)) + 1.0)
    fig, axes = plt.subplots(nrows, ncols, figsize=(cell * ncols, cell * nrows), squeeze=False)
    for h, ax in enumerate(axes.flat):
        if h >= n_heads:
            ax.axis("off")
            continue
        plot_attention(
            probs[h], tokens, query_tokens, ax=ax, title=f"head {h}", cmap=cmap, colorbar=False
        )
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_seq2seq_attention(
    model: Any, src_tokens: Sequence[str], tgt_tokens: Sequence[str], layer: int = -1, head: int = 0
) -> Any:
    """Encoder self-, decoder self- and cross-attention of one head, after a forward of a
    ``Transformer`` on one example (batch index 0). Returns the Figure."""
    import matplotlib.pyplot as plt

    n_enc, n_dec = len(model.encoder.layers), len(model.decoder.layers)
    enc = layer % n_enc
    dec = layer % n_dec
    maps = [
        (f"encoder.layers.{enc}.self_attn.probs", src_tokens, src_tokens, "encoder self-attention"),
        (f"decoder.layers.{dec}.self_attn.probs", tgt_tokens, tgt_tokens, "decoder self-attention"),
        (f"decoder.layers.{dec}.cross_attn.probs", src_tokens, tgt_tokens, "cross-attention"),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(15, 5))
    for ax, (name, keys, queries, label) in zip(axes, maps, strict=True):
        probs = to_numpy(model.intermediate(name))[0, head]
        probs = probs[: len(queries), : len(keys)]
        plot_attention(probs, keys, queries, ax=ax, title=f"{label} (layer {layer}, head {head})")
    fig.tight_layout()
    return fig
