"""A CPU stand-in for CuPy that, like CuPy, refuses silent conversion to NumPy.

Code that runs on CuPy must take its array module from its inputs (``get_array_module``) and
must never hand a device array to NumPy. On a machine without a GPU such mistakes go unnoticed,
because NumPy arrays work everywhere. ``StrictArray`` wraps a NumPy array and behaves like a
CuPy array in the ways that matter for that:

* ``numpy.asarray(a)`` (and anything that calls ``__array__``) raises ``TypeError``;
* mixing it with a NumPy array in arithmetic or in a function of the stand-in module raises;
* reductions return 0-d arrays, as CuPy does, and ``.get()`` copies to the host.

The module ``strict`` (``get_array_module`` returns it for ``StrictArray`` inputs) mirrors the
NumPy namespace, so ``xp.exp``, ``xp.zeros``, ``xp.random.default_rng`` all keep arrays "on the
device". Use it in tests with ``strict.asarray(numpy_array)``.

Where CuPy waits for the GPU, the stand-in keeps count:

* an *implicit host sync* is a conversion that CuPy performs silently but that stalls the GPU
  until the value is on the host: ``float(a)``, ``int(a)``, ``bool(a)``, ``complex(a)``,
  ``operator.index(a)`` (an array as an index or a ``range`` bound), ``a.item()``,
  ``a.tolist()``, ``format(a)`` of a 0-d array, and the operations whose output size depends on
  the data (a boolean-mask index ``a[mask]``, ``nonzero``, ``flatnonzero``, ``argwhere``,
  ``unique``, ``compress``, ``extract``, ``where`` with one argument), also when called as
  ``numpy.nonzero(a)`` & co. Each is counted; inside :func:`refuse_syncs` each
  raises :class:`DeviceConversionError` naming the call;
* an *explicit transfer* is ``a.get()`` (which ``nanotf.to_numpy`` calls): counted separately,
  always allowed.

:func:`count_syncs` yields a :class:`SyncCounter` of what happened inside the ``with`` block.

``strict.random.default_rng(seed)`` offers exactly the public methods of CuPy's
``cupy.random.Generator`` (CuPy 13/14: no ``normal``, ``permutation``, ``choice`` or
``shuffle``); another name raises ``AttributeError`` naming CuPy. ``strict.cupyx`` stands in
for the ``cupyx`` module (``cupyx.scatter_add``, ``cupyx.scipy.special.erf``), computing with
NumPy on the unwrapped data, so the CuPy-only branches of ``nanotf.backend`` run in CI.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

__all__ = [
    "CUPY_GENERATOR_METHODS",
    "DeviceConversionError",
    "StrictArray",
    "SyncCounter",
    "asarray",
    "count_syncs",
    "cupyx",
    "refuse_syncs",
    "strict",
]

_HOST_ENTRY = {"asarray", "array", "asanyarray", "ascontiguousarray"}


class DeviceConversionError(TypeError):
    """Raised where CuPy would refuse an implicit host/device conversion (and, inside
    :func:`refuse_syncs`, at an implicit host sync)."""


# -- counting host syncs ------------------------------------------------------------------------


@dataclass
class SyncCounter:
    """What a :func:`count_syncs` block did: ``implicit`` host syncs (``calls`` names each, in
    order, e.g. ``"float()"``, ``".tolist()"``, ``"boolean-mask index"``) and explicit
    ``transfers`` (``.get()``, ``nanotf.to_numpy``)."""

    implicit: int = 0
    transfers: int = 0
    calls: list[str] = field(default_factory=list)


_counters: list[SyncCounter] = []  # the open count_syncs() blocks, innermost last
_refusing = [0]  # depth of refuse_syncs() blocks
#: the numbers of implicit syncs and transfers since import (``calls`` stays empty)
TOTAL = SyncCounter()


@contextmanager
def count_syncs() -> Iterator[SyncCounter]:
    """Count the implicit host syncs and the explicit transfers of the ``with`` block.

    >>> with count_syncs() as c:
    ...     _ = float(asarray(np.ones(2)).sum())
    >>> (c.implicit, c.transfers, c.calls)
    (1, 0, ['float()'])
    """
    counter = SyncCounter()
    _counters.append(counter)
    try:
        yield counter
    finally:
        _counters.remove(counter)


@contextmanager
def refuse_syncs() -> Iterator[None]:
    """Inside the block an implicit host sync raises :class:`DeviceConversionError` naming the
    call; explicit transfers (``.get()``, ``nanotf.to_numpy``) stay allowed."""
    _refusing[0] += 1
    try:
        yield
    finally:
        _refusing[0] -= 1


def _implicit_sync(call: str, a: StrictArray) -> None:
    """Record (or, inside :func:`refuse_syncs`, refuse) the implicit host sync ``call``."""
    if _refusing[0]:
        raise DeviceConversionError(
            f"{call} of a device array of shape {a.shape} is an implicit host sync (CuPy "
            "waits for the GPU there); inside refuse_syncs() only explicit transfers are "
            "allowed: nanotf.to_numpy(x) or x.get()"
        )
    TOTAL.implicit += 1  # the session's total keeps no list of names
    for counter in _counters:
        counter.implicit += 1
        counter.calls.append(call)


def _transfer() -> None:
    for counter in (TOTAL, *_counters):
        counter.transfers += 1


def _is_mask(key: Any) -> bool:
    """A boolean device array as an index (or in an index tuple): CuPy needs the count of True
    entries, on the host, to size the result."""
    keys = key if isinstance(key, tuple) else (key,)
    return any(isinstance(k, StrictArray) and k.dtype == np.bool_ for k in keys)


# the functions whose output size depends on the data: CuPy syncs to size the result
_SIZE_FROM_DATA = {"nonzero", "flatnonzero", "argwhere", "unique", "compress", "extract"}


def _sizes_from_data(name: str, args: Any) -> bool:
    """Whether the function ``name`` called with ``args`` sizes its result from the data (also
    ``where(condition)`` with one argument, which is ``nonzero``)."""
    return name in _SIZE_FROM_DATA or (name == "where" and len(args) == 1)


def _unwrap(obj: Any, allow_host: bool = False) -> Any:
    if isinstance(obj, StrictArray):
        return obj._a
    if isinstance(obj, np.ndarray):
        if allow_host:
            return obj
        raise DeviceConversionError(
            "a NumPy array was mixed with device arrays (CuPy refuses this): "
            f"got numpy.ndarray of shape {obj.shape}; move it with nanotf.asarray first"
        )
    if isinstance(obj, (list, tuple)):
        return type(obj)(_unwrap(o, allow_host) for o in obj)
    if isinstance(obj, dict):
        return {k: _unwrap(v, allow_host) for k, v in obj.items()}
    return obj


def _wrap(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return StrictArray(obj)
    if isinstance(obj, np.generic) and not isinstance(obj, (np.str_, np.bytes_)):
        return StrictArray(np.asarray(obj))  # CuPy reductions return 0-d arrays
    if isinstance(obj, tuple):
        return tuple(_wrap(o) for o in obj)
    if isinstance(obj, list):
        return [_wrap(o) for o in obj]
    return obj


class StrictArray(NDArrayOperatorsMixin):
    """A NumPy array in disguise that behaves like a CuPy array towards NumPy."""

    __slots__ = ("_a",)
    __array_priority__ = 100

    def __init__(self, a: Any) -> None:
        self._a = a._a if isinstance(a, StrictArray) else np.asarray(a)

    @classmethod
    def __array_namespace_nanotf__(cls) -> Any:
        return strict

    # -- the refusals ---------------------------------------------------------------------
    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise DeviceConversionError(
            "implicit conversion of a device array to a NumPy array is not allowed "
            "(CuPy refuses it too); use nanotf.to_numpy(x) or x.get()"
        )

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        out = kwargs.pop("out", None)
        kwargs = _unwrap(kwargs)
        if out is not None:
            kwargs["out"] = tuple(_unwrap(o) for o in out)
        result = getattr(ufunc, method)(*_unwrap(inputs), **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _wrap(result)

    def __array_function__(self, func: Any, types_: Any, args: Any, kwargs: Any) -> Any:
        if _sizes_from_data(func.__name__, args):
            _implicit_sync(f"{func.__name__}()", self)
        return _wrap(func(*_unwrap(args), **_unwrap(kwargs)))

    # -- the array protocol ------------------------------------------------------------
    def get(self) -> np.ndarray:
        """Copy to the host, like ``cupy.ndarray.get`` (an explicit transfer: counted, allowed)."""
        _transfer()
        return self._a.copy()

    def __getitem__(self, key: Any) -> Any:
        if _is_mask(key):
            _implicit_sync("boolean-mask index", self)
        return _wrap(self._a[_unwrap(key)])

    def __setitem__(self, key: Any, value: Any) -> None:
        self._a[_unwrap(key)] = _unwrap(value)

    def __len__(self) -> int:
        return len(self._a)

    def __iter__(self) -> Any:
        return (_wrap(row) for row in self._a)

    # -- the implicit host syncs: allowed by CuPy, counted here (refused in refuse_syncs) --
    def __bool__(self) -> bool:
        _implicit_sync("bool()", self)
        return bool(self._a)

    def __float__(self) -> float:
        _implicit_sync("float()", self)
        return float(self._a)

    def __int__(self) -> int:
        _implicit_sync("int()", self)
        return int(self._a)

    def __complex__(self) -> complex:
        _implicit_sync("complex()", self)
        return complex(self._a)

    def __index__(self) -> int:
        _implicit_sync("index", self)
        return self._a.__index__()

    def __format__(self, spec: str) -> str:
        if self._a.ndim == 0:
            _implicit_sync("format()", self)
            return format(self._a.item(), spec)
        return format(repr(self), spec)

    def item(self, *args: Any) -> Any:
        _implicit_sync(".item()", self)
        return self._a.item(*_unwrap(args))

    def tolist(self) -> Any:
        _implicit_sync(".tolist()", self)
        return self._a.tolist()

    def nonzero(self) -> Any:
        _implicit_sync(".nonzero()", self)
        return _wrap(self._a.nonzero())

    def __repr__(self) -> str:
        return "strict." + repr(self._a)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # no __array_interface__ & co: NumPy must not see the data
            raise AttributeError(name)
        attr = getattr(self._a, name)
        if callable(attr):
            def method(*args: Any, **kwargs: Any) -> Any:
                return _wrap(attr(*_unwrap(args), **_unwrap(kwargs)))

            return method
        return _wrap(attr)

    @property
    def T(self) -> StrictArray:  # noqa: N802 - NumPy's name
        return StrictArray(self._a.T)

    @property
    def shape(self) -> tuple[int, ...]:
        return self._a.shape

    @property
    def dtype(self) -> np.dtype:
        return self._a.dtype

    @property
    def ndim(self) -> int:
        return self._a.ndim

    @property
    def size(self) -> int:
        return self._a.size


#: The public methods of ``cupy.random.Generator`` (CuPy 13 and 14, ``_generator_api.pyx``).
CUPY_GENERATOR_METHODS = frozenset(
    {
        "beta", "binomial", "chisquare", "dirichlet", "exponential", "f", "gamma", "geometric",
        "hypergeometric", "integers", "logseries", "poisson", "power", "random",
        "standard_exponential", "standard_gamma", "standard_normal", "uniform",
    }
)


class _BitGenerator:
    """``cupy.random.Generator.bit_generator``: CuPy's bit generators keep their state on the
    device (``state()`` returns a device pointer), so there is no ``state`` to read or set."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError(
            f"cupy.random.BitGenerator has no attribute {name!r} that nanotf can use: CuPy keeps "
            "the generator's state on the device and offers no get/set of it"
        )


class _Generator:
    """``strict.random.default_rng(seed)``: NumPy's generator behind exactly the methods of
    ``cupy.random.Generator``, returning device arrays (0-d ones where ``size`` is None, as
    CuPy does), and a ``bit_generator`` without a readable ``state``. Any other name
    (``normal``, ``permutation``, ``choice``, ``shuffle``, ...) raises ``AttributeError``."""

    def __init__(self, seed: Any = None) -> None:
        self._g = np.random.default_rng(seed)

    @property
    def bit_generator(self) -> _BitGenerator:
        """CuPy's generator has one (XORWOW by default), but no NumPy-style ``state``."""
        return _BitGenerator()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "_g":
            raise AttributeError(name)
        if name not in CUPY_GENERATOR_METHODS:
            hint = " (use standard_normal() * scale + loc)" if name == "normal" else ""
            raise AttributeError(
                f"cupy.random.Generator has no attribute {name!r}{hint}: CuPy's generator "
                f"offers only {', '.join(sorted(CUPY_GENERATOR_METHODS))}"
            )
        method = getattr(self._g, name)

        def draw(*args: Any, **kwargs: Any) -> Any:
            dtype = kwargs.pop("dtype", None) if name == "uniform" else None  # CuPy's only
            out = method(*_unwrap(args), **_unwrap(kwargs))
            out = np.asarray(out) if dtype is None else np.asarray(out).astype(dtype)
            return StrictArray(out)

        draw.__name__ = name
        return draw


class _Ufunc:
    """A NumPy ufunc that, like CuPy's, accepts device arrays and scalars but no host arrays."""

    def __init__(self, ufunc: np.ufunc) -> None:
        self._u = ufunc

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._method("__call__", args, kwargs)

    def __getattr__(self, name: str) -> Any:
        if name in ("at", "reduce", "accumulate", "outer", "reduceat"):
            return lambda *args, **kwargs: self._method(name, args, kwargs)
        return getattr(self._u, name)

    def _method(self, name: str, args: Any, kwargs: Any) -> Any:
        out = kwargs.pop("out", None)
        kwargs = _unwrap(kwargs)
        if out is not None:
            out = out if isinstance(out, tuple) else (out,)
            kwargs["out"] = tuple(_unwrap(o) for o in out)
        result = getattr(self._u, name)(*_unwrap(args), **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _wrap(result)


class _StrictNamespace(types.ModuleType):
    """Mirrors ``numpy`` but keeps every array a ``StrictArray``."""

    ndarray = StrictArray

    def __init__(self, name: str, base: types.ModuleType) -> None:
        super().__init__(name)
        self._base = base

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        obj = getattr(self._base, name)
        if isinstance(obj, types.ModuleType):
            return _StrictNamespace(f"{self.__name__}.{name}", obj)
        if name == "default_rng":
            return _Generator
        if isinstance(obj, np.ufunc):
            return _Ufunc(obj)
        if isinstance(obj, (type, np.dtype)) or not callable(obj):
            return obj
        allow_host = name in _HOST_ENTRY

        def function(*args: Any, **kwargs: Any) -> Any:
            if _sizes_from_data(name, args):
                first = next((a for a in args if isinstance(a, StrictArray)), None)
                if first is not None:
                    _implicit_sync(f"{name}()", first)
            return _wrap(obj(*_unwrap(args, allow_host), **_unwrap(kwargs, allow_host)))

        function.__name__ = name
        return function

    @staticmethod
    def scatter_add(target: StrictArray, indices: Any, values: Any) -> None:
        """``target[indices] += values`` with repeated indices adding up (``cupyx.scatter_add``)."""
        np.add.at(_unwrap(target), _unwrap(indices), _unwrap(values))

    @property
    def cupyx(self) -> types.SimpleNamespace:
        """The stand-in for the ``cupyx`` module that goes with this array module."""
        return cupyx


def _cupyx_erf(x: Any) -> Any:
    """``cupyx.scipy.special.erf``: nanotf's NumPy erf on the unwrapped data, as a device array."""
    from ..special import erf  # the same layer; imported late, as special needs no stand-in

    return _wrap(np.asarray(erf(_unwrap(x))))


def _cupyx_scatter_add(target: Any, indices: Any, values: Any) -> None:
    """``cupyx.scatter_add(target, indices, values)``: ``target[indices] += values`` with
    repeated indices adding up (``numpy.add.at`` on the unwrapped data)."""
    if not isinstance(target, StrictArray):
        raise DeviceConversionError(
            f"cupyx.scatter_add needs a device array as its target, got {type(target).__name__}"
        )
    np.add.at(target._a, _unwrap(indices), _unwrap(values))


#: ``cupyx`` as far as nanotf uses it, for StrictArray (``nanotf.backend`` picks it by array)
cupyx = types.SimpleNamespace(
    __name__="nanotf.testing.strict.cupyx",
    scatter_add=_cupyx_scatter_add,
    scipy=types.SimpleNamespace(special=types.SimpleNamespace(erf=_cupyx_erf)),
)

strict = _StrictNamespace("strict", np)


def asarray(a: Any, dtype: Any = None) -> StrictArray:
    """Move a NumPy array "to the device" of the stand-in."""
    return StrictArray(np.array(a, dtype=dtype, copy=True))
