"""CuPy kernels behind the fused paths: GELU (with or without a bias), LayerNorm, the (masked,
scaled) softmax along the last axis, and the Adam/AdamW update.

Each kernel computes what its reference op computes, in the same order of operations, for
float32 and float64: the sources are ``string.Template`` texts rendered per dtype (``$T`` the C
type, ``$exp`` the C function of that precision, constants as literals of that precision, so
float32 stays float32 as it does in NumPy, where a Python float constant takes the array's
dtype). They compile with ``--fmad=false``, so no multiply and add are contracted into one
rounding that the reference does not make; sums over a row (LayerNorm, softmax) run as a tree in
one thread block and so round differently from CuPy's reductions, within the tolerances the
tests use.

Nothing here imports CuPy until a kernel runs: ``KERNELS`` (op name -> function, see
``nanotf.functional.fused.OPS``) is registered by ``nanotf.functional.fused`` the first time an
op sees a CuPy array, and each kernel object is built and compiled on its first call, once per
dtype (``functools.lru_cache``; CuPy also keeps the binaries on disk).

Row kernels (LayerNorm, softmax) run one thread block per row of the last axis, on a
C-contiguous copy of their inputs when those are not contiguous already; a mask is broadcast to
the scores' shape and made contiguous (one byte per score) before the launch.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from string import Template
from typing import Any

import numpy as np

from .cupy_bias_relu import BIAS_RELU_ELEMENTWISE, BIAS_RELU_KERNELS

__all__ = ["KERNELS", "render", "SOURCES", "ELEMENTWISE"]

# the constants of nanotf.functional.activations, computed the same way
_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_C = 0.044715

_C_TYPE = {"float32": "float", "float64": "double"}
_MATH = {
    "float32": {"exp": "expf", "erf": "erff", "tanh": "tanhf", "sqrt": "sqrtf"},
    "float64": {"exp": "exp", "erf": "erf", "tanh": "tanh", "sqrt": "sqrt"},
}
_CONSTANTS = {
    "ZERO": 0.0,
    "ONE": 1.0,
    "HALF": 0.5,
    "NEG_HALF": -0.5,
    "SQRT_HALF": _SQRT_HALF,
    "INV_SQRT_2PI": _INV_SQRT_2PI,
    "SQRT_2_OVER_PI": _SQRT_2_OVER_PI,
    "GELU_C": _GELU_C,
    "THREE_GELU_C": 3.0 * _GELU_C,
}
_OPTIONS = ("--fmad=false",)
_MAX_BLOCK = 256  # threads per block of the row kernels (a power of two)
_COLUMNS_PER_BLOCK = 256  # threads per block of LayerNorm's dgamma/dbeta partial sums
_MAX_CHUNKS = 256  # row chunks of those partial sums (summed by CuPy afterwards)


def literal(value: float, dtype: str) -> str:
    """``value`` as a C literal of ``dtype``: rounded to float32 first (as NumPy does with a
    Python float against a float32 array), written so that it parses back exactly."""
    if dtype == "float32":
        return repr(float(np.float32(value))) + "f"
    return repr(float(value))


def render(template: str, dtype: str, **extra: str) -> str:
    """The source ``template`` for ``dtype`` ("float32" or "float64"): ``$T`` the C type, ``$dt``
    the NumPy name, ``$exp``/``$erf``/``$tanh``/``$sqrt`` its math functions, ``$ONE`` and the
    other constants its literals, plus ``extra``. A name left unfilled raises ``KeyError``."""
    if dtype not in _C_TYPE:
        raise TypeError(f"fused CuPy kernels support float32 and float64, got {dtype}")
    names: dict[str, str] = {"T": _C_TYPE[dtype], "dt": dtype, "BLOCK": str(_MAX_BLOCK)}
    names.update(_MATH[dtype])
    names.update({k: literal(v, dtype) for k, v in _CONSTANTS.items()})
    names.update(extra)
    return Template(template).substitute(names)


# -- elementwise kernels: (in_params, out_params, operation) ----------------------------------

ELEMENTWISE: dict[str, tuple[str, str, str]] = {
    # GELU, exact: cdf = ½ (1 + erf(x / √2)), out = x · cdf
    "gelu_forward_none": (
        "$dt x",
        "$dt out, $dt cdf",
        "$T c = $erf(x * $SQRT_HALF); c = c + $ONE; c = c * $HALF; cdf = c; out = x * c;",
    ),
    # GELU, tanh: t = tanh(√(2/π) (x + c x³)), out = ½ x (1 + t)
    "gelu_forward_tanh": (
        "$dt x",
        "$dt out, $dt t",
        "$T u = x * x; u = u * $GELU_C; u = u + $ONE; u = u * x; u = u * $SQRT_2_OVER_PI;"
        " $T th = $tanh(u); t = th; $T o = th + $ONE; o = o * x; out = o * $HALF;",
    ),
    # the same with z = x + bias first (bias broadcast along the last axis)
    "bias_gelu_forward_none": (
        "$dt x, $dt b",
        "$dt out, $dt z, $dt cdf",
        "$T zz = x + b; z = zz;"
        " $T c = $erf(zz * $SQRT_HALF); c = c + $ONE; c = c * $HALF; cdf = c; out = zz * c;",
    ),
    "bias_gelu_forward_tanh": (
        "$dt x, $dt b",
        "$dt out, $dt z, $dt t",
        "$T zz = x + b; z = zz;"
        " $T u = zz * zz; u = u * $GELU_C; u = u + $ONE; u = u * zz; u = u * $SQRT_2_OVER_PI;"
        " $T th = $tanh(u); t = th; $T o = th + $ONE; o = o * zz; out = o * $HALF;",
    ),
    # dx = dout (Φ(x) + x φ(x)),  φ(x) = exp(-x²/2) / √(2π)
    "gelu_backward_none": (
        "$dt dout, $dt x, $dt cdf",
        "$dt dx",
        "$T p = x * x; p = p * $NEG_HALF; p = $exp(p); p = p * $INV_SQRT_2PI; p = p * x;"
        " p = p + cdf; dx = p * dout;",
    ),
    # dx = dout · ½ (1 + t + x (1 - t²) √(2/π) (1 + 3 c x²))
    "gelu_backward_tanh": (
        "$dt dout, $dt x, $dt t",
        "$dt dx",
        "$T du = x * x; du = du * $THREE_GELU_C; du = du + $ONE; du = du * $SQRT_2_OVER_PI;"
        " $T s = t * t; s = $ONE - s; du = du * s; du = du * x; du = du + t; du = du + $ONE;"
        " du = du * $HALF; dx = du * dout;",
    ),
    **BIAS_RELU_ELEMENTWISE,  # bias + ReLU, forward and backward (cupy_bias_relu)
    # Adam/AdamW on one parameter, in place (the steps of nanotf.optim.adam.Adam._update)
    "adam_update": (
        "$dt g, int32 wd_mode, $dt l2, $dt decay, int32 lerp_near, $dt w, $dt one_minus_w,"
        " $dt beta2, $dt one_minus_beta2, $dt neg_step_size, $dt bc2_sqrt, $dt eps",
        "$dt theta, $dt m, $dt v",
        "$T gg = g;"
        " if (wd_mode == 2) { theta = theta * decay; }"
        " else if (wd_mode == 1) { $T s0 = theta * l2; gg = gg + s0; }"
        " $T d = gg - m;"
        " if (lerp_near) { d = d * w; m = m + d; } else { d = d * one_minus_w; m = gg - d; }"
        " v = v * beta2; $T s1 = gg * one_minus_beta2; s1 = s1 * gg; v = v + s1;"
        " $T den = $sqrt(v); den = den / bc2_sqrt; den = den + eps;"
        " $T step = m * neg_step_size; step = step / den; theta = theta + step;",
    ),
}

# -- row kernels (one thread block per row of the last axis) ----------------------------------

_REDUCE = """
__device__ __forceinline__ $T block_sum($T value, $T* buf) {
    const int tid = threadIdx.x;
    buf[tid] = value;
    __syncthreads();
    for (int k = blockDim.x / 2; k > 0; k >>= 1) {
        if (tid < k) buf[tid] = buf[tid] + buf[tid + k];
        __syncthreads();
    }
    const $T total = buf[0];
    __syncthreads();
    return total;
}

__device__ __forceinline__ $T block_max($T value, $T* buf) {
    const int tid = threadIdx.x;
    buf[tid] = value;
    __syncthreads();
    for (int k = blockDim.x / 2; k > 0; k >>= 1) {
        if (tid < k && buf[tid + k] > buf[tid]) buf[tid] = buf[tid + k];
        __syncthreads();
    }
    const $T top = buf[0];
    __syncthreads();
    return top;
}
"""

SOURCES: dict[str, str] = {
    # mean and rstd = 1 / √(σ² + eps) per row (two passes, as the reference), then
    # xhat = (x - mean) · rstd and out = xhat · γ + β
    "layernorm_forward": _REDUCE + """
extern "C" __global__ void nanotf_layernorm_forward_$dt(
        const $T* __restrict__ x, const $T* __restrict__ gamma, const $T* __restrict__ beta,
        $T* __restrict__ out, $T* __restrict__ xhat, $T* __restrict__ rstd,
        const long long n, const $T eps) {
    __shared__ $T buf[$BLOCK];
    const long long row = blockIdx.x;
    const $T* xr = x + row * n;
    $T s = $ZERO;
    for (long long j = threadIdx.x; j < n; j += blockDim.x) s = s + xr[j];
    const $T mean = block_sum(s, buf) / ($T)n;
    $T q = $ZERO;
    for (long long j = threadIdx.x; j < n; j += blockDim.x) {
        const $T d = xr[j] - mean;
        q = q + d * d;
    }
    $T var = block_sum(q, buf) / ($T)n;
    var = var + eps;
    const $T r = $ONE / $sqrt(var);
    if (threadIdx.x == 0) rstd[row] = r;
    for (long long j = threadIdx.x; j < n; j += blockDim.x) {
        $T h = xr[j] - mean;
        h = h * r;
        xhat[row * n + j] = h;
        $T o = h * gamma[j];
        out[row * n + j] = o + beta[j];
    }
}
""",
    # g = dout · γ;  dx = rstd · (g - (x̂ · mean(g x̂) + mean(g)))
    "layernorm_backward": _REDUCE + """
extern "C" __global__ void nanotf_layernorm_backward_$dt(
        const $T* __restrict__ dout, const $T* __restrict__ xhat, const $T* __restrict__ rstd,
        const $T* __restrict__ gamma, $T* __restrict__ dx, const long long n) {
    __shared__ $T buf[$BLOCK];
    const long long row = blockIdx.x;
    const $T* dr = dout + row * n;
    const $T* hr = xhat + row * n;
    $T sg = $ZERO;
    $T sgh = $ZERO;
    for (long long j = threadIdx.x; j < n; j += blockDim.x) {
        const $T g = dr[j] * gamma[j];
        sg = sg + g;
        sgh = sgh + g * hr[j];
    }
    const $T mean_g = block_sum(sg, buf) / ($T)n;
    const $T mean_gh = block_sum(sgh, buf) / ($T)n;
    const $T r = rstd[row];
    for (long long j = threadIdx.x; j < n; j += blockDim.x) {
        const $T g = dr[j] * gamma[j];
        $T t = hr[j] * mean_gh;
        t = t + mean_g;
        t = g - t;
        dx[row * n + j] = t * r;
    }
}
""",
    # partial column sums of dout · x̂ and dout over chunks of rows (summed by CuPy after)
    "layernorm_param_grads": """
extern "C" __global__ void nanotf_layernorm_param_grads_$dt(
        const $T* __restrict__ dout, const $T* __restrict__ xhat,
        $T* __restrict__ part_gamma, $T* __restrict__ part_beta,
        const long long rows, const long long n, const long long chunk) {
    const long long col = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (col >= n) return;
    const long long r0 = (long long)blockIdx.y * chunk;
    long long r1 = r0 + chunk;
    if (r1 > rows) r1 = rows;
    $T sg = $ZERO;
    $T sb = $ZERO;
    for (long long r = r0; r < r1; ++r) {
        const $T d = dout[r * n + col];
        sg = sg + d * xhat[r * n + col];
        sb = sb + d;
    }
    part_gamma[(long long)blockIdx.y * n + col] = sg;
    part_beta[(long long)blockIdx.y * n + col] = sb;
}
""",
    # s = x · scale, masked entries at the dtype's lowest value (written to scores when asked);
    # p = exp(s - max s) / Σ exp(s - max s), masked entries then 0 (a fully masked row: zeros)
    "softmax_forward": _REDUCE + """
extern "C" __global__ void nanotf_softmax_forward_$dt(
        const $T* __restrict__ x, const bool* __restrict__ mask,
        $T* __restrict__ scores, $T* __restrict__ probs,
        const long long n, const $T scale, const $T lowest,
        const int has_mask, const int write_scores) {
    __shared__ $T buf[$BLOCK];
    const long long row = blockIdx.x;
    const $T* xr = x + row * n;
    const bool* mr = mask + row * n;
    $T* pr = probs + row * n;
    $T top = lowest;
    for (long long j = threadIdx.x; j < n; j += blockDim.x) {
        $T s = xr[j] * scale;
        if (has_mask && !mr[j]) s = lowest;
        if (write_scores) scores[row * n + j] = s;
        if (s > top) top = s;
    }
    top = block_max(top, buf);
    $T total = $ZERO;
    for (long long j = threadIdx.x; j < n; j += blockDim.x) {
        $T s = xr[j] * scale;
        if (has_mask && !mr[j]) s = lowest;
        const $T e = $exp(s - top);
        pr[j] = e;
        total = total + e;
    }
    total = block_sum(total, buf);
    for (long long j = threadIdx.x; j < n; j += blockDim.x) {
        const $T p = pr[j] / total;
        pr[j] = (has_mask && !mr[j]) ? $ZERO : p;
    }
}
""",
    # dx = dout · y - y · Σ_j dout_j y_j
    "softmax_backward": _REDUCE + """
extern "C" __global__ void nanotf_softmax_backward_$dt(
        const $T* __restrict__ dout, const $T* __restrict__ y, $T* __restrict__ dx,
        const long long n) {
    __shared__ $T buf[$BLOCK];
    const long long row = blockIdx.x;
    const $T* dr = dout + row * n;
    const $T* yr = y + row * n;
    $T dot = $ZERO;
    for (long long j = threadIdx.x; j < n; j += blockDim.x) dot = dot + dr[j] * yr[j];
    dot = block_sum(dot, buf);
    for (long long j = threadIdx.x; j < n; j += blockDim.x) {
        const $T a = dr[j] * yr[j];
        dx[row * n + j] = a - yr[j] * dot;
    }
}
""",
}


# -- building the kernels (lazily, once per dtype) -------------------------------------------


def _cupy() -> Any:
    import cupy  # type: ignore[import-not-found]

    return cupy


def _dtype(*arrays: Any) -> str:
    names = {a.dtype.name for a in arrays}
    if len(names) != 1 or not names <= set(_C_TYPE):
        raise TypeError(
            f"fused CuPy kernels need float32 or float64 inputs of one dtype, got {sorted(names)}"
        )
    return names.pop()


@functools.cache
def _elementwise(name: str, dtype: str) -> Any:
    in_params, out_params, operation = (render(s, dtype) for s in ELEMENTWISE[name])
    return _cupy().ElementwiseKernel(
        in_params, out_params, operation, f"nanotf_{name}_{dtype}", options=_OPTIONS
    )


@functools.cache
def _raw(name: str, dtype: str) -> Any:
    return _cupy().RawKernel(render(SOURCES[name], dtype), f"nanotf_{name}_{dtype}",
                             options=_OPTIONS)


def _build(name: str, *arrays: Any) -> Any:
    """The elementwise kernel ``name`` for the dtype of ``arrays`` (for ``cupy_bias_relu``)."""
    return _elementwise(name, _dtype(*arrays))


def _block(n: int) -> int:
    """Threads per row: a power of two from 32 (one warp) up to ``_MAX_BLOCK``."""
    return min(_MAX_BLOCK, max(32, 1 << (int(n) - 1).bit_length()))


def _rows(x: Any) -> tuple[int, int]:
    n = int(x.shape[-1])
    return (int(x.size) // n if n else 0), n


# -- the kernels, as the ops call them (see nanotf.functional.fused.OPS) ---------------------


def gelu_forward(x: Any, approximate: str) -> tuple[Any, Any]:
    out, saved = _elementwise(f"gelu_forward_{approximate}", _dtype(x))(x)
    return out, saved.reshape(-1)


def gelu_backward(dout: Any, x: Any, saved: Any, approximate: str) -> Any:
    kernel = _elementwise(f"gelu_backward_{approximate}", _dtype(dout, x, saved))
    return kernel(dout, x, saved.reshape(x.shape))


def bias_gelu_forward(x: Any, bias: Any, approximate: str) -> tuple[Any, Any, Any]:
    out, z, saved = _elementwise(f"bias_gelu_forward_{approximate}", _dtype(x, bias))(x, bias)
    return out, z, saved.reshape(-1)


def layernorm_forward(x: Any, gamma: Any, beta: Any, eps: float) -> tuple[Any, Any, Any]:
    cp = _cupy()
    dt = _dtype(x, gamma, beta)
    x, gamma, beta = (cp.ascontiguousarray(a) for a in (x, gamma, beta))
    rows, n = _rows(x)
    out, xhat = cp.empty_like(x), cp.empty_like(x)
    rstd = cp.empty((*x.shape[:-1], 1), dtype=x.dtype)
    if rows:
        args = (x, gamma, beta, out, xhat, rstd, np.int64(n), x.dtype.type(eps))
        _raw("layernorm_forward", dt)((rows,), (_block(n),), args)
    return out, xhat, rstd


def layernorm_backward(dout: Any, xhat: Any, rstd: Any, gamma: Any) -> tuple[Any, Any, Any]:
    cp = _cupy()
    dt = _dtype(dout, xhat, rstd, gamma)
    dout, xhat, rstd, gamma = (cp.ascontiguousarray(a) for a in (dout, xhat, rstd, gamma))
    rows, n = _rows(xhat)
    dx = cp.empty_like(xhat)
    if not rows:
        return dx, cp.zeros(n, dtype=xhat.dtype), cp.zeros(n, dtype=xhat.dtype)
    args = (dout, xhat, rstd, gamma, dx, np.int64(n))
    _raw("layernorm_backward", dt)((rows,), (_block(n),), args)
    chunks = min(rows, _MAX_CHUNKS)
    chunk = -(-rows // chunks)
    chunks = -(-rows // chunk)
    part_gamma = cp.empty((chunks, n), dtype=xhat.dtype)
    part_beta = cp.empty((chunks, n), dtype=xhat.dtype)
    grid = (-(-n // _COLUMNS_PER_BLOCK), chunks)
    _raw("layernorm_param_grads", dt)(
        grid,
        (_COLUMNS_PER_BLOCK,),
        (dout, xhat, part_gamma, part_beta, np.int64(rows), np.int64(n), np.int64(chunk)),
    )
    return dx, part_gamma.sum(axis=0), part_beta.sum(axis=0)


def _softmax_rows(x: Any, mask: Any, scale: float, write_scores: bool) -> tuple[Any, Any]:
    cp = _cupy()
    dt = _dtype(x)
    x = cp.ascontiguousarray(x)
    rows, n = _rows(x)
    probs = cp.empty_like(x)
    scores = cp.empty_like(x) if write_scores else probs  # unused when not written
    if mask is None:
        mask, has_mask = cp.ones(1, dtype=bool), 0  # never read
    else:
        mask, has_mask = cp.ascontiguousarray(cp.broadcast_to(mask, x.shape)), 1
    if rows:
        kind = x.dtype.type
        args = (x, mask, scores, probs, np.int64(n), kind(scale), kind(np.finfo(x.dtype).min),
                np.int32(has_mask), np.int32(int(write_scores)))
        _raw("softmax_forward", dt)((rows,), (_block(n),), args)
    return scores, probs


def softmax_forward(x: Any) -> Any:
    return _softmax_rows(x, None, 1.0, write_scores=False)[1]


def masked_softmax_forward(x: Any, mask: Any, scale: float) -> tuple[Any, Any]:
    return _softmax_rows(x, mask, scale, write_scores=True)


def softmax_backward(dout: Any, y: Any) -> Any:
    cp = _cupy()
    dt = _dtype(dout, y)
    dout, y = cp.ascontiguousarray(dout), cp.ascontiguousarray(y)
    rows, n = _rows(y)
    dx = cp.empty_like(y)
    if rows:
        _raw("softmax_backward", dt)((rows,), (_block(n),), (dout, y, dx, np.int64(n)))
    return dx


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
    """θ, m, v of one parameter updated in place. ``l2``: λ added as λ·θ to the gradient (Adam),
    0 for none; ``decay``: the factor 1 − lr·λ on θ (AdamW), None for none; ``w``: 1 − β1 rounded
    to θ's dtype (the lerp weight); the rest as ``Adam._update`` computes them."""
    kind = theta.dtype.type
    mode = 2 if decay is not None else (1 if l2 != 0 else 0)
    _elementwise("adam_update", _dtype(theta, g, m, v))(
        g, np.int32(mode), kind(l2), kind(1.0 if decay is None else decay),
        np.int32(1 if w < 0.5 else 0), kind(w), kind(1.0 - w), kind(beta2), kind(1.0 - beta2),
        kind(-step_size), kind(bias_correction2_sqrt), kind(eps),
        theta, m, v,
    )


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
    **{op: functools.partial(k, _build) for op, k in BIAS_RELU_KERNELS.items()},
}
