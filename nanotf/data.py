"""Toy sequence-to-sequence tasks, vocabularies and batches: the public names, in one place.

The code lives in two packages; this module re-exports what ``from nanotf.data import ...``
has always given:

* :mod:`nanotf.tasks`: :class:`Task` and the task families (``copy``, ``reverse``, ``sort``,
  ``numbers``, ``dates``), :func:`get_task`, and batching (:class:`Batch`, :func:`make_batch`,
  :func:`batches`); its docstring explains the layout of a batch;
* :mod:`nanotf.text`: :class:`Vocab` and the special token ids (``PAD_ID`` ...).
"""

from __future__ import annotations

from .tasks import *  # noqa: F403  (every name in nanotf.tasks.__all__)
from .tasks import __all__ as _task_names
from .text.vocab import Level, UnkPolicy

__all__ = [*_task_names, "Level", "UnkPolicy"]
