"""Attention plots draw what they are given, labelled with tokens, and refuse mismatched input."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

import nanotf
from nanotf.models import Transformer
from nanotf.viz import plot_attention, plot_attention_heads, plot_seq2seq_attention


def _probs(*shape: int) -> np.ndarray:
    x = np.random.default_rng(0).random(shape)
    return x / x.sum(-1, keepdims=True)


def test_one_head_has_token_labels_and_the_data() -> None:
    tokens = ["[CLS]", "the", "cat", "[SEP]"]
    p = _probs(4, 4)
    ax = plot_attention(p, tokens, title="head 0")
    assert [t.get_text() for t in ax.get_xticklabels()] == tokens
    assert [t.get_text() for t in ax.get_yticklabels()] == tokens
    np.testing.assert_array_equal(ax.images[0].get_array(), p)
    assert ax.get_title() == "head 0"
    plt.close(ax.figure)


def test_cross_attention_uses_query_tokens_on_y() -> None:
    ax = plot_attention(_probs(2, 3), ["a", "b", "c"], query_tokens=["x", "y"])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["x", "y"]
    plt.close(ax.figure)


def test_grid_has_one_panel_per_head(tmp_path) -> None:
    fig = plot_attention_heads(_probs(5, 3, 3), ["a", "b", "c"], ncols=2, title="layer 1")
    drawn = [ax for ax in fig.axes if ax.images]
    assert len(drawn) == 5
    assert [ax.get_title() for ax in drawn] == [f"head {h}" for h in range(5)]
    fig.savefig(tmp_path / "grid.png")
    assert (tmp_path / "grid.png").stat().st_size > 1000
    plt.close(fig)


def test_mismatched_tokens_are_refused() -> None:
    with pytest.raises(ValueError, match=r"does not match 3 query tokens x 3 key tokens"):
        plot_attention(_probs(4, 4), ["a", "b", "c"])
    with pytest.raises(ValueError, match=r"must be 2-D"):
        plot_attention(_probs(2, 4, 4), list("abcd"))
    with pytest.raises(ValueError, match=r"must be \(heads, queries, keys\)"):
        plot_attention_heads(_probs(4, 4), list("abcd"))


def test_seq2seq_attention_shows_the_three_kinds() -> None:
    nanotf.manual_seed(0)
    model = Transformer(9, 9, d_model=16, n_heads=2, n_encoder_layers=1, n_decoder_layers=1,
                        d_ff=32, dropout=0.0)
    src = np.array([[4, 5, 6, 2]])
    tgt = np.array([[1, 7, 8]])
    model.forward(src, tgt)
    fig = plot_seq2seq_attention(model, list("abc") + ["<eos>"], ["<bos>", "x", "y"])
    titles = [ax.get_title() for ax in fig.axes if ax.images]
    assert [t.split(" (")[0] for t in titles] == [
        "encoder self-attention", "decoder self-attention", "cross-attention"
    ]
    cross = model.intermediate("decoder.layers.0.cross_attn.probs")[0, 0]
    np.testing.assert_array_equal(fig.axes[2].images[0].get_array(), cross)
    plt.close(fig)
