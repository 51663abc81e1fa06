"""Grading the course's exercises: one line per check, never a traceback.

An exercise is a function the learner writes in a notebook (a backward, an update, a mask). Its
checker, registered here with ``@exercise``, runs the learner's function on fixed inputs and
returns the largest error against nanotf's own reference (an op, or finite differences). Calling
the registered checker with the learner's function prints exactly one line:

* ``✓ softmax_backward: correct (largest error 2.2e-16 ≤ 1e-09)``
* ``✗ softmax_backward: largest error 0.31 > 1e-09. Hint: ...``
* ``✗ softmax_backward: your function raised ValueError: .... Hint: ...``
* ``… softmax_backward: not done yet (write it above, then run this cell again)``

A learner's copy of a notebook (``python -m nanotf.course learner``) replaces each solution by
``raise NotImplementedError``, which the checker reports as "not done yet", so the rest of the
notebook still runs. Every exercise also registers the reference answer and a few known-wrong
answers (common mistakes): the tests feed both to the checker, so a checker that cannot fail
cannot ship.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["EXERCISES", "Exercise", "Verdict", "WrongAnswer", "exercise", "largest_error"]


class WrongAnswer(Exception):
    """Raised by a checker for an answer of the wrong kind (shape, type): reported as wrong."""


@dataclass(frozen=True)
class Verdict:
    """What a check found: ``status`` is ``"pass"``, ``"wrong"`` or ``"not done"``; ``error`` is
    the largest error measured (NaN where the answer raised or was not written); ``line`` is the
    one line that was printed."""

    status: str
    error: float
    line: str

    @property
    def passed(self) -> bool:
        return self.status == "pass"


@dataclass
class Exercise:
    """A registered exercise: ``check(answer)`` grades a learner's function (see the module)."""

    name: str
    notebook: int
    measure: Callable[[Callable[..., Any]], float]
    tol: float
    hint: str
    reference: Callable[..., Any]
    mistakes: dict[str, Callable[..., Any]] = field(default_factory=dict)

    def grade(self, answer: Any) -> Verdict:
        """Grade ``answer`` silently (``check`` prints the line)."""
        if not callable(answer):
            return Verdict(
                "wrong", math.nan,
                f"✗ {self.name}: expected a function, got {type(answer).__name__}. "
                f"Hint: {self.hint}",
            )
        try:
            err = float(self.measure(answer))
        except WrongAnswer as exc:
            return Verdict("wrong", math.nan, f"✗ {self.name}: {exc}. Hint: {self.hint}")
        except NotImplementedError:
            return Verdict(
                "not done", math.nan,
                f"… {self.name}: not done yet (write it above, then run this cell again)",
            )
        except Exception as exc:  # the learner's code failed: one line, no traceback
            message = " ".join(str(exc).split())
            if len(message) > 160:
                message = message[:157] + "..."
            return Verdict(
                "wrong", math.nan,
                f"✗ {self.name}: your function raised {type(exc).__name__}: {message}. "
                f"Hint: {self.hint}",
            )
        if err <= self.tol:  # NaN is never <= tol
            return Verdict(
                "pass", err, f"✓ {self.name}: correct (largest error {err:.2g} ≤ {self.tol:g})"
            )
        return Verdict(
            "wrong", err,
            f"✗ {self.name}: largest error {err:.2g} > {self.tol:g}. Hint: {self.hint}",
        )

    def check(self, answer: Any) -> None:
        """Grade ``answer`` and print the verdict's one line (``grade`` returns the verdict)."""
        print(self.grade(answer).line)

    __call__ = check


#: every exercise of the course, by name
EXERCISES: dict[str, Exercise] = {}


def exercise(
    name: str,
    *,
    notebook: int,
    tol: float,
    hint: str,
    reference: Callable[..., Any],
    mistakes: dict[str, Callable[..., Any]] | None = None,
) -> Callable[[Callable[[Callable[..., Any]], float]], Exercise]:
    """Register ``measure(answer) -> largest error`` as the checker of exercise ``name``.

    ``reference`` is a correct answer (it must pass), ``mistakes`` maps a description to a
    known-wrong answer (each must be reported wrong). The decorated name becomes the
    ``Exercise``, which a notebook calls with the learner's function.
    """

    def register(measure: Callable[[Callable[..., Any]], float]) -> Exercise:
        if name in EXERCISES:
            raise ValueError(f"exercise {name!r} is registered twice")
        ex = Exercise(name, notebook, measure, tol, hint, reference, dict(mistakes or {}))
        EXERCISES[name] = ex
        return ex

    return register


def largest_error(got: Any, want: Any, what: str = "your result") -> float:
    """Normwise relative error ``max|got - want| / max|want|`` of a learner's array (absolute
    where ``want`` is all zeros).

    A result of the wrong type or shape, or one with NaN or inf, raises ``WrongAnswer`` saying
    so (the checker reports it as one line).
    """
    import numpy as np

    from ..backend import to_numpy

    w = np.asarray(to_numpy(want), dtype=np.float64)
    try:
        g = np.asarray(to_numpy(got), dtype=np.float64)
    except (TypeError, ValueError):
        raise WrongAnswer(
            f"{what} should be an array of shape {w.shape}, got {type(got).__name__}"
        ) from None
    if g.shape != w.shape:
        raise WrongAnswer(f"{what} has shape {g.shape}, expected {w.shape}")
    if not np.isfinite(g).all():
        raise WrongAnswer(f"{what} holds NaN or inf")
    scale = float(np.abs(w).max(initial=0.0))
    diff = float(np.abs(g - w).max(initial=0.0))
    return diff if scale == 0.0 else diff / scale  # absolute where the answer is all zeros
