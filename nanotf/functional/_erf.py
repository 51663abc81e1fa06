"""Moved to :mod:`nanotf.special` (the array layer uses erf, so it lives below the ops).

Kept so that ``from nanotf.functional._erf import erf, erfc`` still works.
"""

from ..special import erf, erfc

__all__ = ["erf", "erfc"]
