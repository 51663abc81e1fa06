"""Softmax and log-softmax along one axis, numerically safe (the row max is subtracted first).

The axis must exist and must not be empty (a distribution over no entries is undefined); every
other axis may be empty.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ..backend import get_array_module
from ..checks import check_axis, check_dout, check_float, check_nonempty_axis


class SoftmaxCache(NamedTuple):
    """What ``softmax_backward`` needs: the output and the axis."""

    y: Any  # softmax(x), the shape of x
    axis: int


class LogSoftmaxCache(NamedTuple):
    """What ``log_softmax_backward`` needs: the softmax (not the log) and the axis."""

    probs: Any  # softmax(x) = exp(log_softmax(x)), the shape of x
    axis: int


def _shifted(op: str, x: Any, axis: Any) -> Any:
    """``x - max x`` along ``axis`` (so no exp overflows), after checking x and the axis."""
    check_float(f"{op} input", x)
    check_axis(f"{op} axis", axis, x)
    check_nonempty_axis(f"{op} input", x, axis, "the softmax axis")
    return x - x.max(axis=axis, keepdims=True)


def softmax_forward(x: Any, axis: int = -1) -> tuple[Any, SoftmaxCache]:
    """``y_i = exp(x_i - max x) / Σ_j exp(x_j - max x)``; the cache is ``SoftmaxCache(y, axis)``."""
    y = _shifted("softmax", x, axis)
    xp = get_array_module(x)
    xp.exp(y, out=y)
    y /= y.sum(axis=axis, keepdims=True)
    return y, SoftmaxCache(y, axis)


def softmax_backward(dout: Any, cache: SoftmaxCache) -> Any:
    """Jacobian-vector product of softmax: ``dx = y ⊙ (dout - Σ_j dout_j y_j)``."""
    y = cache.y
    check_dout("softmax_backward", dout, y.shape, y.dtype)
    dx = dout * y
    dx -= y * dx.sum(axis=cache.axis, keepdims=True)
    return dx


def log_softmax_forward(x: Any, axis: int = -1) -> tuple[Any, LogSoftmaxCache]:
    """``z = x - max x - log Σ_j exp(x_j - max x)``; the cache keeps ``softmax = exp(z)``."""
    z = _shifted("log_softmax", x, axis)
    xp = get_array_module(x)
    p = xp.exp(z)
    z -= xp.log(p.sum(axis=axis, keepdims=True))
    xp.exp(z, out=p)  # softmax, for the backward
    return z, LogSoftmaxCache(p, axis)


def log_softmax_backward(dout: Any, cache: LogSoftmaxCache) -> Any:
    """``dx = dout - softmax(x) · Σ_j dout_j``."""
    p = cache.probs
    check_dout("log_softmax_backward", dout, p.shape, p.dtype)
    return dout - p * dout.sum(axis=cache.axis, keepdims=True)
