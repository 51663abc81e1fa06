"""Numba kernels behind the fused paths on the CPU: GELU (with or without a bias), LayerNorm, the
(masked, scaled) softmax along the last axis, and the Adam/AdamW update, for NumPy arrays and for
the CPU stand-in ``nanotf.testing.strict``.

Each kernel computes what its reference op computes, step by step in the same order, for float32
and float64, in one pass over the data and on every core (``numba.prange``): elementwise kernels
share out the elements, row kernels (LayerNorm, softmax) the rows of the last axis. Every output
element, or every row, is computed by one thread in a fixed order, so results are the same from
run to run and whatever the number of threads (``numba.set_num_threads``). They compile with
``fastmath=False``: no reassociation and no contracted multiply-add that the reference does not
make. Constants reach the kernels as scalars of the inputs' dtype, so float32 stays float32 as it
does in NumPy (where a Python float takes the array's dtype).

Where they differ from the reference, within the tolerances of the op tests:

* ``erf`` is ``nanotf.special.erf``'s own method and coefficients, one value at a time (both
  branches computed and one kept, as there); ``exp`` is written out here (``_exp32``,
  ``_exp64``: within an ulp or two, flushed to 0 below e^-87 (float32) or e^-708 (float64),
  where every caller's result is unchanged), ``tanh(u) = 1 - 2 / (e^{2u} + 1)`` through it;
  both are plain arithmetic, so the loops vectorize, where the C library's would cost one call
  per element; NumPy's ``exp`` and ``tanh`` differ from them by about an ulp;
* a sum over a row (LayerNorm's mean and variance, softmax's total, the dot products of the
  backwards) runs in four interleaved float64 partial sums, added in a fixed order and rounded to
  the dtype once, where NumPy adds pairwise in the dtype;
* LayerNorm's dγ and dβ (sums over rows) add float64 partial sums over fixed blocks of
  ``ROWS_PER_BLOCK`` rows, then the blocks in order, where NumPy adds row after row in the dtype.

Inputs: float32 or float64, of one dtype (anything else raises ``TypeError``); arrays that are not
C-contiguous are copied to C order first (the mask too, broadcast to the scores' shape, one byte
per score); the Adam update works in place on contiguous parameters and on a contiguous copy,
written back, of others.

Nothing imports this module until an op sees a NumPy or stand-in array
(``nanotf.functional.fused`` registers ``KERNELS`` and ``STRICT_KERNELS`` then, where Numba is
installed). Each kernel is compiled once per dtype on its first call; ``cache=True`` keeps the
machine code in ``__pycache__`` beside this file (or Numba's user cache where that folder is not
writable), so later processes load it instead of compiling.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import llvmlite.ir as llvm_ir
import numba
import numpy as np
from numba.extending import intrinsic, overload

from ...special import _F32, _F64
from ...testing.strict import DeviceConversionError, StrictArray

__all__ = ["KERNELS", "ROWS_PER_BLOCK", "STRICT_KERNELS"]

# the constants of nanotf.functional.activations, computed the same way
_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_C = 0.044715

#: rows per block of LayerNorm's dγ/dβ partial sums (fixed, so the sums do not depend on the
#: number of threads)
ROWS_PER_BLOCK = 32

_FLOATS = ("float32", "float64")
_JIT = dict(cache=True, fastmath=False)
_PARALLEL = dict(parallel=True, **_JIT)
_INLINE = dict(inline="always", **_JIT)  # helpers, inlined into the kernels that call them


# -- helpers ----------------------------------------------------------------------------------


@numba.njit(**_INLINE)
def _row_sum(a: Any, r: int) -> float:  # pragma: no cover - compiled
    """Σ a[r, :] in float64: four interleaved partial sums, added in a fixed order."""
    n = a.shape[1]
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    j = 0
    while j + 4 <= n:
        s0 += a[r, j]
        s1 += a[r, j + 1]
        s2 += a[r, j + 2]
        s3 += a[r, j + 3]
        j += 4
    while j < n:
        s0 += a[r, j]
        j += 1
    return (s0 + s1) + (s2 + s3)


@numba.njit(**_INLINE)
def _row_dot(a: Any, b: Any, r: int) -> float:  # pragma: no cover - compiled
    """Σ a[r, j] · b[r, j] over the row (each product in the dtype), as ``_row_sum``."""
    n = a.shape[1]
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    j = 0
    while j + 4 <= n:
        s0 += a[r, j] * b[r, j]
        s1 += a[r, j + 1] * b[r, j + 1]
        s2 += a[r, j + 2] * b[r, j + 2]
        s3 += a[r, j + 3] * b[r, j + 3]
        j += 4
    while j < n:
        s0 += a[r, j] * b[r, j]
        j += 1
    return (s0 + s1) + (s2 + s3)


# exp written out (range reduction, a Taylor polynomial, the power of two built from its bits),
# so that LLVM vectorizes the loops that call it; the C library's exp is one call per element
_LOG2E = 1.4426950408889634
_LN2_HI_32, _LN2_LO_32 = np.float32(0.693359375), np.float32(-2.12194440e-4)
_LN2_HI_64, _LN2_LO_64 = 6.93147180369123816490e-01, 1.90821492927058770002e-10
_EXP_TAYLOR_32 = tuple(np.float32(1.0 / math.factorial(i)) for i in range(8))  # degree 7
_EXP_TAYLOR_64 = tuple(1.0 / math.factorial(i) for i in range(14))  # degree 13


@intrinsic
def _f32_from_bits(typingctx: Any, bits: Any) -> Any:  # pragma: no cover - compiled
    """The float32 whose bits are the int32 ``bits``."""
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        return builder.bitcast(args[0], llvm_ir.FloatType())
    return numba.types.float32(numba.types.int32), codegen


@intrinsic
def _f64_from_bits(typingctx: Any, bits: Any) -> Any:  # pragma: no cover - compiled
    """The float64 whose bits are the int64 ``bits``."""
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        return builder.bitcast(args[0], llvm_ir.DoubleType())
    return numba.types.float64(numba.types.int64), codegen


@numba.njit(**_INLINE)
def _exp32(x: Any) -> Any:  # pragma: no cover - compiled
    """exp of a float32 within an ulp; 0 below -87 and inf above 88 (e^±87.3 and e^88.7 are
    the float32 limits), NaN stays NaN."""
    xc = min(max(x, np.float32(-87.0)), np.float32(88.0))
    kf = math.floor(xc * np.float32(_LOG2E) + np.float32(0.5))  # x = k ln 2 + r, |r| <= ln2/2
    r = xc - kf * _LN2_HI_32
    r = r - kf * _LN2_LO_32
    c = _EXP_TAYLOR_32
    p = c[7] * r + c[6]
    p = p * r + c[5]
    p = p * r + c[4]
    p = p * r + c[3]
    p = p * r + c[2]
    p = p * r + c[1]
    p = p * r + c[0]
    y = p * _f32_from_bits((np.int32(kf) + np.int32(127)) << np.int32(23))  # · 2^k
    if x < np.float32(-87.0):
        y = np.float32(0.0)
    if x > np.float32(88.0):
        y = np.float32(np.inf)
    if x != x:
        y = x
    return y


@numba.njit(**_INLINE)
def _exp64(x: Any) -> Any:  # pragma: no cover - compiled
    """exp of a float64 within about two ulps; 0 below -708 and inf above 709, NaN stays NaN."""
    xc = min(max(x, -708.0), 709.0)
    kf = math.floor(xc * _LOG2E + 0.5)
    r = xc - kf * _LN2_HI_64
    r = r - kf * _LN2_LO_64
    c = _EXP_TAYLOR_64
    p = c[13] * r + c[12]
    p = p * r + c[11]
    p = p * r + c[10]
    p = p * r + c[9]
    p = p * r + c[8]
    p = p * r + c[7]
    p = p * r + c[6]
    p = p * r + c[5]
    p = p * r + c[4]
    p = p * r + c[3]
    p = p * r + c[2]
    p = p * r + c[1]
    p = p * r + c[0]
    y = p * _f64_from_bits((np.int64(kf) + np.int64(1023)) << np.int64(52))
    if x < -708.0:
        y = 0.0
    if x > 709.0:
        y = np.inf
    if x != x:
        y = x
    return y


def _exp(x: Any) -> Any:
    """exp of one float32 or float64 inside a kernel (``_exp32`` or ``_exp64``)."""
    raise NotImplementedError("_exp runs inside Numba kernels only")


@overload(_exp, jit_options=_JIT)
def _exp_of(x):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202 (Numba's typing matches
    # the implementation's signature, annotations included)
    if x == numba.types.float32:
        return lambda x: _exp32(x)
    if x == numba.types.float64:
        return lambda x: _exp64(x)
    return None


@numba.njit(**_INLINE)
def _tanh(u: Any, one: Any) -> Any:  # pragma: no cover - compiled
    """tanh(u) = 1 - 2 / (e^{2u} + 1), through ``_exp`` (absolute error about an ulp of 1)."""
    e = _exp(u + u)
    e = e + one
    return one - (one + one) / e


@numba.njit(**_INLINE)
def _horner(v: Any, c: Any) -> Any:  # pragma: no cover - compiled
    """Σ c[k] v**k by Horner's rule, in the order of ``nanotf.special._horner``; ``c`` a tuple,
    so the loop has a fixed length and unrolls."""
    n = len(c)
    p = v * c[n - 1]
    p = p + c[n - 2]
    for i in range(n - 3, -1, -1):
        p = p * v
        p = p + c[i]
    return p


@numba.njit(**_INLINE)
def _erf(x: Any, a: Any, hi: Any, k: Any, p: Any, r: Any, one: Any) -> Any:  # pragma: no cover
    """``nanotf.special.erf`` of one value, as its ``_erf_core``: both branches computed and one
    kept (so the loop vectorizes): |x| < a: x + x P(x²); else ±(1 - R(v) / exp(x²)),
    v = (|x| - k) / (|x| + k); x clipped to ±hi first, NaN stays NaN."""
    z = min(max(x, -hi), hi)
    if x != x:
        z = x
    ax = abs(z)
    t = ax * ax
    small = _horner(t, p)
    small = small * z
    small = small + z
    v = ax - k
    v = v / (ax + k)
    big = _horner(v, r)
    big = big / _exp(t)
    big = one - big
    if ax >= hi:  # erf(±hi) rounds to ±1 in the reference (its table is built so); exactly here
        big = one
    if z < 0:
        big = -big
    return small if ax < a else big  # NaN: big is NaN


# -- GELU -------------------------------------------------------------------------------------


@numba.njit(**_PARALLEL)
def _gelu_erf(x, out, cdf, sqrt_half, one, half, a, hi, k, p, r):  # pragma: no cover
    # cdf = ½ (1 + erf(x / √2)), out = x · cdf; x, out, cdf: (n,); a ... r: erf's table
    for i in numba.prange(x.size):
        xi = x[i]
        c = _erf(xi * sqrt_half, a, hi, k, p, r, one)
        c = c + one
        c = c * half
        cdf[i] = c
        out[i] = xi * c


@numba.njit(**_PARALLEL)
def _gelu_tanh(x, out, t, gelu_c, one, sqrt_2_over_pi, half):  # pragma: no cover - compiled
    # t = tanh(√(2/π) (x + c x³)), out = ½ x (1 + t); x, out, t: (n,)
    for i in numba.prange(x.size):
        xi = x[i]
        u = xi * xi
        u = u * gelu_c
        u = u + one
        u = u * xi
        u = u * sqrt_2_over_pi
        th = _tanh(u, one)
        t[i] = th
        o = th + one
        o = o * xi
        out[i] = o * half


@numba.njit(**_PARALLEL)
def _bias_gelu_erf(x, b, out, z, cdf, sqrt_half, one, half, a, hi, k, p,
                   r):  # pragma: no cover - compiled
    # z = x + b along the last axis, then GELU (erf) of z; x, out, z, cdf: (rows, C), b: (C,)
    rows, c = x.shape
    for row in numba.prange(rows):
        for j in range(c):
            zz = x[row, j] + b[j]
            z[row, j] = zz
            cc = _erf(zz * sqrt_half, a, hi, k, p, r, one)
            cc = cc + one
            cc = cc * half
            cdf[row, j] = cc
            out[row, j] = zz * cc


@numba.njit(**_PARALLEL)
def _bias_gelu_tanh(x, b, out, z, t, gelu_c, one, sqrt_2_over_pi,
                    half):  # pragma: no cover - compiled
    # z = x + b along the last axis, then GELU (tanh) of z; x, out, z, t: (rows, C), b: (C,)
    rows, c = x.shape
    for r in numba.prange(rows):
        for j in range(c):
            zz = x[r, j] + b[j]
            z[r, j] = zz
            u = zz * zz
            u = u * gelu_c
            u = u + one
            u = u * zz
            u = u * sqrt_2_over_pi
            th = _tanh(u, one)
            t[r, j] = th
            o = th + one
            o = o * zz
            out[r, j] = o * half


@numba.njit(**_PARALLEL)
def _gelu_erf_backward(dout, x, cdf, dx, neg_half, inv_sqrt_2pi):  # pragma: no cover - compiled
    # dx = dout (Φ(x) + x φ(x)),  φ(x) = exp(-x²/2) / √(2π); all (n,)
    for i in numba.prange(x.size):
        xi = x[i]
        p = xi * xi
        p = p * neg_half
        p = _exp(p)
        p = p * inv_sqrt_2pi
        p = p * xi
        p = p + cdf[i]
        dx[i] = p * dout[i]


@numba.njit(**_PARALLEL)
def _gelu_tanh_backward(dout, x, t, dx, three_gelu_c, one, sqrt_2_over_pi,
                        half):  # pragma: no cover - compiled
    # dx = dout · ½ (1 + t + x (1 - t²) √(2/π) (1 + 3 c x²)); all (n,)
    for i in numba.prange(x.size):
        xi = x[i]
        ti = t[i]
        du = xi * xi
        du = du * three_gelu_c
        du = du + one
        du = du * sqrt_2_over_pi
        s = ti * ti
        s = one - s
        du = du * s
        du = du * xi
        du = du + ti
        du = du + one
        du = du * half
        dx[i] = du * dout[i]


# -- LayerNorm --------------------------------------------------------------------------------


@numba.njit(**_PARALLEL)
def _layernorm_forward(x, gamma, beta, eps, one, out, xhat, rstd, mean):  # pragma: no cover
    # per row of x: mean, var = mean((x - mean)²) + eps, rstd = 1 / √var,
    # xhat = (x - mean) · rstd, out = xhat · γ + β; x, out, xhat: (rows, n), rstd, mean: (rows,)
    rows, n = x.shape
    for r in numba.prange(rows):
        mean[r] = _row_sum(x, r) / n  # rounded to the dtype on the store
        m = mean[r]
        for j in range(n):
            xhat[r, j] = x[r, j] - m
        rstd[r] = _row_dot(xhat, xhat, r) / n  # the biased variance, in the dtype
        var = rstd[r] + eps
        rs = one / math.sqrt(var)
        rstd[r] = rs
        for j in range(n):
            h = xhat[r, j] * rs
            xhat[r, j] = h
            o = h * gamma[j]
            out[r, j] = o + beta[j]


@numba.njit(**_PARALLEL)
def _layernorm_backward(dout, xhat, rstd, gamma, dx, g, mean_g, mean_gh):  # pragma: no cover
    # per row: g = dout · γ, dx = rstd · (g - (x̂ · mean(g x̂) + mean(g))); (rows, n)
    rows, n = xhat.shape
    for r in numba.prange(rows):
        for j in range(n):
            g[r, j] = dout[r, j] * gamma[j]
        mean_g[r] = _row_sum(g, r) / n
        mean_gh[r] = _row_dot(g, xhat, r) / n
        mg = mean_g[r]
        mgh = mean_gh[r]
        rs = rstd[r]
        for j in range(n):
            t = xhat[r, j] * mgh
            t = t + mg
            t = g[r, j] - t
            dx[r, j] = t * rs


@numba.njit(**_PARALLEL)
def _layernorm_param_partials(dout, xhat, part_gamma, part_beta, rows,
                              block):  # pragma: no cover - compiled
    # float64 column sums of dout · x̂ and dout over each block of `block` rows;
    # dout, xhat: (rows, n), part_*: (blocks, n)
    blocks, n = part_gamma.shape
    for k in numba.prange(blocks):
        r1 = min(rows, (k + 1) * block)
        for r in range(k * block, r1):
            for j in range(n):
                d = dout[r, j]
                part_gamma[k, j] += d * xhat[r, j]
                part_beta[k, j] += d


@numba.njit(**_PARALLEL)
def _sum_blocks(part_gamma, part_beta, dgamma, dbeta):  # pragma: no cover - compiled
    # the blocks' partial sums added in order, per column; part_*: (blocks, n), d*: (n,)
    blocks, n = part_gamma.shape
    for j in numba.prange(n):
        sg = 0.0
        sb = 0.0
        for k in range(blocks):
            sg += part_gamma[k, j]
            sb += part_beta[k, j]
        dgamma[j] = sg
        dbeta[j] = sb


# -- softmax along the last axis --------------------------------------------------------------


@numba.njit(**_PARALLEL)
def _softmax_forward(x, mask, has_mask, write_scores, scale, lowest, zero, scores, probs,
                     total):  # pragma: no cover - compiled
    # per row: s = x · scale, masked entries at the dtype's lowest value (to scores when asked);
    # p = exp(s - max s) / Σ exp(s - max s), masked entries then 0; x, mask, scores, probs:
    # (rows, n) (mask (1, 1) and scores unused when not asked), total: (rows,)
    rows, n = x.shape
    for r in numba.prange(rows):
        top = lowest
        for j in range(n):
            s = x[r, j] * scale
            if has_mask and not mask[r, j]:
                s = lowest
            if write_scores:
                scores[r, j] = s
            probs[r, j] = s
            if s > top:
                top = s
        for j in range(n):
            probs[r, j] = _exp(probs[r, j] - top)
        total[r] = _row_sum(probs, r)  # rounded to the dtype on the store
        tot = total[r]
        for j in range(n):
            p = probs[r, j] / tot
            if has_mask and not mask[r, j]:
                p = zero
            probs[r, j] = p


@numba.njit(**_PARALLEL)
def _softmax_backward(dout, y, dx, dot):  # pragma: no cover - compiled
    # per row: dx = dout · y - y · Σ_j dout_j y_j; (rows, n), dot: (rows,)
    rows, n = y.shape
    for r in numba.prange(rows):
        dot[r] = _row_dot(dout, y, r)
        d = dot[r]
        for j in range(n):
            a = dout[r, j] * y[r, j]
            dx[r, j] = a - y[r, j] * d


# -- Adam / AdamW -----------------------------------------------------------------------------


@numba.njit(**_PARALLEL)
def _adam(theta, g, m, v, wd_mode, l2, decay, lerp_near, w, one_minus_w, beta2,
          one_minus_beta2, neg_step_size, bc2_sqrt, eps):  # pragma: no cover - compiled
    # the steps of nanotf.optim.adam.Adam._update, per element, in place; all (n,)
    for i in numba.prange(theta.size):
        gg = g[i]
        th = theta[i]
        if wd_mode == 2:
            th = th * decay
        elif wd_mode == 1:
            s0 = th * l2
            gg = gg + s0
        d = gg - m[i]
        if lerp_near:
            d = d * w
            mi = m[i] + d
        else:
            d = d * one_minus_w
            mi = gg - d
        m[i] = mi
        vi = v[i] * beta2
        s1 = gg * one_minus_beta2
        s1 = s1 * gg
        vi = vi + s1
        v[i] = vi
        den = math.sqrt(vi)
        den = den / bc2_sqrt
        den = den + eps
        step = mi * neg_step_size
        step = step / den
        theta[i] = th + step


# -- the kernels, as the ops call them (see nanotf.functional.fused.OPS) ---------------------


def _dtype(*arrays: Any) -> Any:
    """The one float dtype of ``arrays`` (float32 or float64), else ``TypeError``."""
    names = {a.dtype.name for a in arrays}
    if len(names) != 1 or not names <= set(_FLOATS):
        raise TypeError(
            f"fused Numba kernels need float32 or float64 inputs of one dtype, got {sorted(names)}"
        )
    return arrays[0].dtype


def _flat(a: Any) -> np.ndarray:
    """``a`` as a flat contiguous array (a view where it is C-contiguous already, else a copy)."""
    return np.ascontiguousarray(np.asarray(a).reshape(-1))


@functools.cache
def _erf_table(dt: Any) -> tuple[Any, ...]:
    """``nanotf.special``'s erf table for dtype ``dt``: (a, hi, k, P, R) in that dtype."""
    t = _F32 if dt == np.float32 else _F64
    k = dt.type
    return k(t.a), k(t.hi), k(t.k), tuple(k(c) for c in t.p), tuple(k(c) for c in t.r)


def _rows(a: Any) -> np.ndarray:
    """``a`` as C-contiguous rows of its last axis, (rows, n) (a view where it is C-contiguous)."""
    a = np.asarray(a)
    return np.ascontiguousarray(a.reshape(-1, a.shape[-1]))


def gelu_forward(x: Any, approximate: str) -> tuple[Any, Any]:
    dt = _dtype(x)
    k = dt.type
    xf = _flat(x)  # (n,)
    out, saved = np.empty_like(xf), np.empty_like(xf)
    if approximate == "none":
        _gelu_erf(xf, out, saved, k(_SQRT_HALF), k(1.0), k(0.5), *_erf_table(dt))
    else:
        _gelu_tanh(xf, out, saved, k(_GELU_C), k(1.0), k(_SQRT_2_OVER_PI), k(0.5))
    return out.reshape(np.shape(x)), saved


def gelu_backward(dout: Any, x: Any, saved: Any, approximate: str) -> Any:
    dt = _dtype(dout, x, saved)
    k = dt.type
    xf, df, sf = _flat(x), _flat(dout), _flat(saved)  # (n,)
    dx = np.empty_like(xf)
    if approximate == "none":
        _gelu_erf_backward(df, xf, sf, dx, k(-0.5), k(_INV_SQRT_2PI))
    else:
        _gelu_tanh_backward(df, xf, sf, dx, k(3.0 * _GELU_C), k(1.0), k(_SQRT_2_OVER_PI), k(0.5))
    return dx.reshape(np.shape(x))


def bias_gelu_forward(x: Any, bias: Any, approximate: str) -> tuple[Any, Any, Any]:
    dt = _dtype(x, bias)
    k = dt.type
    shape = np.shape(x)
    x2 = _rows(x)  # (rows, C)
    b = _flat(bias)
    out, z, saved = np.empty_like(x2), np.empty_like(x2), np.empty_like(x2)
    if approximate == "none":
        _bias_gelu_erf(x2, b, out, z, saved, k(_SQRT_HALF), k(1.0), k(0.5), *_erf_table(dt))
    else:
        _bias_gelu_tanh(x2, b, out, z, saved, k(_GELU_C), k(1.0), k(_SQRT_2_OVER_PI), k(0.5))
    return out.reshape(shape), z.reshape(shape), saved.reshape(-1)


def layernorm_forward(x: Any, gamma: Any, beta: Any, eps: float) -> tuple[Any, Any, Any]:
    dt = _dtype(x, gamma, beta)
    shape = np.shape(x)
    x2, gf, bf = _rows(x), _flat(gamma), _flat(beta)  # x2: (rows, n)
    out, xhat = np.empty_like(x2), np.empty_like(x2)
    rstd, mean = np.empty(x2.shape[0], dt), np.empty(x2.shape[0], dt)
    _layernorm_forward(x2, gf, bf, dt.type(eps), dt.type(1.0), out, xhat, rstd, mean)
    return out.reshape(shape), xhat.reshape(shape), rstd.reshape(*shape[:-1], 1)


def layernorm_backward(dout: Any, xhat: Any, rstd: Any, gamma: Any) -> tuple[Any, Any, Any]:
    dt = _dtype(dout, xhat, rstd, gamma)
    shape = np.shape(xhat)
    n = shape[-1]
    d2, h2, rf, gf = _rows(dout), _rows(xhat), _flat(rstd), _flat(gamma)  # (rows, n)
    rows = rf.size
    dx, g = np.empty_like(h2), np.empty_like(h2)
    _layernorm_backward(d2, h2, rf, gf, dx, g, np.empty(rows, dt), np.empty(rows, dt))
    blocks = -(-rows // ROWS_PER_BLOCK)
    part_gamma, part_beta = np.zeros((blocks, n)), np.zeros((blocks, n))  # float64
    _layernorm_param_partials(d2, h2, part_gamma, part_beta, rows, ROWS_PER_BLOCK)
    dgamma, dbeta = np.empty(n, dt), np.empty(n, dt)
    _sum_blocks(part_gamma, part_beta, dgamma, dbeta)
    return dx.reshape(shape), dgamma, dbeta


def _softmax_rows(x: Any, mask: Any, scale: float, write_scores: bool) -> tuple[Any, Any]:
    dt = _dtype(x)
    k = dt.type
    shape = np.shape(x)
    x2 = _rows(x)  # (rows, n)
    probs = np.empty_like(x2)
    scores = np.empty_like(x2) if write_scores else probs  # not written when not asked
    if mask is None:
        m, has_mask = np.ones((1, 1), dtype=np.bool_), False  # never read
    else:
        m, has_mask = _rows(np.broadcast_to(mask, shape)), True
    _softmax_forward(x2, m, has_mask, write_scores, k(scale), k(np.finfo(dt).min), k(0.0),
                     scores, probs, np.empty(x2.shape[0], dt))
    return scores.reshape(shape), probs.reshape(shape)


def softmax_forward(x: Any) -> Any:
    return _softmax_rows(x, None, 1.0, write_scores=False)[1]


def masked_softmax_forward(x: Any, mask: Any, scale: float) -> tuple[Any, Any]:
    return _softmax_rows(x, mask, scale, write_scores=True)


def softmax_backward(dout: Any, y: Any) -> Any:
    dt = _dtype(dout, y)
    shape = np.shape(y)
    d2, y2 = _rows(dout), _rows(y)  # (rows, n)
    dx = np.empty_like(y2)
    _softmax_backward(d2, y2, dx, np.empty(y2.shape[0], dt))
    return dx.reshape(shape)


def adam_update(
    theta: Any,
    g: Any,
    m: Any,
    v: Any,
    *,
    l2: float,
    decay: float | None,
    w: float,
    beta2: float,
    step_size: float,
    bias_correction2_sqrt: float,
    eps: float,
) -> None:
    """θ, m, v of one parameter updated in place, as ``cupy_kernels.adam_update`` (the same
    arguments). Arrays that are not C-contiguous are updated on contiguous copies, written back."""
    k = _dtype(theta, g, m, v).type
    mode = 2 if decay is not None else (1 if l2 != 0 else 0)
    state = (theta, m, v)
    work = [_flat(a) for a in state]  # views of contiguous arrays, copies of others
    _adam(work[0], _flat(g), work[1], work[2], mode, k(l2), k(1.0 if decay is None else decay),
          w < 0.5, k(w), k(1.0 - w), k(beta2), k(1.0 - beta2), k(-step_size),
          k(bias_correction2_sqrt), k(eps))
    for a, flat in zip(state, work, strict=True):
        if not a.flags.c_contiguous:
            a[...] = flat.reshape(a.shape)


KERNELS: dict[str, Callable[..., Any]] = {
    "gelu_forward": gelu_forward,
    "gelu_backward": gelu_backward,
    "bias_gelu_forward": bias_gelu_forward,
    "layernorm_forward": layernorm_forward,
    "layernorm_backward": layernorm_backward,
    "softmax_forward": softmax_forward,
    "softmax_backward": softmax_backward,
    "masked_softmax_forward": masked_softmax_forward,
    "adam_update": adam_update,
}


# -- the same kernels for the CPU stand-in (nanotf.testing.strict) ----------------------------


def _unwrap(a: Any) -> Any:
    """The NumPy array inside a stand-in array; None and numbers pass; a NumPy array is refused,
    as the stand-in refuses host arrays mixed with device arrays."""
    if isinstance(a, StrictArray):
        return a._a
    if isinstance(a, np.ndarray):
        raise DeviceConversionError(
            "a NumPy array was mixed with device arrays (CuPy refuses this): "
            f"got numpy.ndarray of shape {a.shape}; move it with nanotf.asarray first"
        )
    return a


def _wrap(result: Any) -> Any:
    if isinstance(result, tuple):
        return tuple(_wrap(r) for r in result)
    return StrictArray(result) if isinstance(result, np.ndarray) else result


def _for_strict(kernel: Callable[..., Any]) -> Callable[..., Any]:
    """``kernel`` on the NumPy arrays inside stand-in arrays, its results wrapped again (the
    stand-in's in-place updates land in the wrapped arrays themselves)."""

    def run(*args: Any, **kwargs: Any) -> Any:
        return _wrap(kernel(*(_unwrap(a) for a in args),
                            **{k: _unwrap(a) for k, a in kwargs.items()}))

    run.__name__ = run.__qualname__ = f"strict_{kernel.__name__}"
    run.__doc__ = f"``{kernel.__name__}`` for ``nanotf.testing.strict`` arrays."
    return run


STRICT_KERNELS: dict[str, Callable[..., Any]] = {op: _for_strict(k) for op, k in KERNELS.items()}
