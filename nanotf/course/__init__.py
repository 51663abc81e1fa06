"""The course: its exercises' checkers and the tools that build its notebooks.

In a notebook::

    from nanotf.course import EXERCISES
    check = EXERCISES["softmax_backward"]
    check(softmax_backward)   # prints one line: correct, wrong (with a hint), or not done yet

Each ``exNN_*.py`` module here holds the checkers of notebook NN (registered on import);
``grading.py`` the machinery; ``notebooks.py`` the build, check and learner-copy commands
(``python -m nanotf.course --help``).
"""

from __future__ import annotations

import importlib
import pkgutil

from .grading import EXERCISES, Exercise, Verdict, WrongAnswer, exercise, largest_error

__all__ = ["EXERCISES", "Exercise", "Verdict", "WrongAnswer", "exercise", "largest_error"]

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name.startswith("ex")):
    importlib.import_module(f"{__name__}.{_module}")
