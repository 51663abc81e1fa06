"""Notebook 11, "Attention vs its gradient": the learner writes the backward of the sentence
encoder's pooling, a masked mean over the tokens followed by L2 normalisation.

Forward, per sentence: ``p = Σ_t m_t h_t / Σ_t m_t`` and ``v = p / ‖p‖``. Backward:
``dp = (dv − v (v·dv)) / ‖p‖`` and ``dh_t = m_t dp / Σ_t m_t`` (zero on padding).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..gradcheck import numerical_gradient
from .grading import exercise, largest_error


def pool_forward(h: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """h: (B, T, H) hidden states, mask: (B, T) 1 for real tokens -> v: (B, H), unit rows."""
    m = mask[..., None].astype(h.dtype)  # (B, T, 1)
    p = (h * m).sum(axis=1) / m.sum(axis=1)  # (B, H) mean over the real tokens
    return p / np.linalg.norm(p, axis=1, keepdims=True)


def pool_backward(dv: np.ndarray, h: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """dv: (B, H), h: (B, T, H), mask: (B, T) -> dh: (B, T, H)."""
    m = mask[..., None].astype(h.dtype)  # (B, T, 1)
    n = m.sum(axis=1)  # (B, 1) real tokens per sentence
    p = (h * m).sum(axis=1) / n  # (B, H)
    norm = np.linalg.norm(p, axis=1, keepdims=True)  # (B, 1)
    v = p / norm
    dp = (dv - v * (v * dv).sum(axis=1, keepdims=True)) / norm  # (I - v vᵀ) dv / ‖p‖
    return m * (dp / n)[:, None, :]  # every real token gets dp / n, padding 0


def _no_projection(dv: np.ndarray, h: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask[..., None].astype(h.dtype)
    n = m.sum(axis=1)
    p = (h * m).sum(axis=1) / n
    dp = dv / np.linalg.norm(p, axis=1, keepdims=True)  # forgot the − v (v·dv) term
    return m * (dp / n)[:, None, :]


def _mask_ignored(dv: np.ndarray, h: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return pool_backward(dv, h, np.ones_like(mask))  # a mean over all T positions, padding too


def _no_mean(dv: np.ndarray, h: np.ndarray, mask: np.ndarray) -> np.ndarray:
    n = mask.sum(axis=1)[:, None, None]
    return pool_backward(dv, h, mask) * n  # the gradient of a sum, not of a mean


@exercise(
    "pooling_backward",
    notebook=11,
    tol=1e-8,
    hint="dp = (dv − v (v·dv)) / ‖p‖ per sentence, then dh_t = m_t · dp / Σ_t m_t "
    "(broadcast with dp[:, None, :] and mask[..., None])",
    reference=pool_backward,
    mistakes={
        "forgot the normalisation's projection": _no_projection,
        "padding not masked": _mask_ignored,
        "forgot to divide by the token count": _no_mean,
    },
)
def check_pooling_backward(
    answer: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
) -> float:
    """``answer(dv, h, mask) -> dh`` against finite differences of the masked mean pool + L2
    normalisation, in float64: a padded batch, one sentence of one token, a boolean mask."""
    rng = np.random.default_rng(111)
    cases = [
        (rng.normal(size=(3, 5, 4)), np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]])),
        (rng.normal(size=(1, 1, 6)), np.array([[1]])),
        (rng.normal(size=(2, 4, 3)) + 1.0, np.array([[True, True, False, False], [True] * 4])),
    ]
    worst = 0.0
    for h, mask in cases:
        dv = rng.normal(size=(h.shape[0], h.shape[2]))
        numeric = numerical_gradient(lambda h=h, mask=mask: pool_forward(h, mask), h, dv)
        got = answer(dv.copy(), h.copy(), mask.copy())
        what = f"dh for h of shape {h.shape} (mask {mask.astype(int).tolist()})"
        worst = max(worst, largest_error(got, numeric, what=what))
    return worst
