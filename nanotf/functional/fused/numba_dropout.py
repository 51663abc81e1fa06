"""Numba kernels of inverted dropout (``nanotf.functional.dropout.dropout_forward``) on the CPU.

The reference draws ``u`` (the shape and dtype of x), then makes four passes over it: the mask
``u >= p``, the mask as floats, the floats times 1 / (1 - p), and ``x`` times those. The kernels
make one:

* ``dropout_forward(x, u, p)``: from the op's own draw ``u`` (or a given boolean mask),
  ``keep = (u >= p) · scale`` and ``out = x · keep``, element by element;
* ``dropout_forward_counter(x, gen, p)``: the same where ``gen`` is a
  :class:`~nanotf.counter_rng.CounterGenerator`, whose words are a hash of a counter: the loop
  hashes the counter itself, so no ``u`` is made at all, and the generator's counter is advanced
  after by ``x.size``, as ``gen.random(x.shape, dtype=x.dtype)`` advances it;
* ``dropout_forward_pcg64(x, gen, p)``: the same where ``gen`` is NumPy's own
  ``numpy.random.Generator`` over ``PCG64``: the loop reads the raw 64-bit words
  (``gen.bit_generator.random_raw``, about half the cost of ``gen.random``) and makes each ``u``
  from them as NumPy does, leaving ``gen`` (PCG64's state and its buffered 32-bit half) as
  ``gen.random(x.shape, dtype=x.dtype)`` leaves it.

All three give the reference's bits, by construction rather than within a tolerance:

* the kept value is the reference's own: a float array of ones scaled in place by
  ``0.0 if p == 1.0 else 1.0 / (1.0 - p)`` (the same expression, so the same precision and the
  same rounding to the dtype), and each element of ``out`` is ``x`` times it (or times 0) in the
  dtype, as NumPy multiplies;
* ``u >= p`` is replaced by ``u >= t``, with ``t`` the least number of ``u``'s dtype for which
  NumPy's own comparison with ``p`` says True (found among the dtype's three numbers next to
  ``p``), so the masks agree whether NumPy compares in the dtype (a Python float ``p``) or in
  float64 (a ``numpy.float64`` ``p``);
* the counter kernel's uniform is ``u = w·2⁻ᵇ`` (``w`` the top ``b`` bits of the word, b = 24
  for float32, 53 for float64, exact), so ``u >= t`` exactly when the integer ``w >= ⌈t·2ᵇ⌉``:
  the loop compares integers, with SplitMix64's arithmetic on ``uint64`` (wrapping modulo 2⁶⁴)
  as ``nanotf.counter_rng.splitmix64`` does it;
* NumPy's float32 ``u`` is ``(w >> 8)·2⁻²⁴`` with ``w`` its next 32-bit word: the half kept
  from an earlier draw where the state says ``has_uint32``, then the low and the high half of
  each 64-bit word; its float64 ``u`` is ``(w >> 11)·2⁻⁵³``, one 64-bit word each (the buffered
  half untouched). Both exact, so again ``u >= t`` exactly when ``w >> drop >= ⌈t·2ᵇ⌉``.

Every element is computed alone, so the result is the same whatever the number of threads.
``numba_kernels`` merges ``DROPOUT_KERNELS`` into its kernels (run on ``fused.kernel_threads()``
threads, and wrapped for the CPU stand-in there).
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Callable
from typing import Any

import numba
import numpy as np

from ...counter_rng import _GAMMA, _MASK64, _MIX1, _MIX2, CounterGenerator
from .numba_arrays import flat as _flat
from .numba_arrays import float_dtype
from .numba_math import _PARALLEL

__all__ = ["DROPOUT_KERNELS"]

_WHO = "fused Numba dropout"  # in its error messages
_U64 = np.uint64
_U32 = np.uint32
_TOP_BITS = {"float32": 24, "float64": 53}  # the bits of a word that CounterGenerator.random keeps


# -- the loops --------------------------------------------------------------------------------


@numba.njit(**_PARALLEL)
def _dropout_draw(x, u, out, keep, t, scale, zero):  # pragma: no cover - compiled
    # keep = scale where u >= t else 0, out = x · keep; x, u, out, keep: (n,)
    for i in numba.prange(x.size):
        k = scale if u[i] >= t else zero
        keep[i] = k
        out[i] = x[i] * k


@numba.njit(**_PARALLEL)
def _dropout_mask(x, mask, out, keep, scale, zero):  # pragma: no cover - compiled
    # keep = scale where mask else 0, out = x · keep; x, mask (bool), out, keep: (n,)
    for i in numba.prange(x.size):
        k = scale if mask[i] else zero
        keep[i] = k
        out[i] = x[i] * k


@numba.njit(**_PARALLEL)
def _dropout_counter(x, out, keep, base, gamma, mix1, mix2, s30, s27, s31, drop, w_min, scale,
                     zero):  # pragma: no cover - compiled
    # word i of the stream: z = base + i·γ, mixed as in counter_rng.splitmix64 (uint64, modulo
    # 2**64); w = z >> drop (the top bits that make u); keep = scale where w >= w_min else 0,
    # out = x · keep; x, out, keep: (n,)
    for i in numba.prange(x.size):
        z = numba.uint64(i) * gamma + base
        z = (z ^ (z >> s30)) * mix1
        z = (z ^ (z >> s27)) * mix2
        z = z ^ (z >> s31)
        k = scale if (z >> drop) >= w_min else zero
        keep[i] = k
        out[i] = x[i] * k


@numba.njit(**_PARALLEL)
def _dropout_words(x, w, out, keep, drop, w_min, scale, zero):  # pragma: no cover - compiled
    # keep = scale where w >> drop >= w_min else 0, out = x · keep; x, w (uint32 or uint64, one
    # word per element), out, keep: (n,); drop and w_min of w's dtype
    for i in numba.prange(x.size):
        k = scale if (w[i] >> drop) >= w_min else zero
        keep[i] = k
        out[i] = x[i] * k


# -- the kernels, as the op calls them (see nanotf.functional.fused.OPS) ----------------------


@functools.lru_cache(maxsize=64, typed=True)  # a model's few (p, dtype) pairs, p's type kept
def _kept_value(p: float, dt: np.dtype) -> Any:
    """What a kept element of the reference's ``keep`` holds: ones of ``dt`` times its scale."""
    scale = 0.0 if p == 1.0 else 1.0 / (1.0 - p)  # as dropout_forward computes it
    keep = np.ones(1, dt)
    keep *= scale  # as dropout_forward scales its mask
    return keep[0]


@functools.lru_cache(maxsize=64, typed=True)  # a model's few (p, dtype) pairs, p's type kept
def _threshold(p: float, dt: np.dtype) -> Any:
    """The least ``t`` of dtype ``dt`` with ``t >= p`` as NumPy compares an array of ``dt`` with
    ``p``: for every ``u`` of ``dt``, ``u >= p`` exactly when ``u >= t``."""
    c = np.asarray(p).astype(dt)[()]  # p rounded to dt: t is c or a neighbour of it
    candidates = np.array([np.nextafter(c, -np.inf), c, np.nextafter(c, np.inf)], dt)
    at_least = candidates >= p  # NumPy's comparison, as the reference's u >= p
    if not at_least.any():
        raise ValueError(f"fused Numba dropout: no {dt} number compares >= p = {p!r}")
    return candidates[int(np.argmax(at_least))]


@functools.lru_cache(maxsize=64, typed=True)  # a model's few (p, dtype) pairs, p's type kept
def _word_threshold(p: float, dt: np.dtype) -> tuple[int, int]:
    """``(bits, w_min)``: a draw of dtype ``dt`` is ``u = w · 2^-bits`` for a word ``w`` of its
    top ``bits`` bits, and ``u >= p`` (as NumPy compares) exactly when ``w >= w_min``."""
    bits = _TOP_BITS[dt.name]
    return bits, math.ceil(float(_threshold(p, dt)) * 2.0**bits)


def _outputs(x: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``x`` flat, and ``out`` and ``keep`` to fill, (n,) of x's dtype."""
    xf = _flat(x)  # (n,)
    return xf, np.empty_like(xf), np.empty_like(xf)


def dropout_forward(x: Any, u: Any, p: float) -> tuple[Any, Any]:
    """``(out, keep)`` of inverted dropout from the draw ``u`` (the shape of x, float32 or
    float64, as ``gen.random`` made it) or from the kept mask (bool, the shape of x):
    ``keep = (u >= p) · scale``, ``out = x · keep``, both the shape and dtype of x."""
    dt = float_dtype(_WHO, "input", x)
    shape = np.shape(x)
    if np.shape(u) != shape:
        raise ValueError(
            f"fused Numba dropout needs a draw (or mask) of the input's shape {shape}, got "
            f"{np.shape(u)}"
        )
    xf, out, keep = _outputs(x)
    scale, zero = _kept_value(p, dt), dt.type(0.0)
    if u.dtype == np.bool_:
        _dropout_mask(xf, _flat(u), out, keep, scale, zero)
    else:
        _dropout_draw(xf, _flat(u), out, keep, _threshold(p, float_dtype(_WHO, "draw", u)), scale,
                      zero)
    return out.reshape(shape), keep.reshape(shape)


def dropout_forward_counter(x: Any, gen: CounterGenerator, p: float) -> tuple[Any, Any]:
    """``(out, keep)`` as ``dropout_forward(x, gen.random(x.shape, dtype=x.dtype), p)`` with the
    words of the counter generator ``gen`` hashed in the loop; ``gen``'s counter is advanced by
    ``x.size``, as that draw advances it."""
    if not isinstance(gen, CounterGenerator):
        raise TypeError(
            "fused Numba dropout_forward_counter needs a nanotf.counter_rng.CounterGenerator, "
            f"got {type(gen).__name__}"
        )
    dt = float_dtype(_WHO, "input", x)
    xf, out, keep = _outputs(x)
    n = xf.size
    state = gen.state
    seed, counter = state["seed"], state["counter"]
    base = (seed + (counter + 1) * _GAMMA) & _MASK64  # as counter_rng.splitmix64
    bits, w_min = _word_threshold(p, dt)
    _dropout_counter(xf, out, keep, _U64(base), _U64(_GAMMA), _U64(_MIX1), _U64(_MIX2),
                     _U64(30), _U64(27), _U64(31), _U64(64 - bits), _U64(w_min),
                     _kept_value(p, dt), dt.type(0.0))
    gen.state = {**state, "counter": (counter + n) & _MASK64}  # as gen.random advances it
    shape = np.shape(x)
    return out.reshape(shape), keep.reshape(shape)


def _halves(words: np.ndarray, little: bool = sys.byteorder == "little") -> np.ndarray:
    """The 32-bit words NumPy's PCG64 hands out from the 64-bit ``words``: the low half of each,
    then its high half, (2k,) uint32 (a view on a little-endian machine)."""
    if little:
        return words.view(np.uint32)
    halves = np.empty((words.size, 2), np.uint32)
    halves[:, 0] = words & _U64(0xFFFFFFFF)
    halves[:, 1] = words >> _U64(32)
    return halves.reshape(-1)


def dropout_forward_pcg64(x: Any, gen: np.random.Generator, p: float) -> tuple[Any, Any]:
    """``(out, keep)`` as ``dropout_forward(x, gen.random(x.shape, dtype=x.dtype), p)`` from the
    raw words of ``gen``'s PCG64 (``bit_generator.random_raw``), made into ``u`` in the loop;
    ``gen`` is left as that draw leaves it (PCG64's state, ``has_uint32`` and ``uinteger``)."""
    bitgen = getattr(gen, "bit_generator", None)
    if type(gen) is not np.random.Generator or type(bitgen) is not np.random.PCG64:
        raise TypeError(
            "fused Numba dropout_forward_pcg64 needs a numpy.random.Generator over PCG64, got "
            f"{type(gen).__name__}" + ("" if bitgen is None else f" over {type(bitgen).__name__}")
        )
    dt = float_dtype(_WHO, "input", x)
    xf, out, keep = _outputs(x)
    n = xf.size
    _, w_min = _word_threshold(p, dt)
    scale, zero = _kept_value(p, dt), dt.type(0.0)
    if dt == np.float64:  # one 64-bit word a value; the buffered half is not touched
        _dropout_words(xf, bitgen.random_raw(n), out, keep, _U64(11), _U64(w_min), scale, zero)
    elif n > 0:
        state = bitgen.state
        lead = 0
        if state["has_uint32"]:  # the high half kept from the last 32-bit draw comes first
            lead = 1
            bitgen.state = {**state, "has_uint32": 0}
            first = np.array([state["uinteger"]], np.uint32)
            _dropout_words(xf[:1], first, out[:1], keep[:1], _U32(8), _U32(w_min), scale, zero)
        rest = n - lead
        if rest > 0:
            words = bitgen.random_raw((rest + 1) // 2)  # (k,) uint64
            halves = _halves(words)  # (2k,)
            _dropout_words(xf[lead:], halves[:rest], out[lead:], keep[lead:], _U32(8),
                           _U32(w_min), scale, zero)
            # NumPy keeps each word's high half in uinteger until it is read: after the draw it
            # holds the last word's, still to be read (has_uint32) where rest is odd
            bitgen.state = {**bitgen.state, "has_uint32": rest % 2,
                            "uinteger": int(words[-1] >> _U64(32))}
    shape = np.shape(x)
    return out.reshape(shape), keep.reshape(shape)


DROPOUT_KERNELS: dict[str, Callable[..., Any]] = {
    "dropout_forward": dropout_forward,
    "dropout_forward_counter": dropout_forward_counter,
    "dropout_forward_pcg64": dropout_forward_pcg64,
}
