"""Toy sequence-to-sequence tasks for training the encoder–decoder Transformer, made on the host.

Nothing is downloaded: every example is generated from a seed with ``numpy.random.Generator``,
so the same seed always gives the same data. Data is made here with NumPy on the CPU; the training
loop moves each :class:`Batch` to the device (``batch.to_backend()``) when it needs it.

Three pieces, bottom to top:

1. :class:`Vocab` (:mod:`nanotf.text.vocab`) turns text into integer ids and back. Ids 0-3 are
   always the special tokens ``<pad>`` (0), ``<bos>`` (1), ``<eos>`` (2) and ``<unk>`` (3)
   (:mod:`nanotf.text.specials`); the task's symbols follow.
   A vocabulary is character-level (``"abc"`` -> 3 tokens) or word-level (whitespace split).

2. A :class:`Task` (:mod:`~nanotf.tasks.base`) generates ``(source, target)`` text pairs, one
   file per family (:mod:`~nanotf.tasks.strings`, :mod:`~nanotf.tasks.numbers`,
   :mod:`~nanotf.tasks.dates`). :func:`get_task` builds one by name (see :data:`TASKS`):

   =========  ==================================  ==========================
   name       source                              target
   =========  ==================================  ==========================
   copy       ``"cabjj"``                         ``"cabjj"``
   reverse    ``"cabjj"``                         ``"jjbac"``
   sort       ``"cabjj"``                         ``"abcjj"``
   numbers    ``"three hundred forty-two"``       ``"342"``
   dates      ``"march 5, 1999"``                 ``"1999-03-05"``
   addition   ``"12+34"``                         ``"46"``
   =========  ==================================  ==========================

   For the decoder-only GPT, :class:`LMTask` (:mod:`~nanotf.tasks.lm`) writes each pair as one
   sequence, ``<bos> 12+34=46 <eos>``, and :func:`lm_batch` pads such sequences.

   ``task.splits(n_train, n_heldout, seed)`` gives a training set and a held-out set whose
   sources never occur in the training set, so held-out accuracy measures generalisation, not
   memory. How many it can give is bounded, and checked before anything is drawn
   (:meth:`Task.check_split`): by what the task has, and by :data:`MAX_SPLIT_PAIRS` in all.

3. :func:`make_batch` / :func:`batches` (:mod:`~nanotf.tasks.batching`) turn pairs into padded
   integer arrays. The layout of one example (``.`` is ``<pad>``)::

       src      c   a   b   <eos>  .             the source, then <eos>; no <bos>
       tgt      <bos>  c   a   b   <eos>  .      <bos>, the target, <eos>
       tgt_in   <bos>  c   a   b   <eos>         tgt[:, :-1]  what the decoder reads
       tgt_out  c   a   b   <eos>  .             tgt[:, 1:]   what it must predict

   Teacher forcing: at position ``t`` the decoder reads ``tgt_in[:, : t + 1]`` (the true
   prefix, not its own guesses) and is trained to predict ``tgt_out[:, t]``. The loss ignores
   ``<pad>`` positions of ``tgt_out`` (cross-entropy with ``ignore_index=PAD_ID``).

   Why ``<eos>`` on the source? The encoder reads the whole source at once, so it needs no
   ``<bos>``; the ``<eos>`` gives every source an explicit "end" position the attention can
   use (as in the original Transformer's data, where sentences end with ``</s>``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..text.specials import BOS_ID, EOS_ID, PAD_ID, SPECIAL_TOKENS, UNK_ID
from ..text.vocab import Vocab
from .arithmetic import MAX_DIGITS, addition_task
from .base import MAX_SPLIT_PAIRS, Pair, RngLike, Task
from .batching import Batch, batches, make_batch
from .dates import DATE_FORMATS, FIRST_DATE, LAST_DATE, date_to_text, dates_task
from .lm import SEPARATOR, LMBatch, LMTask, lm_batch
from .numbers import number_to_words, numbers_task
from .strings import DEFAULT_ALPHABET, MAX_STRING_LEN, copy_task, reverse_task, sort_task

__all__ = [
    "BOS_ID",
    "DATE_FORMATS",
    "DEFAULT_ALPHABET",
    "EOS_ID",
    "FIRST_DATE",
    "LMBatch",
    "LMTask",
    "LAST_DATE",
    "MAX_DIGITS",
    "MAX_SPLIT_PAIRS",
    "MAX_STRING_LEN",
    "PAD_ID",
    "SEPARATOR",
    "SPECIAL_TOKENS",
    "TASKS",
    "UNK_ID",
    "Batch",
    "Pair",
    "RngLike",
    "Task",
    "Vocab",
    "addition_task",
    "batches",
    "copy_task",
    "date_to_text",
    "dates_task",
    "get_task",
    "lm_batch",
    "make_batch",
    "number_to_words",
    "numbers_task",
    "reverse_task",
    "sort_task",
]

#: Every built-in task: name -> factory. ``get_task(name)`` calls the factory.
TASKS: dict[str, Callable[..., Task]] = {
    "copy": copy_task,
    "reverse": reverse_task,
    "sort": sort_task,
    "numbers": numbers_task,
    "dates": dates_task,
    "addition": addition_task,
}


def get_task(name: str, **options: Any) -> Task:
    """The built-in task called ``name`` (one of :data:`TASKS`).

    Options go to its factory, e.g. ``get_task("copy", alphabet="0123456789", max_len=20)``.
    """
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; the known tasks are: {', '.join(TASKS)}")
    return TASKS[name](**options)
