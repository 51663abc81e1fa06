"""Checks of single values, each raising a ``ValueError`` that names the value, what is allowed
and what was given: the number checks of training and the command line, each in its own words
around the one home of the logic, :func:`nanotf.checks.number_problem`.

>>> check_int("steps", 0, low=1)
Traceback (most recent call last):
ValueError: steps must be an integer >= 1, got 0
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..checks import number_problem

__all__ = [
    "check_at_least",
    "check_bool",
    "check_choice",
    "check_index",
    "check_int",
    "check_real",
    "check_str",
    "one_of",
]


def one_of(names: Sequence[str]) -> str:
    """``"a, b or c"``: the allowed names, for an error message."""
    names = list(names)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def check_int(name: str, value: Any, low: int) -> None:
    """A Python or NumPy integer (not a bool) ``>= low``."""
    if number_problem(value, integer=True, low=low, types=(int, np.integer)) is not None:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def check_real(name: str, value: Any, low: float, high: float | None = None) -> None:
    """A finite Python number (an int or a float, not a bool) in ``[low, high]`` (``>= low``
    when ``high`` is None)."""
    problem = number_problem(
        value, integer=False, low=low, high=high, finite=True, types=(int, float)
    )
    if problem is not None and problem.reason != "range":
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if problem is not None:
        allowed = f"[{low:g}, {high:g}]" if high is not None else f">= {low:g}"
        raise ValueError(f"{name} must be {allowed}, got {value!r}")


def check_at_least(name: str, value: int, low: int) -> None:
    """``value >= low`` (a number the user typed, already parsed as one)."""
    if value < low:
        raise ValueError(f"{name} must be at least {low}, got {value}")


def check_index(name: str, value: int, n: int) -> None:
    """``0 <= value < n``: an index into ``n`` things."""
    if not 0 <= value < n:
        raise ValueError(f"{name} must be in [0, {n}), got {value}")


def check_str(name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {type(value).__name__} {value!r}")


def check_bool(name: str, value: Any) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {type(value).__name__} {value!r}")


def check_choice(what: str, value: str, allowed: Sequence[str], listed: bool = True) -> None:
    """``value`` one of ``allowed``: ``unknown optimizer 'rmsprop'; expected one of adam, adamw,
    sgd`` (``listed=False``: ``...; expected numpy or cupy``)."""
    if value not in allowed:
        names = f"one of {', '.join(allowed)}" if listed else one_of(allowed)
        raise ValueError(f"unknown {what} {value!r}; expected {names}")
