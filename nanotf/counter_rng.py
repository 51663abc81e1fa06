"""A counter-based random generator whose whole state is two integers, and whose draws are bit for
bit the same on NumPy, CuPy and the CPU stand-in.

CuPy's own generator cannot save or restore its state, so a run resumed on the GPU would draw
other dropout masks than the run it continues. :class:`CounterGenerator` is the SplitMix64
sequence of Steele, Lea & Flood (the generator behind Java's ``SplittableRandom``; Vigna's
``splitmix64.c``), written as a hash of a counter. Number ``c`` (0, 1, 2, ...) of the stream with
seed ``s`` is::

    z = s + (c + 1)·γ                       (mod 2⁶⁴; γ = 0x9E3779B97F4A7C15, 2⁶⁴ / golden ratio)
    z = (z ^ (z >> 30))·0xBF58476D1CE4E5B9  (mod 2⁶⁴)
    z = (z ^ (z >> 27))·0x94D049BB133111EB  (mod 2⁶⁴)
    out = z ^ (z >> 31)

which is the ``c``-th output of ``splitmix64.c`` seeded with ``s``. Any counter can be reached at
once, so a draw of ``n`` numbers is one vectorised hash of ``c, c + 1, ..., c + n - 1``, and the
state to save is ``{"kind": "splitmix64", "seed": s, "counter": c}`` (JSON-able: what a
checkpoint stores). Only unsigned 64-bit integer operations that NumPy and CuPy define the same
way are used (multiplication and addition modulo 2⁶⁴, xor, shifts), on ``uint64`` arrays
throughout, so no scalar overflow warning is raised and every bit agrees.

From the 64-bit words:

* ``random(size, dtype)``: float64 ``(out >> 11)·2⁻⁵³``, float32 ``(out >> 40)·2⁻²⁴``, both in
  [0, 1), exact (no rounding);
* ``standard_normal(size, dtype)``: Box–Muller, ``√(-2 ln u₁)·cos(2π u₂)`` with u₁ in (0, 1] from
  the first ``n`` words and u₂ in [0, 1) from the next ``n``. The logarithm and the cosine are
  written here with +, -, ×, ÷ and bit operations (series on a reduced range, accurate to a few
  1e-16), because NumPy's and CuPy's own ``log`` and ``cos`` may differ in the last bit; ``sqrt``,
  like the four operations, is correctly rounded on both. float32 normals are float64 ones
  rounded;
* ``integers(low, high, size, dtype)``: ``low + out mod (high - low)`` (the bias, at most
  (high - low) / 2⁶⁴, is below 1e-9 for any range under 2³⁴).

Every method takes ``size`` as NumPy does (None, an int or a tuple) and advances the counter by
the number of 64-bit words it used. Nothing here imports the rest of nanotf.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from fractions import Fraction
from types import ModuleType
from typing import Any

import numpy as np

__all__ = ["KIND", "CounterGenerator", "splitmix64"]

KIND = "splitmix64"  # the "kind" of a CounterGenerator's state
_MASK64 = (1 << 64) - 1
_GAMMA = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB
_U64 = np.uint64


def splitmix64(seed: int, counter: int, n: int, xp: ModuleType = np) -> Any:
    """Words ``counter, ..., counter + n - 1`` of the SplitMix64 stream seeded with ``seed``, as a
    ``(n,)`` uint64 array of ``xp`` (see the module docstring for the formula)."""
    base = (seed + (counter + 1) * _GAMMA) & _MASK64  # Python ints: exact, then one uint64
    z = xp.arange(n, dtype=_U64)  # (n,) 0, 1, ..., n - 1
    z *= _U64(_GAMMA)  # wraps modulo 2**64, as every uint64 array operation below
    z += _U64(base)
    z ^= z >> _U64(30)
    z *= _U64(_MIX1)
    z ^= z >> _U64(27)
    z *= _U64(_MIX2)
    z ^= z >> _U64(31)
    return z


# -- ln and cos from the four operations (NumPy's and CuPy's own may differ in the last bit) ----

_LN2 = math.log(2.0)
_SQRT2 = math.sqrt(2.0)
# ln m = 2·atanh(s), s = (m - 1) / (m + 1): 2s·Σ s^(2k) / (2k + 1); |s| <= 0.172 for m in
# [√½, √2], so 12 terms leave less than 1e-19
_ATANH = [float(Fraction(1, 2 * k + 1)) for k in range(12)]
# Taylor series on [0, π/4]: the first left-out term is below 1e-19
_COS = [float(Fraction((-1) ** k, math.factorial(2 * k))) for k in range(10)]
_SIN = [float(Fraction((-1) ** k, math.factorial(2 * k + 1))) for k in range(10)]
_HALF_PI = math.pi / 2


def _horner(coefficients: list[float], x2: Any) -> Any:
    """Σ_k coefficients[k]·x2^k, by Horner's rule (the highest power first)."""
    acc = coefficients[-1] + 0.0 * x2
    for c in reversed(coefficients[:-1]):
        acc = acc * x2 + c
    return acc


def _log_unit(u: Any, xp: ModuleType) -> Any:
    """ln u for float64 ``u`` in [2⁻⁵³, 1]: u = m·2^e with m in [√½, √2), then the atanh
    series of m. Accurate to a few 1e-16, relative."""
    bits = u.view(_U64)
    e = (bits >> _U64(52)).astype(np.int64) - 1023  # (n,) the exponent (u is normal)
    m = ((bits & _U64((1 << 52) - 1)) | _U64(1023 << 52)).view(np.float64)  # [1, 2)
    big = m > _SQRT2
    m = xp.where(big, m * 0.5, m)  # [√½, √2), exact
    e = e + big.astype(np.int64)
    s = (m - 1.0) / (m + 1.0)  # m - 1 is exact (Sterbenz)
    return e.astype(np.float64) * _LN2 + 2.0 * s * _horner(_ATANH, s * s)


def _cos_two_pi(u: Any, xp: ModuleType) -> Any:
    """cos(2π u) for float64 ``u`` in [0, 1): the quadrant from 4u, then the sine or cosine
    series on [0, π/4]. Accurate to about 2e-16, absolute."""
    t = 4.0 * u  # exact
    q = xp.floor(t)
    f = t - q  # [0, 1), exact: the angle within the quadrant is f·π/2
    flip = f > 0.5
    x = xp.where(flip, 1.0 - f, f) * _HALF_PI  # [0, π/4]; cos(π/2 - x) = sin x
    x2 = x * x
    c, s = _horner(_COS, x2), x * _horner(_SIN, x2)
    cos_f, sin_f = xp.where(flip, s, c), xp.where(flip, c, s)  # cos and sin of f·π/2
    # cos(qπ/2 + φ) = cos φ, -sin φ, -cos φ, sin φ for q = 0, 1, 2, 3
    return xp.where(q == 0.0, cos_f, xp.where(q == 1.0, -sin_f, xp.where(q == 2.0, -cos_f, sin_f)))


def _count(size: Any) -> tuple[tuple[int, ...] | None, int]:
    """(shape or None, number of values) of a NumPy-style ``size``."""
    if size is None:
        return None, 1
    shape = (size,) if isinstance(size, (int, np.integer)) else size

    def is_int(d: Any) -> bool:
        return isinstance(d, (int, np.integer)) and not isinstance(d, bool)

    if not isinstance(shape, (tuple, list)) or not all(is_int(d) for d in shape):
        raise TypeError(f"size must be None, an int or a tuple of ints, got {size!r}")
    if any(d < 0 for d in shape):
        raise ValueError(f"size must not be negative, got {size!r}")
    shape = tuple(int(d) for d in shape)
    return shape, math.prod(shape)


class CounterGenerator:
    """SplitMix64 as a counter-based generator on the array module ``xp`` (numpy, cupy or the
    CPU stand-in): the same seed gives the same bits on each.

    ``CounterGenerator(seed, xp)`` starts at counter 0. ``state`` is ``{"kind": "splitmix64",
    "seed": seed, "counter": c}`` and can be set back to any earlier value to repeat the draws
    that followed it. The methods are a subset of ``numpy.random.Generator``'s and
    ``cupy.random.Generator``'s, with their signatures: ``random``, ``standard_normal``,
    ``integers``. With ``size=None`` a 0-d array is returned (as CuPy does).
    """

    def __init__(self, seed: int = 0, xp: ModuleType = np) -> None:
        self.xp = xp
        self._seed = self._check_int("seed", seed)
        self._counter = 0

    @staticmethod
    def _check_int(what: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"CounterGenerator {what} must be an integer, got {value!r}")
        if not 0 <= value < 1 << 64:
            raise ValueError(f"CounterGenerator {what} must lie in [0, 2**64), got {value}")
        return int(value)

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def counter(self) -> int:
        """How many 64-bit words have been drawn since the seed (modulo 2⁶⁴)."""
        return self._counter

    @property
    def state(self) -> dict[str, Any]:
        """``{"kind": "splitmix64", "seed": s, "counter": c}``: all there is to the generator."""
        return {"kind": KIND, "seed": self._seed, "counter": self._counter}

    @state.setter
    def state(self, state: Mapping[str, Any]) -> None:
        if not isinstance(state, Mapping) or state.get("kind") != KIND:
            raise ValueError(
                f"a CounterGenerator state is a dict with kind {KIND!r}, seed and counter; "
                f"got {state!r}"
            )
        missing = {"seed", "counter"} - set(state)
        if missing:
            raise ValueError(
                f"CounterGenerator state lacks {', '.join(sorted(missing))}: got {state!r}"
            )
        seed = self._check_int("seed", state["seed"])
        counter = self._check_int("counter", state["counter"])
        self._seed, self._counter = seed, counter

    def __repr__(self) -> str:
        name = getattr(self.xp, "__name__", "?")
        return f"CounterGenerator(seed={self._seed}, counter={self._counter}, xp={name})"

    def _words(self, n: int) -> Any:
        """The next ``n`` 64-bit words, (n,) uint64; advances the counter by n."""
        words = splitmix64(self._seed, self._counter, n, self.xp)
        self._counter = (self._counter + n) & _MASK64
        return words

    @staticmethod
    def _float_dtype(dtype: Any, method: str) -> np.dtype:
        dt = np.dtype(dtype)
        if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise TypeError(f"CounterGenerator.{method} dtype must be float32 or float64, got {dt}")
        return dt

    def _shaped(self, flat: Any, shape: tuple[int, ...] | None) -> Any:
        return flat.reshape(()) if shape is None else flat.reshape(shape)

    def random(self, size: Any = None, dtype: Any = np.float64) -> Any:
        """Uniform floats in [0, 1): the top 53 (float64) or 24 (float32) bits of each word."""
        dt = self._float_dtype(dtype, "random")
        shape, n = _count(size)
        words = self._words(n)
        if dt == np.float64:
            u = (words >> _U64(11)).astype(np.float64) * (2.0**-53)
        else:
            u = (words >> _U64(40)).astype(np.float32) * np.float32(2.0**-24)
        return self._shaped(u, shape)

    def standard_normal(self, size: Any = None, dtype: Any = np.float64) -> Any:
        """Standard normal floats by Box–Muller (2 words per value, computed in float64)."""
        dt = self._float_dtype(dtype, "standard_normal")
        shape, n = _count(size)
        words = self._words(2 * n)  # (2n,)
        u1 = ((words[:n] >> _U64(11)) + _U64(1)).astype(np.float64) * (2.0**-53)  # (0, 1]
        u2 = (words[n:] >> _U64(11)).astype(np.float64) * (2.0**-53)  # [0, 1)
        z = self.xp.sqrt(-2.0 * _log_unit(u1, self.xp)) * _cos_two_pi(u2, self.xp)
        return self._shaped(z.astype(dt, copy=False), shape)

    def integers(
        self,
        low: int,
        high: int | None = None,
        size: Any = None,
        dtype: Any = np.int64,
        endpoint: bool = False,
    ) -> Any:
        """Integers in [low, high) ([low, high] with ``endpoint``; [0, low) without ``high``)."""
        if high is None:
            low, high = 0, low
        for what, v in (("low", low), ("high", high)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise TypeError(f"CounterGenerator.integers {what} must be an integer, got {v!r}")
        low, high = int(low), int(high) + (1 if endpoint else 0)
        dt = np.dtype(dtype)
        if dt.kind not in "iu":
            raise TypeError(f"CounterGenerator.integers dtype must be an integer type, got {dt}")
        info = np.iinfo(dt)
        if high <= low or low < info.min or high - 1 > info.max or high - low > 1 << 63:
            raise ValueError(
                f"CounterGenerator.integers needs low < high within {dt} (a range of at most "
                f"2**63), got low={low}, high={high}{' (endpoint)' if endpoint else ''}"
            )
        shape, n = _count(size)
        r = self._words(n) % _U64(high - low)  # (n,) in [0, high - low)
        if low >= 0:
            out = (r + _U64(low)).astype(dt)  # below 2**64: no wrap
        else:
            out = (r.astype(np.int64) + np.int64(low)).astype(dt)  # |low| <= 2**63
        return self._shaped(out, shape)
