"""Input checks for modules and state dicts: every error names the module (or key), says what was
expected and what was given.

The ops in ``nanotf.functional`` check their own inputs; these checks run one level up, where the
module knows its sizes (``Linear(4 -> 3)`` expects a last dimension of 4) and can say so in its
own words, and where things that are not arrays at all (Python lists, torch tensors, numbers)
must be refused before any array code touches them. What an array is (``is_array``) and how a
given value is described (``describe``) are shared with the ops, in :mod:`nanotf.arrays` and
:mod:`nanotf.checks`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..arrays import get_array_module, is_array, is_torch_tensor
from ..checks import (
    FLOAT_CHARS,
    describe,
    device_ids_trusted,
    id_range,
    number_problem,
    type_name,
)

__all__ = [
    "check_array",
    "check_float_input",
    "check_ids",
    "check_mask",
    "check_positive_int",
    "check_probability",
    "describe",
    "is_array",
    "is_torch_tensor",
]


def check_array(who: str, name: str, value: Any, like: Any = None) -> None:
    """``value`` must be an array; with ``like`` (a parameter's array), of the same array module
    (NumPy with NumPy, CuPy with CuPy: no silent copies between host and device)."""
    if not is_array(value):
        raise TypeError(f"{who}: {name} must be an array, got {describe(value)}")
    if like is not None and get_array_module(value) is not get_array_module(like):
        want, got = type_name(like), type_name(value)
        raise TypeError(
            f"{who}: {name} must be a {want} like the parameters, got a {got}; move it with "
            "nanotf.asarray (to the device) or nanotf.to_numpy (to the host) first"
        )


def check_float_input(
    who: str,
    name: str,
    x: Any,
    *,
    like: Any = None,
    ndim: int | None = None,
    min_ndim: int = 0,
    last_dim: int | None = None,
    layout: str = "",
) -> None:
    """``x`` must be a floating-point array (of ``like``'s module and dtype), with ``ndim``
    dimensions (or at least ``min_ndim``) and a last dimension of ``last_dim``.

    ``layout`` describes the expected shape for the message, e.g. ``"(batch, length, 8)"``.
    """
    check_array(who, name, x, like)
    if x.dtype.char not in FLOAT_CHARS:
        raise TypeError(
            f"{who}: {name} must be a floating-point array (float32 or float64), got {describe(x)}"
        )
    if like is not None and x.dtype != like.dtype:
        raise TypeError(
            f"{who}: {name} must have the parameters' dtype {like.dtype}, got {describe(x)} "
            f"(cast it with .astype('{like.dtype}'))"
        )
    want = f" {layout}" if layout else ""
    if (ndim is not None and x.ndim != ndim) or x.ndim < min_ndim:
        n = ndim if ndim is not None else min_ndim
        dims = f"{'' if ndim is not None else 'at least '}{n} dimension{'' if n == 1 else 's'}"
        raise ValueError(f"{who}: {name} must have {dims}{want}, got shape {tuple(x.shape)}")
    if last_dim is not None and (x.ndim == 0 or x.shape[-1] != last_dim):
        raise ValueError(
            f"{who}: {name} must have last dimension {last_dim}{want}, got shape {tuple(x.shape)}"
        )


def check_ids(who: str, name: str, ids: Any, high: int, like: Any = None) -> None:
    """``ids`` must be an integer array (of ``like``'s array module) with values in
    ``[0, high)``. Device ids cost one transfer (``nanotf.checks.id_range``), none inside
    ``nanotf.checks.ids_checked_on_host`` (checked on the host, once per batch)."""
    check_array(who, name, ids, like)
    if not np.issubdtype(ids.dtype, np.integer):
        raise TypeError(f"{who}: {name} must be an integer array, got {describe(ids)}")
    if ids.size == 0 or device_ids_trusted(ids):
        return
    lo, hi = id_range(ids)  # type: ignore[misc]  # not None: ids is not empty
    if lo < 0 or hi >= high:
        bad = lo if lo < 0 else hi
        raise IndexError(f"{who}: {name} must lie in [0, {high}), got a value of {bad}")


def check_mask(
    who: str,
    name: str,
    mask: Any,
    shape: tuple[int, ...],
    what: str = "(batch, length)",
    like: Any = None,
) -> None:
    """A key-padding mask: a boolean, integer or floating array (nonzero = real token; of
    ``like``'s array module) of exactly ``shape``, described in the message as ``what``."""
    check_array(who, name, mask, like)
    if mask.dtype != np.bool_ and mask.dtype.kind not in "iuf":
        raise TypeError(
            f"{who}: {name} must be a boolean (or 0/1) array, True for real tokens, "
            f"got {describe(mask)}"
        )
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(
            f"{who}: {name} must have {what} = {tuple(shape)}, got {tuple(mask.shape)}"
        )


def check_positive_int(who: str, name: str, value: Any, low: int = 1) -> int:
    """A size: an integer ``>= low`` (not a bool, not a float such as 4.0), as a Python int."""
    problem = number_problem(value, integer=True, low=low)
    if problem is not None:
        raise problem.error(f"{who}: {name} must be an integer >= {low}, got {value!r}")
    return int(value)


def check_probability(who: str, name: str, value: Any) -> float:
    """A probability: a finite real number in [0, 1], as a Python float."""
    problem = number_problem(value, integer=False, low=0.0, high=1.0, finite=True)
    if problem is not None and problem.reason == "type":
        raise TypeError(f"{who}: {name} must be a real number in [0, 1], got {value!r}")
    if problem is not None:
        raise ValueError(f"{who}: {name} must be in [0, 1], got {value!r}")
    return float(value)
