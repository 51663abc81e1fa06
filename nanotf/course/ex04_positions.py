"""Notebook 04, "Positions and embeddings": the learner builds the rotation M_k that shifts the
sinusoidal encoding by k positions, P[t + k] = M_k @ P[t]."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..functional import sinusoidal_encoding
from .grading import exercise, largest_error


def _blocks(k: int, d_model: int, base: float, sign: float = 1.0, pairs: str = "adjacent",
            freq_step: int = 2) -> np.ndarray:
    """Block-diagonal rotations by k ω_i; ``sign`` -1 gives the transpose (a shift by -k),
    ``pairs="halves"`` pairs dimension i with i + d/2, ``freq_step=1`` uses base^(-i/d)."""
    omega = base ** (-(freq_step * np.arange(d_model // 2)) / d_model)
    c, s = np.cos(k * omega), sign * np.sin(k * omega)
    half = d_model // 2
    first = np.arange(0, d_model, 2) if pairs == "adjacent" else np.arange(half)
    second = first + 1 if pairs == "adjacent" else first + half
    M = np.zeros((d_model, d_model))
    M[first, first], M[first, second] = c, s
    M[second, first], M[second, second] = -s, c
    return M


def _reference(k: int, d_model: int, base: float = 10000.0) -> np.ndarray:
    return _blocks(k, d_model, base)


def _transposed(k: int, d_model: int, base: float = 10000.0) -> np.ndarray:
    return _blocks(k, d_model, base, sign=-1.0)  # [[c, -s], [s, c]]: the shift by -k


def _halves(k: int, d_model: int, base: float = 10000.0) -> np.ndarray:
    return _blocks(k, d_model, base, pairs="halves")  # RoPE's rotate-half layout, not nanotf's


def _wrong_frequencies(k: int, d_model: int, base: float = 10000.0) -> np.ndarray:
    return _blocks(k, d_model, base, freq_step=1)  # ω_i = base^(-i/d) instead of base^(-2i/d)


@exercise(
    "rotation_matrix",
    notebook=4,
    tol=1e-9,
    hint="block i acts on dimensions (2i, 2i+1) = (sin tω_i, cos tω_i), ω_i = base^(−2i/d); "
    "its first row gives the new sine: sin(a + b) = sin a cos b + cos a sin b",
    reference=_reference,
    mistakes={
        "the transpose (a shift by −k)": _transposed,
        "pairs (i, i + d/2) instead of (2i, 2i + 1)": _halves,
        "ω_i = base^(−i/d)": _wrong_frequencies,
    },
)
def check_rotation_matrix(answer: Callable[..., np.ndarray]) -> float:
    """``answer(k, d_model, base) -> M_k`` against the exact rotation, and ``M_k @ P[t]`` against
    ``P[t + k]`` from nanotf's ``sinusoidal_encoding`` (float64), for several k (0, negative,
    large), widths and bases."""
    worst = 0.0
    for k, d_model, base in [(1, 8, 10000.0), (5, 16, 10000.0), (-3, 6, 10000.0), (0, 4, 10000.0),
                             (37, 64, 10000.0), (2, 10, 100.0)]:
        what = f"M_k for k={k}, d_model={d_model}, base={base:g}"
        got = answer(k, d_model, base=base)
        worst = max(worst, largest_error(got, _reference(k, d_model, base), what=what))
        table = sinusoidal_encoding(80, d_model, base=base, dtype=np.float64)  # (80, d)
        t = np.arange(max(0, -k), 80 - max(k, 0))  # positions with t + k in the table
        shifted = np.asarray(got, dtype=np.float64) @ table[t].T  # columns M_k P_t
        worst = max(worst, largest_error(shifted.T, table[t + k], what=f"{what} applied to P_t"))
    return worst
