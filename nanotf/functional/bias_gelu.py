"""Bias + GELU, the feed-forward block's ``gelu(x W1ᵀ + b1)`` after its matmul, as one op.

The reference is the two steps written out: ``z = x + bias``, then ``gelu_forward(z)``; its
backward is GELU's backward and the bias gradient, the sum of ``dz`` over every leading axis. A
fused kernel (``nanotf.functional.fused``) does the addition and the GELU in one pass.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ..checks import check_bias_input, check_dout, given
from . import fused
from .activations import GeluCache, gelu_backward, gelu_forward


class BiasGeluCache(NamedTuple):
    """What ``bias_gelu_backward`` needs: GELU's cache of ``z = x + bias``."""

    gelu: GeluCache  # GeluCache(approximate, z, saved), z: (..., C)


def bias_gelu_forward(
    x: Any, bias: Any, approximate: str = "none", *, need_backward: bool = True
) -> tuple[Any, BiasGeluCache | None]:
    """``out = gelu(x + bias)``, the bias added along the last axis.

    x: (..., C), bias: (C,); ``approximate`` as in ``gelu_forward`` ("none": the erf form,
    "tanh": the tanh approximation). Returns ``out: (..., C)`` and ``BiasGeluCache``, which holds
    GELU's cache of ``z = x + bias``. For inference, ``need_backward=False`` returns
    ``(out, None)``: nothing is kept for a backward, so a fused kernel writes ``out`` alone, not
    ``z`` and GELU's saved factor beside it (half the memory traffic of the three).
    """
    check_bias_input("bias_gelu", x, bias)
    if approximate not in ("none", "tanh"):
        raise ValueError(f"bias_gelu approximate must be 'none' or 'tanh', got {approximate!r}")
    if not isinstance(need_backward, bool):
        raise TypeError(
            f"bias_gelu need_backward must be True or False, got {given(need_backward)}"
        )
    if not need_backward:
        kernel = fused.kernel_for("bias_gelu_inference", x)
        if kernel is not None:  # the output alone (nanotf.functional.fused)
            return kernel(x, bias, approximate), None
        return gelu_forward(x + bias, approximate)[0], None  # the reference, its cache dropped
    kernel = fused.kernel_for("bias_gelu_forward", x)
    if kernel is not None:  # a fused kernel for x's array module (nanotf.functional.fused)
        out, z, saved = kernel(x, bias, approximate)
        return out, BiasGeluCache(GeluCache(approximate, z, saved))
    z = x + bias  # (..., C)
    out, gelu_cache = gelu_forward(z, approximate)
    return out, BiasGeluCache(gelu_cache)


def bias_gelu_backward(dout: Any, cache: BiasGeluCache) -> tuple[Any, Any]:
    """Gradients of ``gelu(x + bias)``: ``dx = dout ⊙ gelu'(z)`` (``gelu_backward``), and
    ``dbias = Σ dx`` over every leading axis, since the bias is added to every row."""
    if not isinstance(cache, BiasGeluCache):
        raise TypeError(
            "bias_gelu_backward needs the BiasGeluCache of bias_gelu_forward, got "
            f"{given(cache)} (a forward with need_backward=False keeps none)"
        )
    z = cache.gelu.x
    check_dout("bias_gelu_backward", dout, z.shape, z.dtype, "(..., C)")
    dx = gelu_backward(dout, cache.gelu)  # (..., C)
    dbias = dx.reshape(-1, z.shape[-1]).sum(axis=0)  # (C,)
    return dx, dbias
