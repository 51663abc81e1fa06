"""Input checks shared by the ops: every error says what was expected and what was given."""

from __future__ import annotations

from typing import Any

from ..backend import get_array_module


def check_float(name: str, x: Any) -> None:
    """``x`` must be a floating-point array (ints would silently become float64)."""
    xp = get_array_module(x)
    if not hasattr(x, "dtype") or not xp.issubdtype(x.dtype, xp.floating):
        given = getattr(x, "dtype", type(x).__name__)
        raise TypeError(f"{name} must be a floating-point array (float32 or float64), got {given}")


def check_same_dtype(**arrays: Any) -> None:
    """All floating inputs of an op share one dtype: no silent float32 -> float64 upcast."""
    given = {k: v.dtype for k, v in arrays.items() if v is not None}
    if len(set(given.values())) > 1:
        listing = ", ".join(f"{k}: {v}" for k, v in given.items())
        raise TypeError(f"inputs must share one floating dtype, got {listing}")


def check_ndim(name: str, x: Any, ndim: int | tuple[int, ...]) -> None:
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    if x.ndim not in allowed:
        want = " or ".join(str(n) for n in allowed)
        raise ValueError(f"{name} must have {want} dimensions, got shape {tuple(x.shape)}")


def check_int_ids(name: str, ids: Any, high: int, allowed_extra: int | None = None) -> None:
    """``ids`` must be integers in ``[0, high)`` (or equal to ``allowed_extra``)."""
    xp = get_array_module(ids)
    if not hasattr(ids, "dtype") or not xp.issubdtype(ids.dtype, xp.integer):
        given = getattr(ids, "dtype", type(ids).__name__)
        raise TypeError(f"{name} must be an integer array, got {given}")
    if ids.size == 0:
        return
    valid = ids if allowed_extra is None else ids[ids != allowed_extra]
    if valid.size == 0:
        return
    lo, hi = int(valid.min()), int(valid.max())
    if lo < 0 or hi >= high:
        extra = "" if allowed_extra is None else f" (or {allowed_extra})"
        bad = lo if lo < 0 else hi
        raise IndexError(f"{name} must lie in [0, {high}){extra}, got a value of {bad}")


def broadcast_shape(shape_a: tuple[int, ...], shape_b: tuple[int, ...]) -> tuple[int, ...] | None:
    """The NumPy broadcast of two shapes, or None where they do not broadcast."""
    out = []
    for i in range(1, max(len(shape_a), len(shape_b)) + 1):
        a = shape_a[-i] if i <= len(shape_a) else 1
        b = shape_b[-i] if i <= len(shape_b) else 1
        if a != b and a != 1 and b != 1:
            return None
        out.append(max(a, b))
    return tuple(reversed(out))
