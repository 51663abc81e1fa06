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
"""

from __future__ import annotations

import types
from typing import Any

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

__all__ = ["StrictArray", "strict", "asarray"]

_HOST_ENTRY = {"asarray", "array", "asanyarray", "ascontiguousarray"}


class DeviceConversionError(TypeError):
    """Raised where CuPy would refuse an implicit host/device conversion."""


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
        return _wrap(func(*_unwrap(args), **_unwrap(kwargs)))

    # -- the array protocol ------------------------------------------------------------
    def get(self) -> np.ndarray:
        """Copy to the host, like ``cupy.ndarray.get``."""
        return self._a.copy()

    def __getitem__(self, key: Any) -> Any:
        return _wrap(self._a[_unwrap(key)])

    def __setitem__(self, key: Any, value: Any) -> None:
        self._a[_unwrap(key)] = _unwrap(value)

    def __len__(self) -> int:
        return len(self._a)

    def __iter__(self) -> Any:
        return (_wrap(row) for row in self._a)

    def __bool__(self) -> bool:
        return bool(self._a)

    def __float__(self) -> float:
        return float(self._a)

    def __int__(self) -> int:
        return int(self._a)

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


class _Generator:
    """``strict.random.default_rng(seed)``: NumPy's generator, returning device arrays."""

    def __init__(self, seed: Any = None) -> None:
        self._g = np.random.default_rng(seed)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._g, name)
        if callable(attr):
            return lambda *a, **k: _wrap(attr(*_unwrap(a), **_unwrap(k)))
        return attr


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
            return _wrap(obj(*_unwrap(args, allow_host), **_unwrap(kwargs, allow_host)))

        function.__name__ = name
        return function

    @staticmethod
    def scatter_add(target: StrictArray, indices: Any, values: Any) -> None:
        """``target[indices] += values`` with repeated indices adding up (``cupyx.scatter_add``)."""
        np.add.at(_unwrap(target), _unwrap(indices), _unwrap(values))


strict = _StrictNamespace("strict", np)


def asarray(a: Any, dtype: Any = None) -> StrictArray:
    """Move a NumPy array "to the device" of the stand-in."""
    return StrictArray(np.array(a, dtype=dtype, copy=True))
