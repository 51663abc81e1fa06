"""Padding ragged id sequences into one rectangular array, with the mask of the real tokens.

The one place where a batch of sequences of different lengths becomes a ``(B, L)`` array: the
toy-task batches, the decoders' outputs and the WordPiece tokenizer's batches all pad here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["pad_sequences"]


def pad_sequences(
    seqs: Sequence[Sequence[int]], pad_id: int, width: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Stack ragged id lists into ``(B, width)`` int64 ids filled with ``pad_id`` after each
    sequence, and the ``(B, width)`` bool mask that is True at the real (given) tokens.

    ``width`` defaults to the longest sequence; a sequence longer than ``width`` is an error.

    >>> ids, mask = pad_sequences([[5, 6, 2], [7, 2]], pad_id=0)
    >>> ids.tolist(), mask.tolist()
    ([[5, 6, 2], [7, 2, 0]], [[True, True, True], [True, True, False]])
    """
    longest = max((len(s) for s in seqs), default=0)
    if width is None:
        width = longest
    elif longest > width:
        raise ValueError(f"a sequence of {longest} ids does not fit in width {width}")
    ids = np.full((len(seqs), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(seqs), width), dtype=bool)
    for row, s in enumerate(seqs):
        ids[row, : len(s)] = s
        mask[row, : len(s)] = True
    return ids, mask
