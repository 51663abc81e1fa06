"""Softmax and log-softmax along one axis, numerically safe (the row max is subtracted first).

The axis must exist and must not be empty (a distribution over no entries is undefined); every
other axis may be empty.
"""

from __future__ import annotations

from typing import Any

from ..backend import get_array_module
from ._checks import check_axis, check_dout, check_float, check_nonempty_axis


def softmax_forward(x: Any, axis: int = -1) -> tuple[Any, tuple]:
    """``y_i = exp(x_i - max x) / Σ_j exp(x_j - max x)``; the cache is ``(y, axis)``."""
    check_float("softmax input", x)
    check_axis("softmax axis", axis, x)
    check_nonempty_axis("softmax input", x, axis, "the softmax axis")
    xp = get_array_module(x)
    y = x - x.max(axis=axis, keepdims=True)
    xp.exp(y, out=y)
    y /= y.sum(axis=axis, keepdims=True)
    return y, (y, axis)


def softmax_backward(dout: Any, cache: tuple) -> Any:
    """Jacobian-vector product of softmax: ``dx = y ⊙ (dout - Σ_j dout_j y_j)``."""
    y, axis = cache
    check_dout("softmax_backward", dout, y.shape, y.dtype)
    dx = dout * y
    dx -= y * dx.sum(axis=axis, keepdims=True)
    return dx


def log_softmax_forward(x: Any, axis: int = -1) -> tuple[Any, tuple]:
    """``z = x - max x - log Σ_j exp(x_j - max x)``; the cache keeps ``softmax = exp(z)``."""
    check_float("log_softmax input", x)
    check_axis("log_softmax axis", axis, x)
    check_nonempty_axis("log_softmax input", x, axis, "the softmax axis")
    xp = get_array_module(x)
    z = x - x.max(axis=axis, keepdims=True)
    p = xp.exp(z)
    z -= xp.log(p.sum(axis=axis, keepdims=True))
    xp.exp(z, out=p)  # softmax, for the backward
    return z, (p, axis)


def log_softmax_backward(dout: Any, cache: tuple) -> Any:
    """``dx = dout - softmax(x) · Σ_j dout_j``."""
    p, axis = cache
    check_dout("log_softmax_backward", dout, p.shape, p.dtype)
    return dout - p * dout.sum(axis=axis, keepdims=True)
