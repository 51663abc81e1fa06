"""Notebook 05, "A Transformer, every intermediate named": the learner builds the decoder's
input and labels for teacher forcing (``tgt_in`` / ``tgt_out``) from padded target symbols."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..data import BOS_ID, EOS_ID, PAD_ID, get_task, make_batch
from .grading import WrongAnswer, exercise, largest_error


def _reference(targets: Any, bos_id: int, eos_id: int, pad_id: int) -> tuple[Any, Any]:
    targets = np.asarray(targets)
    b = targets.shape[0]
    lengths = (targets != pad_id).sum(axis=1)
    tgt_in = np.concatenate([np.full((b, 1), bos_id, dtype=targets.dtype), targets], axis=1)
    tgt_out = np.concatenate([targets, np.full((b, 1), pad_id, dtype=targets.dtype)], axis=1)
    tgt_out[np.arange(b), lengths] = eos_id
    return tgt_in, tgt_out


def _no_eos(targets: Any, bos_id: int, eos_id: int, pad_id: int) -> tuple[Any, Any]:
    tgt_in, _ = _reference(targets, bos_id, eos_id, pad_id)
    b = targets.shape[0]
    return tgt_in, np.concatenate([targets, np.full((b, 1), pad_id, dtype=targets.dtype)], 1)


def _eos_in_last_column(targets: Any, bos_id: int, eos_id: int, pad_id: int) -> tuple[Any, Any]:
    tgt_in, _ = _reference(targets, bos_id, eos_id, pad_id)
    b = targets.shape[0]
    return tgt_in, np.concatenate([targets, np.full((b, 1), eos_id, dtype=targets.dtype)], 1)


def _swapped(targets: Any, bos_id: int, eos_id: int, pad_id: int) -> tuple[Any, Any]:
    tgt_in, tgt_out = _reference(targets, bos_id, eos_id, pad_id)
    return tgt_out, tgt_in


def _cases() -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(targets, tgt_in, tgt_out) from nanotf's own batches: ``Batch.tgt_out`` is the answer for
    the labels; ``Batch.tgt_in`` is, except that it keeps ``<eos>`` as an input in rows shorter
    than the longest (a position the loss ignores), where the exercise asks for ``<pad>``."""
    task = get_task("reverse")
    groups = [
        task.sample(5, 7),  # rows of several lengths
        [("abcdefghij", "jihgfedcba")],  # one full row, no padding
        [("ab", "ba"), ("", ""), ("j", "j")],  # an empty target
    ]
    cases = []
    for pairs in groups:
        batch = make_batch(pairs, task)
        tgt_in = np.where(batch.tgt_in == EOS_ID, PAD_ID, batch.tgt_in)
        targets = tgt_in[:, 1:]  # the symbols, padded: no <bos>, no <eos>
        cases.append((targets, tgt_in, batch.tgt_out))
    return cases


def _count_wrong(got: Any, want: np.ndarray, what: str) -> int:
    largest_error(got, want, what=what)  # WrongAnswer for a wrong type or shape, NaN or inf
    got = np.asarray(got)
    if got.dtype.kind not in "iu":
        raise WrongAnswer(f"{what} must hold integer token ids, got dtype {got.dtype}")
    return int((got != want).sum())


@exercise(
    "shift_targets",
    notebook=5,
    tol=0,
    hint="the error is the number of wrong token ids. tgt_in = a <bos> column, then targets; "
    "tgt_out = targets, then a pad column, with <eos> written at column n_b of row b (n_b = its "
    "number of non-pad symbols)",
    reference=_reference,
    mistakes={
        "forgot <eos>": _no_eos,
        "<eos> in the last column of every row": _eos_in_last_column,
        "tgt_in and tgt_out swapped": _swapped,
    },
)
def check_shift_targets(answer: Callable[..., Any]) -> float:
    """``answer(targets, bos_id, eos_id, pad_id) -> (tgt_in, tgt_out)`` on three batches of the
    reverse task (rows of mixed lengths, one full row, an empty row); returns the number of
    wrong token ids."""
    wrong = 0
    for i, (targets, want_in, want_out) in enumerate(_cases()):
        got = answer(targets.copy(), BOS_ID, EOS_ID, PAD_ID)
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise WrongAnswer(
                f"return a pair (tgt_in, tgt_out), got {type(got).__name__}"
                + (f" of length {len(got)}" if isinstance(got, (tuple, list)) else "")
            )
        shape = tuple(targets.shape)
        wrong += _count_wrong(got[0], want_in, f"tgt_in for targets of shape {shape} (case {i})")
        wrong += _count_wrong(got[1], want_out, f"tgt_out for targets of shape {shape} (case {i})")
    return float(wrong)
