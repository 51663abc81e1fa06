"""Batches: encoded ``(source, target)`` pairs padded into rectangular integer arrays.

The layout of one example (``.`` is ``<pad>``)::

    src      c   a   b   <eos>  .             the source, then <eos>; no <bos>
    tgt      <bos>  c   a   b   <eos>  .      <bos>, the target, <eos>
    tgt_in   <bos>  c   a   b   <eos>         tgt[:, :-1]  what the decoder reads
    tgt_out  c   a   b   <eos>  .             tgt[:, 1:]   what it must predict

Batches are made on the host with NumPy; ``batch.to_backend()`` moves one to the device.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import backend
from ..text.padding import pad_sequences
from ..text.specials import PAD_ID
from .base import Pair, RngLike, Task, as_generator, check_pair

__all__ = ["Batch", "batches", "make_batch"]


@dataclass(frozen=True)
class Batch:
    """A padded batch of encoded pairs (NumPy int64 on the host until moved).

    ``src`` (B, S): source ids then ``<eos>``, padded with ``<pad>``; ``src_mask`` (B, S) is True
    at real tokens (``<eos>`` included). ``tgt`` (B, T): ``<bos>`` target ``<eos>``, padded;
    ``tgt_mask`` (B, T) likewise. The decoder reads :attr:`tgt_in` and predicts :attr:`tgt_out`.
    """

    src: Any
    tgt: Any
    src_mask: Any
    tgt_mask: Any
    #: :attr:`n_tokens` as counted on the host before :meth:`to_backend` moved the batch (None
    #: for a batch made on the host: it counts its own mask, which costs no transfer)
    host_n_tokens: int | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name, dtype in (
            ("src", np.int64),
            ("tgt", np.int64),
            ("src_mask", np.bool_),
            ("tgt_mask", np.bool_),
        ):
            a = getattr(self, name)
            if getattr(a, "ndim", None) != 2:
                raise ValueError(
                    f"Batch.{name} must be a 2-D array (batch, length), got "
                    f"{getattr(a, 'shape', type(a).__name__)}"
                )
            if np.dtype(a.dtype) != np.dtype(dtype):
                raise TypeError(f"Batch.{name} must have dtype {np.dtype(dtype)}, got {a.dtype}")
        if self.src_mask.shape != self.src.shape or self.tgt_mask.shape != self.tgt.shape:
            raise ValueError(
                f"masks must match their ids: src {self.src.shape} vs src_mask "
                f"{self.src_mask.shape}, tgt {self.tgt.shape} vs tgt_mask {self.tgt_mask.shape}"
            )
        if self.src.shape[0] != self.tgt.shape[0]:
            raise ValueError(
                f"src and tgt must hold the same number of examples, got {self.src.shape[0]} "
                f"and {self.tgt.shape[0]}"
            )
        if self.tgt.shape[1] < 2:
            raise ValueError(
                f"tgt needs at least 2 positions (<bos> and <eos>), got shape {self.tgt.shape}"
            )

    @property
    def tgt_in(self) -> Any:
        """Decoder input (B, T-1): ``tgt`` without its last position (starts with ``<bos>``)."""
        return self.tgt[:, :-1]

    @property
    def tgt_out(self) -> Any:
        """Decoder labels (B, T-1): ``tgt`` shifted left by one (ends with ``<eos>``, pads)."""
        return self.tgt[:, 1:]

    @property
    def tgt_in_mask(self) -> Any:
        """(B, T-1) True where :attr:`tgt_in` is a real token (the decoder's key padding mask)."""
        return self.tgt_mask[:, :-1]

    @property
    def tgt_out_mask(self) -> Any:
        """(B, T-1) True where :attr:`tgt_out` is a real label (the positions the loss counts)."""
        return self.tgt_mask[:, 1:]

    @property
    def n_tokens(self) -> int:
        """Number of labels the loss counts (non-pad tokens of :attr:`tgt_out`): divide the
        summed loss by this for a per-token mean. Counted on the host: a moved batch keeps the
        count made before the move (no device sync)."""
        if self.host_n_tokens is not None:
            return self.host_n_tokens
        return int(backend.to_numpy(self.tgt_out_mask).sum())

    def __len__(self) -> int:
        """Number of examples in the batch (B)."""
        return int(self.src.shape[0])

    def to_backend(self) -> Batch:
        """The same batch with every array on the current backend's device
        (``nanotf.backend.asarray``: a no-op for NumPy, a host-to-GPU copy for CuPy), and
        :attr:`n_tokens` counted before the move."""
        asarray = backend.asarray
        return Batch(
            asarray(self.src),
            asarray(self.tgt),
            asarray(self.src_mask),
            asarray(self.tgt_mask),
            host_n_tokens=self.n_tokens,
        )


def make_batch(pairs: Sequence[Pair], task: Task) -> Batch:
    """Encode ``(source, target)`` text pairs with the task's vocabularies and pad them.

    Sources become ``symbols <eos>``, targets ``<bos> symbols <eos>``; each is padded with
    ``<pad>`` to the longest in *this* batch (not to ``task.max_*_len``).
    """
    if isinstance(pairs, tuple) and len(pairs) == 2 and all(isinstance(p, str) for p in pairs):
        raise TypeError(
            "make_batch expects a list of (source, target) pairs, got one pair; "
            "wrap it in a list: make_batch([pair], task)"
        )
    pairs = list(pairs)
    if not pairs:
        raise ValueError("make_batch needs at least one (source, target) pair, got none")
    srcs, tgts = [], []
    for i, pair in enumerate(pairs):
        check_pair(i, pair)
        try:
            srcs.append(task.encode_source(pair[0]))
            tgts.append(task.encode_target(pair[1]))
        except ValueError as err:
            raise ValueError(f"pair {i} {tuple(pair)!r} of task {task.name!r}: {err}") from err
    src, src_mask = pad_sequences(srcs, PAD_ID)
    tgt, tgt_mask = pad_sequences(tgts, PAD_ID)
    return Batch(src=src, tgt=tgt, src_mask=src_mask, tgt_mask=tgt_mask)


def _default_shuffle_rng() -> np.random.Generator:
    """A host generator that follows ``nanotf.manual_seed``: the backend's own generator on
    NumPy, or a NumPy generator seeded from it on CuPy (shuffling is host-side work)."""
    g = backend.rng()
    if isinstance(g, np.random.Generator):
        return g
    return np.random.default_rng(int(backend.to_numpy(g.random(1))[0] * 2**52))


def batches(
    pairs: Sequence[Pair],
    task: Task,
    batch_size: int,
    rng: RngLike | None = None,
    shuffle: bool = True,
    drop_last: bool = False,
) -> Iterator[Batch]:
    """One epoch of batches over ``pairs``: shuffled (by default) and cut into ``batch_size``.

    ``rng`` (a Generator or a seed) drives the shuffle; left out, nanotf's seeded generator
    (``nanotf.manual_seed``) does, so runs repeat. The last batch may be smaller unless
    ``drop_last``. Call it again for the next epoch (a fresh order when ``rng`` is a Generator).
    Arguments are checked now, not at the first ``next()``.
    """
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, (int, np.integer))
        or batch_size < 1
    ):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    pairs = list(pairs)
    if not pairs:
        raise ValueError("batches needs at least one (source, target) pair, got none")
    if drop_last and len(pairs) < batch_size:
        raise ValueError(
            f"drop_last=True with {len(pairs)} pairs and batch_size {batch_size} gives no batch"
        )
    if shuffle:
        gen = _default_shuffle_rng() if rng is None else as_generator(rng)
        order = gen.permutation(len(pairs)).tolist()
    else:
        order = list(range(len(pairs)))
    stop = len(order) - len(order) % batch_size if drop_last else len(order)

    def epoch() -> Iterator[Batch]:
        for start in range(0, stop, batch_size):
            yield make_batch([pairs[i] for i in order[start : start + batch_size]], task)

    return epoch()
