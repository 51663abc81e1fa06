"""What an array is and which array module it lives in: the bottom of the house.

Nothing here imports anything from nanotf, so every layer above (the special functions, the
backend, the input checks, the ops) can use it:

* ``get_array_module(*arrays)``: ``numpy``, ``cupy`` or the CPU stand-in for CuPy, taken from
  the arrays themselves (the CuPy idiom), so an op runs wherever its inputs live;
* ``is_array(value)``: a NumPy, CuPy or stand-in array (not a list, a number or a torch tensor);
* ``is_array_or_scalar(value)``: the same, or a NumPy scalar (what a 0-d NumPy result decays to);
* ``is_torch_tensor(value)``: told apart by its module's name (nanotf never imports torch).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["get_array_module", "is_array", "is_array_or_scalar", "is_torch_tensor"]


def get_array_module(*arrays: Any) -> Any:
    """The array module the given arrays live in: ``cupy`` if any is a CuPy array, else ``numpy``.

    Arrays may also bring their own module through ``__array_namespace_nanotf__`` (the CPU
    stand-in for CuPy in ``nanotf.testing.strict`` does), so ops never name NumPy directly.
    """
    for a in arrays:
        if type(a) is np.ndarray:  # the common case, answered without a lookup
            continue
        ns = getattr(type(a), "__array_namespace_nanotf__", None)
        if ns is not None:
            return ns()
        mod = type(a).__module__
        if mod.startswith("cupy"):
            import cupy  # type: ignore[import-not-found]

            return cupy
    return np


def is_torch_tensor(value: Any) -> bool:
    """True for a ``torch.Tensor`` (checked by its module's name: nanotf never imports torch)."""
    return type(value).__module__.split(".")[0] == "torch"


def is_array(value: Any) -> bool:
    """A NumPy array, a CuPy array or the CPU stand-in for CuPy (not a torch tensor, not a list,
    not a Python number, not a NumPy scalar)."""
    if isinstance(value, np.ndarray):
        return True
    if isinstance(value, np.generic):
        return False
    xp = get_array_module(value)
    return xp is not np and isinstance(value, xp.ndarray)


def is_array_or_scalar(value: Any) -> bool:
    """``is_array``, or a NumPy scalar, which 0-d NumPy results decay to (``x.sum()``)."""
    return isinstance(value, np.generic) or is_array(value)
