"""Notebook 08, "Train a Transformer, then decode": the learner predicts the cross-attention of
the copy task.

The decoder position ``t`` reads ``tgt_in[t]`` (``<bos>``, then letter ``t - 1``) and writes
``tgt_out[t]`` = letter ``t``; the source holds the ``n`` letters, then ``<eos>``. So in the
ideal pattern (shape ``(n, n + 1)``: the rows that write a letter, every source position) row
``t`` puts all its weight on source position ``t``. The check compares the learner's pattern
with that ideal one for several lengths; no model is trained here (a trained copy model's
measured pattern is drawn in the notebook)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .grading import exercise, largest_error

LENGTHS = (1, 2, 5, 8, 10)


def _ideal(n: int) -> np.ndarray:
    ideal = np.zeros((n, n + 1))
    ideal[np.arange(n), np.arange(n)] = 1.0  # row t (writes letter t) reads source position t
    return ideal


def _reference(n: int) -> np.ndarray:
    return _ideal(n)


def _looks_at_what_it_reads(n: int) -> np.ndarray:
    """Row t looks at letter t - 1, the one it reads (row 0, reading <bos>, at letter 0)."""
    out = np.zeros((n, n + 1))
    out[np.arange(n), np.maximum(np.arange(n) - 1, 0)] = 1.0
    return out


def _reverse_pattern(n: int) -> np.ndarray:
    """The reverse task's anti-diagonal instead of the copy task's diagonal."""
    out = np.zeros((n, n + 1))
    out[np.arange(n), n - 1 - np.arange(n)] = 1.0
    return out


def _spread_evenly(n: int) -> np.ndarray:
    """An untrained model's pattern: every row spread over the n + 1 source positions."""
    return np.full((n, n + 1), 1.0 / (n + 1))


def _forgot_eos(n: int) -> np.ndarray:
    """(n, n): the source's <eos> column left out."""
    return np.eye(n)


@exercise(
    "copy_attention",
    notebook=8,
    tol=0.05,
    hint="row t of the decoder writes letter t (it reads <bos> or letter t − 1), so it must "
    "read source position t; shape (n, n + 1): the last column is the source's <eos>",
    reference=_reference,
    mistakes={
        "looks at the letter it reads": _looks_at_what_it_reads,
        "the reverse task's anti-diagonal": _reverse_pattern,
        "spread evenly, as before training": _spread_evenly,
        "no <eos> column": _forgot_eos,
    },
)
def check_copy_attention(answer: Callable[[int], np.ndarray]) -> float:
    """``answer(n) -> (n, n + 1)`` against the ideal pattern, for n in ``LENGTHS``: the largest
    difference of any weight (the ideal's weights are 0 and 1)."""
    worst = 0.0
    for n in LENGTHS:
        got = answer(n)
        worst = max(worst, largest_error(got, _ideal(n), what=f"copy_attention({n})"))
    return worst
