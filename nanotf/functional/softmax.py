"""Softmax and log-softmax along one axis, numerically safe (the row max is subtracted first),
and the masked, scaled softmax of attention's scores along the last axis.

The axis must exist and must not be empty (a distribution over no entries is undefined); every
other axis may be empty.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ..backend import get_array_module
from ..checks import (
    broadcast_shape,
    check_axis,
    check_dout,
    check_float,
    check_nonempty_axis,
    check_real,
    check_same_device,
    given,
    is_array_or_scalar,
)
from . import fused


class SoftmaxCache(NamedTuple):
    """What ``softmax_backward`` needs: the output and the axis."""

    y: Any  # softmax(x), the shape of x
    axis: int


class LogSoftmaxCache(NamedTuple):
    """What ``log_softmax_backward`` needs: the softmax (not the log) and the axis."""

    probs: Any  # softmax(x) = exp(log_softmax(x)), the shape of x
    axis: int


class MaskedSoftmaxCache(NamedTuple):
    """What ``masked_softmax_backward`` needs; ``scores`` and ``probs`` are worth plotting too."""

    scores: Any  # (..., T): x · scale, masked entries at the dtype's minimum
    probs: Any  # (..., T): softmax of the scores times the mask
    scale: float


def _check(op: str, x: Any, axis: Any) -> None:
    """x is a float array with a non-empty ``axis``."""
    check_float(f"{op} input", x)
    check_axis(f"{op} axis", axis, x)
    check_nonempty_axis(f"{op} input", x, axis, "the softmax axis")


def _shifted(op: str, x: Any, axis: Any) -> Any:
    """``x - max x`` along ``axis`` (so no exp overflows), after checking x and the axis."""
    _check(op, x, axis)
    return x - x.max(axis=axis, keepdims=True)


def _is_last(axis: int, x: Any) -> bool:
    return axis == -1 or axis == x.ndim - 1


def softmax_forward(x: Any, axis: int = -1) -> tuple[Any, SoftmaxCache]:
    """``y_i = exp(x_i - max x) / Σ_j exp(x_j - max x)``; the cache is ``SoftmaxCache(y, axis)``."""
    _check("softmax", x, axis)
    kernel = fused.kernel_for("softmax_forward", x) if _is_last(axis, x) else None
    if kernel is not None:  # a fused kernel for x's array module (nanotf.functional.fused)
        y = kernel(x)
        return y, SoftmaxCache(y, axis)
    y = x - x.max(axis=axis, keepdims=True)
    xp = get_array_module(x)
    xp.exp(y, out=y)
    y /= y.sum(axis=axis, keepdims=True)
    return y, SoftmaxCache(y, axis)


def softmax_backward(dout: Any, cache: SoftmaxCache) -> Any:
    """Jacobian-vector product of softmax: ``dx = y ⊙ (dout - Σ_j dout_j y_j)``."""
    y = cache.y
    check_dout("softmax_backward", dout, y.shape, y.dtype)
    kernel = fused.kernel_for("softmax_backward", y) if _is_last(cache.axis, y) else None
    if kernel is not None:  # a fused kernel for y's array module (nanotf.functional.fused)
        return kernel(dout, y)
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


def masked_softmax_forward(
    x: Any, mask: Any = None, scale: float = 1.0
) -> tuple[Any, MaskedSoftmaxCache]:
    """Softmax along the last axis of ``x · scale`` where ``mask`` is True, zero where it is not.

    x: (..., T), e.g. attention's ``q kᵀ`` (B, H, Tq, T); ``mask``: boolean, broadcastable to x,
    True where an entry takes part (None: every entry). The scores ``s = x · scale`` have their
    masked entries replaced by the dtype's most negative value before the softmax, and the
    probabilities are multiplied by the mask afterwards, so a row with no entry left gets all-zero
    weights (never NaN, never a uniform row). Returns ``probs: (..., T)`` and
    ``MaskedSoftmaxCache(scores, probs, scale)``.
    """
    _check("masked_softmax", x, -1)
    check_real("masked_softmax scale", scale)
    if mask is not None:
        if not is_array_or_scalar(mask) or mask.dtype != bool:
            raise TypeError(
                f"masked_softmax mask must be a boolean array (True = keep), got {given(mask)}"
            )
        check_same_device("masked_softmax", x=x, mask=mask)
        shape = tuple(x.shape)
        if mask.ndim > x.ndim or broadcast_shape(tuple(mask.shape), shape) != shape:
            raise ValueError(
                f"masked_softmax mask must broadcast to the input's shape {shape}, got shape "
                f"{tuple(mask.shape)}"
            )
    scale = float(scale)
    kernel = fused.kernel_for("masked_softmax_forward", x)
    if kernel is not None:  # a fused kernel for x's array module (nanotf.functional.fused)
        scores, probs = kernel(x, mask, scale)
        return probs, MaskedSoftmaxCache(scores, probs, scale)
    xp = get_array_module(x)
    scores = x * scale  # (..., T)
    if mask is not None:
        scores = xp.where(mask, scores, xp.finfo(scores.dtype).min)
    probs, _ = softmax_forward(scores, axis=-1)  # (..., T)
    if mask is not None:
        # a fully masked row becomes zeros, not a uniform row; not `probs *= mask`: a NaN or
        # inf in x would leave 0 · NaN = NaN at the masked entries
        xp.copyto(probs, 0, where=~mask)
    return probs, MaskedSoftmaxCache(scores, probs, scale)


def masked_softmax_backward(dout: Any, cache: MaskedSoftmaxCache) -> Any:
    """``dx = scale · P ⊙ (dout - Σ_j dout_j P_j)``, P the probabilities (the softmax's
    Jacobian-vector product, then the scale). Masked entries have P = 0: no gradient."""
    p = cache.probs
    check_dout("masked_softmax_backward", dout, p.shape, p.dtype, "(..., T)")
    dx = softmax_backward(dout, SoftmaxCache(p, -1))
    dx *= cache.scale
    return dx
