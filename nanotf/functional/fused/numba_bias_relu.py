"""Numba kernels of bias + ReLU (``nanotf.functional.bias_relu``), merged into
``numba_kernels``' table: the forward ``z = x + bias, out = max(z, 0)`` in one pass, and the
backward ``dx = dout · (out > 0)`` together with ``dbias = Σ dx`` over the rows in another.

As in ``numba_kernels``: ``fastmath=False``, constants as scalars of the inputs' dtype, inputs
copied to C order where they are not already, one thread per row (forward) or per block of rows
(backward). The forward and ``dx`` are the reference's bits (one addition, one comparison, one
multiplication by 0 or 1, as ``dout * ~(out <= 0)``). ``dbias`` adds float64 partial sums over
fixed blocks of ``ROWS_PER_BLOCK`` rows, then the blocks in order, rounded to the dtype once
(LayerNorm's dγ/dβ do the same): the bits do not depend on the number of threads, and the sum is
at least as exact as NumPy's, which adds row after row in the dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import numpy as np

from .numba_arrays import ROWS_PER_BLOCK
from .numba_arrays import flat as _flat
from .numba_arrays import rows as _rows
from .numba_arrays import same_float_dtype as _dtype
from .numba_math import _PARALLEL

__all__ = ["BIAS_RELU_KERNELS", "ROWS_PER_BLOCK"]



# -- the loops --------------------------------------------------------------------------------


@numba.njit(**_PARALLEL)
def _bias_relu_forward(x, b, out, z, zero):  # pragma: no cover - compiled
    # z = x + b along the last axis, out = max(z, 0) (NaN stays NaN, +0 for -0 as np.maximum);
    # x, out, z: (rows, C), b: (C,)
    rows, c = x.shape
    for r in numba.prange(rows):
        for j in range(c):
            zz = x[r, j] + b[j]
            z[r, j] = zz
            out[r, j] = zero if zz <= zero else zz


@numba.njit(**_PARALLEL)
def _bias_relu_backward(dout, out, dx, part, rows, block, zero,
                        one):  # pragma: no cover - compiled
    # dx = dout · (0 where out <= 0 else 1), and the float64 column sums of dx over each block
    # of `block` rows; dout, out, dx: (rows, C), part: (blocks, C), zeros on entry
    blocks, c = part.shape
    for k in numba.prange(blocks):
        r1 = min(rows, (k + 1) * block)
        for r in range(k * block, r1):
            for j in range(c):
                d = dout[r, j] * (zero if out[r, j] <= zero else one)
                dx[r, j] = d
                part[k, j] += d


@numba.njit(**_PARALLEL)
def _sum_column_blocks(part, total):  # pragma: no cover - compiled
    # the blocks' partial sums added in order, per column; part: (blocks, C), total: (C,)
    blocks, c = part.shape
    for j in numba.prange(c):
        s = 0.0
        for k in range(blocks):
            s += part[k, j]
        total[j] = s


# -- the kernels, as the op calls them (see nanotf.functional.fused.OPS) ----------------------


def bias_relu_forward(x: Any, bias: Any) -> tuple[Any, Any]:
    """(x, bias) -> (out, z): z = x + bias, out = max(z, 0); x: (..., C), bias: (C,)."""
    dt = _dtype(x, bias)
    shape = np.shape(x)
    x2 = _rows(x)  # (rows, C)
    b = _flat(bias)  # (C,)
    out, z = np.empty_like(x2), np.empty_like(x2)
    _bias_relu_forward(x2, b, out, z, dt.type(0.0))
    return out.reshape(shape), z.reshape(shape)


def bias_relu_backward(dout: Any, out: Any) -> tuple[Any, Any]:
    """(dout, out) -> (dx, dbias): dx = dout · (out > 0) like out, dbias = Σ dx over rows (C,)."""
    dt = _dtype(dout, out)
    shape = np.shape(out)
    d2, o2 = _rows(dout), _rows(out)  # (rows, C)
    rows, c = o2.shape
    dx = np.empty_like(o2)
    part = np.zeros((-(-rows // ROWS_PER_BLOCK), c))  # float64 (blocks, C)
    _bias_relu_backward(d2, o2, dx, part, rows, ROWS_PER_BLOCK, dt.type(0.0), dt.type(1.0))
    dbias = np.empty(c, dt)
    _sum_column_blocks(part, dbias)
    return dx.reshape(shape), dbias


#: op name -> kernel, merged into ``numba_kernels._KERNELS`` (which runs them on the kernel
#: threads and wraps them for the stand-in)
BIAS_RELU_KERNELS: dict[str, Callable[..., Any]] = {
    "bias_relu_forward": bias_relu_forward,
    "bias_relu_backward": bias_relu_backward,
}
