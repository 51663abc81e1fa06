"""Moved to :mod:`nanotf.checks` (public: the models check ids and shapes with them too).

Kept so that imports of ``nanotf.functional._checks`` keep working.
"""

from ..checks import *  # noqa: F403  (the names of nanotf.checks.__all__)
from ..checks import is_array_or_scalar as is_array  # noqa: F401  (its meaning here: 0-d too)
