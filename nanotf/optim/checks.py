"""Checks of the optimizers' arguments: numbers, flags and parameter lists.

Each returns the value in its plain Python form (a float, an int, a bool, a list of
``Parameter``) or raises an error that says what was expected and what was given. A 0-d array
counts as its number, since checkpoints read back from ``.npz`` files hold numbers that way.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping
from typing import Any

from ..checks import is_number, number_problem, range_problem
from ..nn.parameter import Parameter

__all__ = ["as_flag", "as_int", "as_param_list", "as_real"]


def _unwrap_0d(value: Any) -> Any:
    """A 0-d array (e.g. a scalar read back from an ``.npz`` checkpoint) as its Python number."""
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        return value.item()
    return value


def as_real(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a Python float, checked to be finite and inside the given interval."""
    value = _unwrap_0d(value)
    left = "(-inf" if low is None else f"{'(' if low_open else '['}{low:g}"
    right = "inf)" if high is None else f"{high:g}{')' if high_open else ']'}"
    message = f"{name}: expected a real number in {left}, {right}, got {value!r}"
    if not is_number(value, integer=False):
        raise TypeError(message)
    v = float(value)  # the interval is checked on the float the optimizer will use
    problem = range_problem(
        v, low=low, high=high, low_open=low_open, high_open=high_open, finite=True
    )
    if problem is not None:
        raise ValueError(message)
    return v


def as_int(name: str, value: Any, *, low: int) -> int:
    """``value`` as a Python int, checked to be ``>= low``."""
    value = _unwrap_0d(value)
    problem = number_problem(value, integer=True, low=low)
    if problem is not None:
        raise problem.error(f"{name}: expected an integer >= {low}, got {value!r}")
    return int(value)


def as_flag(name: str, value: Any) -> bool:
    """A boolean hyperparameter; ``0``/``1`` are accepted because checkpoints store numbers."""
    value = _unwrap_0d(value)
    if isinstance(value, numbers.Number) and value in (0, 1):
        return bool(value)
    raise TypeError(f"{name}: expected True or False, got {value!r}")


def as_param_list(
    params: Any, who: str, *, allow_empty: bool = False, allow_single: bool = False
) -> list[Parameter]:
    """``params`` as a list of distinct ``Parameter`` objects."""
    if isinstance(params, Parameter):
        if allow_single:
            return [params]
        raise TypeError(
            f"{who}: expected an iterable of Parameter (e.g. model.parameters()), "
            "got a single Parameter; wrap it in a list"
        )
    if isinstance(params, Mapping):
        raise TypeError(
            f"{who}: expected an iterable of Parameter, got a {type(params).__name__}; "
            "pass list(d.values())"
        )
    if not isinstance(params, Iterable) or isinstance(params, (str, bytes)):
        raise TypeError(f"{who}: expected an iterable of Parameter, got {type(params).__name__}")
    out = list(params)
    if not out and not allow_empty:
        raise ValueError(f"{who}: expected at least one Parameter, got an empty list")
    seen: dict[int, int] = {}
    for i, p in enumerate(out):
        if not isinstance(p, Parameter):
            hint = (
                " (named_parameters() yields (name, Parameter) pairs: pass parameters())"
                if isinstance(p, tuple)
                else ""
            )
            raise TypeError(
                f"{who}[{i}]: expected a nanotf.nn.Parameter, got {type(p).__name__}{hint}"
            )
        if id(p) in seen:
            raise ValueError(
                f"{who}[{i}] is the same Parameter as {who}[{seen[id(p)]}]: expected each "
                "Parameter once (a tied weight is one Parameter and gets one update)"
            )
        seen[id(p)] = i
    return out
