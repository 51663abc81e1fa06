"""The scalar arithmetic the Numba kernels (``numba_kernels``) inline into their loops: sums over
a row in four float64 partial sums, ``exp`` and ``tanh`` written out (so the loops vectorize,
where the C library's would cost one call per element), and ``nanotf.special.erf``'s method for
one value. See ``numba_kernels``' docstring for how they differ from NumPy's.

After an edit here, delete the ``*.nbi`` and ``*.nbc`` files in this folder's ``__pycache__``:
Numba's on-disk cache checks only the file that defines a loop, so the loops of the other files
would otherwise keep the machine code of the old arithmetic.
"""

from __future__ import annotations

import math
from typing import Any

import llvmlite.ir as llvm_ir
import numba
import numpy as np
from numba.extending import intrinsic, overload

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


@numba.njit(**_INLINE)
def _row_max(a: Any, r: int, lowest: Any) -> Any:  # pragma: no cover - compiled
    """max(lowest, a[r, :]) in four interleaved partial maxima (the same value in any order;
    NaN entries are passed over, as one running ``if a > top`` passes them)."""
    n = a.shape[1]
    m0 = lowest
    m1 = lowest
    m2 = lowest
    m3 = lowest
    j = 0
    while j + 4 <= n:
        v0 = a[r, j]
        v1 = a[r, j + 1]
        v2 = a[r, j + 2]
        v3 = a[r, j + 3]
        m0 = v0 if v0 > m0 else m0
        m1 = v1 if v1 > m1 else m1
        m2 = v2 if v2 > m2 else m2
        m3 = v3 if v3 > m3 else m3
        j += 4
    while j < n:
        v0 = a[r, j]
        m0 = v0 if v0 > m0 else m0
        j += 1
    m0 = m1 if m1 > m0 else m0
    m2 = m3 if m3 > m2 else m2
    return m2 if m2 > m0 else m0


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
    # x = k ln 2 + r, |r| <= ln2/2; np.floor keeps k a float32 (math.floor gives an int64, which
    # would carry the reduction and the polynomial into float64, at half the vector width)
    kf = np.floor(xc * np.float32(_LOG2E) + np.float32(0.5))
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


@numba.njit(**_INLINE)
def _gelu_cdf(x: Any, sqrt_half: Any, one: Any, half: Any, a: Any, hi: Any, k: Any, p: Any,
              r: Any) -> Any:  # pragma: no cover - compiled
    """GELU (erf)'s Φ(x) = ½ (1 + erf(x / √2)); a ... r: erf's table (``_erf``)."""
    c = _erf(x * sqrt_half, a, hi, k, p, r, one)
    c = c + one
    return c * half


@numba.njit(**_INLINE)
def _gelu_tanh_t(x: Any, gelu_c: Any, one: Any, sqrt_2_over_pi: Any) -> Any:  # pragma: no cover
    """GELU (tanh)'s t = tanh(√(2/π) (x + c x³)), as (x² c + 1) x √(2/π) in that order."""
    u = x * x
    u = u * gelu_c
    u = u + one
    u = u * x
    u = u * sqrt_2_over_pi
    return _tanh(u, one)
