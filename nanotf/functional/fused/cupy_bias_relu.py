"""CuPy kernels of bias + ReLU (``nanotf.functional.bias_relu``), merged into ``cupy_kernels``'
tables: ``z = x + bias, out = max(z, 0)`` in one elementwise pass; ``dx = dout · (out > 0)`` in
another, and the bias gradient, ``Σ dx`` over the rows, by CuPy's own sum.

The sources are ``cupy_kernels.render`` templates (``$dt``, ``$T``, ``$ZERO``, ``$ONE``), built
and compiled by ``cupy_kernels`` on their first call, once per dtype: each kernel here takes
``build(name, *arrays)`` first, the compiled elementwise kernel ``name`` for the arrays' dtype,
which ``cupy_kernels`` binds (so this module imports neither it nor CuPy).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["BIAS_RELU_ELEMENTWISE", "BIAS_RELU_KERNELS"]

#: elementwise kernels: (in_params, out_params, operation), as ``cupy_kernels.ELEMENTWISE``
BIAS_RELU_ELEMENTWISE: dict[str, tuple[str, str, str]] = {
    # z = x + bias (bias broadcast along the last axis), out = max(z, 0): NaN stays NaN, and
    # -0 gives +0, as NumPy's maximum
    "bias_relu_forward": (
        "$dt x, $dt b",
        "$dt out, $dt z",
        "$T zz = x + b; z = zz; out = (zz <= $ZERO) ? $ZERO : zz;",
    ),
    # dx = dout · (out > 0), written as the reference's dout · not(out <= 0)
    "bias_relu_backward": (
        "$dt dout, $dt out",
        "$dt dx",
        "$T m = (out <= $ZERO) ? $ZERO : $ONE; dx = dout * m;",
    ),
}


def bias_relu_forward(build: Callable[..., Any], x: Any, bias: Any) -> tuple[Any, Any]:
    """(x, bias) -> (out, z), like x."""
    out, z = build("bias_relu_forward", x, bias)(x, bias)
    return out, z


def bias_relu_backward(build: Callable[..., Any], dout: Any, out: Any) -> tuple[Any, Any]:
    """(dout, out) -> (dx, dbias): dx like out, dbias (C,) = Σ dx over the rows."""
    dx = build("bias_relu_backward", dout, out)(dout, out)
    return dx, dx.reshape(-1, out.shape[-1]).sum(axis=0)


#: op name -> kernel, bound to ``build`` and merged into ``cupy_kernels.KERNELS``
BIAS_RELU_KERNELS: dict[str, Callable[..., Any]] = {
    "bias_relu_forward": bias_relu_forward,
    "bias_relu_backward": bias_relu_backward,
}
