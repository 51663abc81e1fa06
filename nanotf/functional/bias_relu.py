"""Bias + ReLU, the feed-forward block's ``relu(x W1ᵀ + b1)`` after its matmul, as one op.

The reference is the two steps written out: ``z = x + bias``, then ``relu_forward(z)``; its
backward is ReLU's backward and the bias gradient, the sum of ``dz`` over every leading axis. A
fused kernel (``nanotf.functional.fused``) does the addition and the ReLU in one pass, and the
backward's ``dz`` and bias sum in another.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ..checks import check_bias_input, check_dout
from . import fused
from .activations import ReluCache, relu_backward, relu_forward


class BiasReluCache(NamedTuple):
    """What ``bias_relu_backward`` needs: ReLU's cache; and ``z = x + bias``, the
    pre-activation, kept for inspection (FeedForward saves it as ``pre_activation``)."""

    z: Any  # x + bias, (..., C)
    relu: ReluCache  # ReluCache(out), out = max(z, 0): (..., C)


def bias_relu_forward(x: Any, bias: Any) -> tuple[Any, BiasReluCache]:
    """``out = max(x + bias, 0)``, the bias added along the last axis (NaN stays NaN).

    x: (..., C), bias: (C,). Returns ``out: (..., C)`` and ``BiasReluCache(z, ReluCache(out))``
    with ``z = x + bias``.
    """
    check_bias_input("bias_relu", x, bias)
    kernel = fused.kernel_for("bias_relu_forward", x)
    if kernel is not None:  # a fused kernel for x's array module (nanotf.functional.fused)
        out, z = kernel(x, bias)
        return out, BiasReluCache(z, ReluCache(out))
    z = x + bias  # (..., C)
    out, relu_cache = relu_forward(z)
    return out, BiasReluCache(z, relu_cache)


def bias_relu_backward(dout: Any, cache: BiasReluCache) -> tuple[Any, Any]:
    """Gradients of ``relu(x + bias)``: ``dx = dout · (out > 0)`` (``relu_backward``), and
    ``dbias = Σ dx`` over every leading axis, since the bias is added to every row."""
    out = cache.relu.out  # (..., C)
    check_dout("bias_relu_backward", dout, out.shape, out.dtype, "(..., C)")
    kernel = fused.kernel_for("bias_relu_backward", out)
    if kernel is not None:  # a fused kernel for out's array module (nanotf.functional.fused)
        return kernel(dout, out)
    dx = relu_backward(dout, cache.relu)  # (..., C)
    dbias = dx.reshape(-1, out.shape[-1]).sum(axis=0)  # (C,)
    return dx, dbias
