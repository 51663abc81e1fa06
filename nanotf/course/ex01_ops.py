"""Notebook 01, "One op: forward, cache, backward": the learner writes softmax's backward."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..functional import softmax_backward as _softmax_backward
from ..functional import softmax_forward
from ..functional.softmax import SoftmaxCache
from ..gradcheck import numerical_gradient
from .grading import exercise, largest_error


def _reference(dout: np.ndarray, y: np.ndarray) -> np.ndarray:
    return _softmax_backward(dout, SoftmaxCache(y, -1))


def _forgot_the_sum(dout: np.ndarray, y: np.ndarray) -> np.ndarray:
    return y * dout  # the diagonal of the Jacobian only


def _jacobian_transposed_wrong(dout: np.ndarray, y: np.ndarray) -> np.ndarray:
    return y * (dout - dout.sum(axis=-1, keepdims=True))  # Σ dout instead of Σ dout ⊙ y


@exercise(
    "softmax_backward",
    notebook=1,
    tol=1e-9,
    hint="dx = y ⊙ (dout − Σⱼ doutⱼ yⱼ), the sum over the last axis with keepdims=True",
    reference=_reference,
    mistakes={"forgot the sum": _forgot_the_sum, "Σ dout without y": _jacobian_transposed_wrong},
)
def check_softmax_backward(answer: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> float:
    """``answer(dout, y) -> dx`` against finite differences of softmax, on rows of several
    lengths (one of length 1, where dx is 0), in float64."""
    rng = np.random.default_rng(101)
    worst = 0.0
    for shape in [(3, 5), (2, 4, 7), (4, 1)]:
        x = rng.normal(size=shape) * 2.0
        dout = rng.normal(size=shape)
        y, _ = softmax_forward(x)
        numeric = numerical_gradient(lambda x=x: softmax_forward(x)[0], x, dout)
        got = answer(dout.copy(), y.copy())
        err = largest_error(got, numeric, what=f"dx for x of shape {shape}")
        worst = max(worst, err)
    return worst
