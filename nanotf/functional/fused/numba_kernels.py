"""Numba kernels behind the fused paths on the CPU: GELU (with or without a bias), LayerNorm, the
(masked, scaled) softmax along the last axis, and the Adam/AdamW update, for NumPy arrays and for
the CPU stand-in ``nanotf.testing.strict``.

Each kernel computes what its reference op computes, step by step in the same order, for float32
and float64, in one pass over the data, as ``numba.prange`` loops: elementwise kernels share out
the elements, row kernels (LayerNorm, softmax) the rows of the last axis, over
``fused.kernel_threads()`` threads (1 unless ``fused.set_kernel_threads`` or
``NANOTF_KERNEL_THREADS`` says more: a second pool beside OpenBLAS's spinning threads costs more
than it buys on few cores; see ``set_kernel_threads``). Every output element, or every row, is
computed by one thread in a fixed order, so results are the same from run to run and whatever
the number of threads. They compile with
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

Three files: this one, the kernels as the ops call them (their checks, copies and the tables
they pass in); ``numba_loops``, the parallel loops; ``numba_math``, the scalar arithmetic the
loops inline (row sums, ``exp``, ``tanh``, ``erf``).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
from numba.typed import List as TypedList

from ...special import _F32, _F64
from ...testing.strict import DeviceConversionError, StrictArray
from ._threads import kernel_threads
from .numba_arrays import ROWS_PER_BLOCK
from .numba_arrays import flat as _flat
from .numba_arrays import rows as _rows
from .numba_arrays import same_float_dtype as _dtype
from .numba_bias_relu import BIAS_RELU_KERNELS
from .numba_dropout import DROPOUT_KERNELS
from .numba_loops import (
    _adam,
    _adam_many,
    _bias_gelu_erf,
    _bias_gelu_erf_out,
    _bias_gelu_tanh,
    _bias_gelu_tanh_out,
    _gelu_erf,
    _gelu_erf_backward,
    _gelu_tanh,
    _gelu_tanh_backward,
    _layernorm_backward,
    _layernorm_forward,
    _layernorm_param_partials,
    _softmax_backward,
    _softmax_forward,
    _sum_blocks,
)
from .numba_loss import LOSS_KERNELS

__all__ = ["KERNELS", "ROWS_PER_BLOCK", "STRICT_KERNELS"]

# the constants of nanotf.functional.activations, computed the same way
_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_C = 0.044715


# -- the kernels, as the ops call them (see nanotf.functional.fused.OPS) ---------------------


@functools.cache
def _erf_table(dt: Any) -> tuple[Any, ...]:
    """``nanotf.special``'s erf table for dtype ``dt``: (a, hi, k, P, R) in that dtype."""
    t = _F32 if dt == np.float32 else _F64
    k = dt.type
    return k(t.a), k(t.hi), k(t.k), tuple(k(c) for c in t.p), tuple(k(c) for c in t.r)


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


def bias_gelu_inference(x: Any, bias: Any, approximate: str) -> Any:
    dt = _dtype(x, bias)
    k = dt.type
    x2 = _rows(x)  # (rows, C)
    out = np.empty_like(x2)  # the output alone: no z, no saved (nothing for a backward)
    if approximate == "none":
        _bias_gelu_erf_out(x2, _flat(bias), out, k(_SQRT_HALF), k(1.0), k(0.5), *_erf_table(dt))
    else:
        _bias_gelu_tanh_out(x2, _flat(bias), out, k(_GELU_C), k(1.0), k(_SQRT_2_OVER_PI), k(0.5))
    return out.reshape(np.shape(x))


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


def _adam_constants(dt: np.dtype, l2: float, decay: float | None, w: float, beta2: float,
                    step_size: float, bias_correction2_sqrt: float, eps: float) -> tuple:
    """The arguments of ``_adam`` after the four arrays: the weight-decay mode (0 none, 1 L2,
    2 decoupled) and the constants of the update, as scalars of ``dt``."""
    k = dt.type
    mode = 2 if decay is not None else (1 if l2 != 0 else 0)
    return (mode, k(l2), k(1.0 if decay is None else decay), w < 0.5, k(w), k(1.0 - w), k(beta2),
            k(1.0 - beta2), k(-step_size), k(bias_correction2_sqrt), k(eps))


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
    dt = _dtype(theta, g, m, v)
    state = (theta, m, v)
    work = [_flat(a) for a in state]  # views of contiguous arrays, copies of others
    _adam(work[0], _flat(g), work[1], work[2],
          *_adam_constants(dt, l2, decay, w, beta2, step_size, bias_correction2_sqrt, eps))
    for a, flat in zip(state, work, strict=True):
        if not a.flags.c_contiguous:
            a[...] = flat.reshape(a.shape)


def adam_update_many(
    thetas: list[Any],
    grads: list[Any],
    ms: list[Any],
    vs: list[Any],
    *,
    cache: dict[str, Any],
    l2: float,
    decay: float | None,
    w: float,
    beta2: float,
    step_size: float,
    bias_correction2_sqrt: float,
    eps: float,
) -> bool:
    """``adam_update`` on every parameter, in one call of the loop instead of one call each:
    ``thetas[j]``, ``grads[j]``, ``ms[j]``, ``vs[j]`` are parameter j's θ, g, m, v, updated in
    place with the same arithmetic, so the same bits. True when done; False, with nothing done,
    unless all are C-contiguous NumPy arrays of one dtype, float32 or float64 (the optimizer
    then sends each parameter to ``adam_update``).

    The loop takes Numba typed lists of the flat arrays, which take about 2 µs an array to
    build (and, the first time in a process, a few tenths of a second to compile): they are
    built once and kept in ``cache`` (a dict the caller keeps from step to step) with the arrays
    they were built from, and built again when any array is another object. The kept arrays
    keep their ids from being reused, so comparing ids is comparing the arrays.
    """
    groups = (thetas, grads, ms, vs)
    if not (len(thetas) == len(grads) == len(ms) == len(vs)) or not thetas:
        raise ValueError(
            "fused Numba adam_update_many needs as many (at least one) parameters, gradients, "
            f"first and second moments, got {len(thetas)}, {len(grads)}, {len(ms)} and {len(vs)}"
        )
    ids = tuple(map(id, itertools.chain(*groups)))
    if cache.get("ids") != ids:
        cache["arrays"], cache["ids"] = tuple(itertools.chain(*groups)), ids
        cache["lists"] = _typed_lists(groups)
    lists = cache["lists"]
    if lists is None:
        return False
    _adam_many(*lists, *_adam_constants(thetas[0].dtype, l2, decay, w, beta2, step_size,
                                        bias_correction2_sqrt, eps))
    return True


def _typed_lists(groups: tuple[list[Any], ...]) -> tuple[TypedList, ...] | None:
    """One Numba typed list of flat views per group of arrays; None unless every array is a
    C-contiguous NumPy array of the first one's dtype, float32 or float64."""
    dt = groups[0][0].dtype
    if dt.char not in ("f", "d"):
        return None
    for group in groups:
        for a in group:
            if type(a) is not np.ndarray or a.dtype != dt or not a.flags.c_contiguous:
                return None
    return tuple(TypedList([a.reshape(-1) for a in group]) for group in groups)


@functools.cache
def _numba_threads() -> tuple[Callable[[], int], Callable[[int], None]]:
    """Numba's (get, set) of the calling thread's number of threads, after its pool is started:
    the two C functions behind ``numba.get_num_threads`` / ``numba.set_num_threads`` (a fraction
    of a microsecond a call, where the public ones check and relaunch, a microsecond or two),
    or the public ones where a Numba version lacks them."""
    numba.get_num_threads()  # starts the pool, once
    from numba.np.ufunc import parallel

    get = getattr(parallel, "_get_num_threads", None)
    set_ = getattr(parallel, "_set_num_threads", None)
    if callable(get) and callable(set_):
        return get, set_
    return numba.get_num_threads, numba.set_num_threads


def _on_kernel_threads(kernel: Callable[..., Any]) -> Callable[..., Any]:
    """``kernel`` run on ``fused.kernel_threads()`` of Numba's threads (at most the
    ``NUMBA_NUM_THREADS`` it has); the calling thread's own Numba setting is restored after."""

    @functools.wraps(kernel)
    def run(*args: Any, **kwargs: Any) -> Any:
        get, set_ = _numba_threads()
        want = min(kernel_threads(), numba.config.NUMBA_NUM_THREADS)
        before = get()
        if before == want:
            return kernel(*args, **kwargs)
        set_(want)
        try:
            return kernel(*args, **kwargs)
        finally:
            set_(before)

    return run


_KERNELS: dict[str, Callable[..., Any]] = {
    "gelu_forward": gelu_forward,
    "gelu_backward": gelu_backward,
    "bias_gelu_forward": bias_gelu_forward,
    "bias_gelu_inference": bias_gelu_inference,
    "layernorm_forward": layernorm_forward,
    "layernorm_backward": layernorm_backward,
    "softmax_forward": softmax_forward,
    "softmax_backward": softmax_backward,
    "masked_softmax_forward": masked_softmax_forward,
    "adam_update": adam_update,
    "adam_update_many": adam_update_many,
    **BIAS_RELU_KERNELS,
    **DROPOUT_KERNELS,
    **LOSS_KERNELS,
}
KERNELS: dict[str, Callable[..., Any]] = {op: _on_kernel_threads(k) for op, k in _KERNELS.items()}


# -- the same kernels for the CPU stand-in (nanotf.testing.strict) ----------------------------


def _unwrap(a: Any) -> Any:
    """The NumPy array inside a stand-in array; None and numbers pass; a NumPy array is refused,
    as the stand-in refuses host arrays mixed with device arrays."""
    if isinstance(a, StrictArray):
        return a._a
    if isinstance(a, list):  # adam_update_many's lists of arrays
        return [_unwrap(x) for x in a]
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
