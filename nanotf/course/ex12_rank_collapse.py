"""Notebook 12, "Why residuals: rank collapse": the learner writes the relative residual
``res(X) = ‖X − 1 x*ᵀ‖_F / ‖X‖_F``, the distance of a sequence of token vectors from the nearest
matrix whose rows are all equal (x* is the column mean)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .grading import exercise, largest_error


def relative_residual(X: np.ndarray) -> float:
    """X: (T, C) -> ‖X − 1 x*ᵀ‖_F / ‖X‖_F with x* = the mean of the rows (over tokens)."""
    X = np.asarray(X, dtype=np.float64)
    centred = X - X.mean(axis=0, keepdims=True)  # (T, C): every token minus the mean token
    return float(np.linalg.norm(centred) / np.linalg.norm(X))


def _mean_over_features(X: np.ndarray) -> float:
    # the mean of each token's features (axis=1): that is LayerNorm's centring, not 1 xᵀ
    centred = X - X.mean(axis=1, keepdims=True)
    return float(np.linalg.norm(centred) / np.linalg.norm(X))


def _not_relative(X: np.ndarray) -> float:
    return float(np.linalg.norm(X - X.mean(axis=0, keepdims=True)))  # forgot to divide by ‖X‖


def _first_row(X: np.ndarray) -> float:
    # 1 X[0]ᵀ has equal rows too, but it is not the nearest such matrix
    return float(np.linalg.norm(X - X[:1]) / np.linalg.norm(X))


def _cases() -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(1212)
    shared = rng.integers(-20, 20, size=(1, 6)) / 4.0  # dyadic: its mean is exact
    scale = np.array([[0.1], [10.0], [1.0], [3.0]])
    return [
        ("Gaussian, (8, 5)", rng.normal(size=(8, 5))),
        ("rank one: all rows equal", np.repeat(shared, 8, axis=0)),
        ("nearly rank one", np.repeat(shared, 7, axis=0) + 1e-3 * rng.normal(size=(7, 6))),
        ("rows of zero mean", np.concatenate([np.eye(3), -np.eye(3)])),
        ("one token", rng.normal(size=(1, 4))),
        ("rows of very different norms", scale * rng.normal(size=(4, 3)) + 2.0),
        ("large entries", 1e6 * rng.normal(size=(5, 9))),
    ]


@exercise(
    "rank_residual",
    notebook=12,
    tol=1e-9,
    hint="x* is the mean over tokens: X.mean(axis=0, keepdims=True); return "
    "np.linalg.norm(X - x*) / np.linalg.norm(X), the Frobenius norms",
    reference=relative_residual,
    mistakes={
        "mean over features instead of tokens": _mean_over_features,
        "absolute, not relative": _not_relative,
        "the first token instead of the mean": _first_row,
    },
)
def check_rank_residual(answer: Callable[[np.ndarray], float]) -> float:
    """``answer(X) -> res`` for X of shape (T, C), on fixed matrices: Gaussian, exactly rank one
    (res = 0), nearly rank one, rows that average to zero (res = 1), one token, rows of very
    different norms, large entries."""
    worst = 0.0
    for what, X in _cases():
        got = answer(X.copy())
        worst = max(worst, largest_error(got, relative_residual(X), what=f"res(X) for {what}"))
    return worst
