"""What a toy task is: :class:`Task`, a generator of ``(source, target)`` text pairs with the
vocabularies to encode them, and its training / held-out splits.

The task families (:mod:`~nanotf.tasks.strings`, :mod:`~nanotf.tasks.numbers`,
:mod:`~nanotf.tasks.dates`) each build a :class:`Task`; batching is in
:mod:`~nanotf.tasks.batching`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ..text.vocab import Vocab

__all__ = ["MAX_SPLIT_PAIRS", "Pair", "RngLike", "Task", "as_generator", "check_pair"]

Pair = tuple[str, str]
RngLike = np.random.Generator | int


def as_generator(rng: RngLike) -> np.random.Generator:
    """Accept a ``numpy.random.Generator`` or an integer seed."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool) and rng >= 0:
        return np.random.default_rng(int(rng))
    raise TypeError(
        "rng must be a numpy.random.Generator or a non-negative integer seed, "
        f"got {type(rng).__name__} ({rng!r})"
    )


def check_pair(i: int, pair: object) -> None:
    """Pair ``i`` of a batch must be a ``(source, target)`` tuple (or list) of two str."""
    if not (
        isinstance(pair, (tuple, list)) and len(pair) == 2 and all(isinstance(t, str) for t in pair)
    ):
        raise TypeError(f"pair {i} must be a (source, target) tuple of two str, got {pair!r}")


#: The most pairs :meth:`Task.splits` makes, training and held-out together. Every pair is kept
#: in memory as text (about 500 bytes with its bookkeeping, so a million take ~0.5 GB and ~8 s
#: to draw) and every evaluation decodes the whole held-out set; the default run uses 20 500.
MAX_SPLIT_PAIRS = 1_000_000


def _check_count(name: str, n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {n!r}")
    return int(n)


@dataclass(frozen=True)
class Task:
    """A generator of ``(source, target)`` text pairs with the vocabularies to encode them.

    ``max_src_len`` and ``max_tgt_len`` are the longest encoded sequences the task can produce,
    in tokens: the source with its ``<eos>`` and the target with ``<bos>`` and ``<eos>``. Size the
    model's positional encoding from them.

    ``n_sources`` is how many different examples the task can produce (what :meth:`splits` can
    ask for at most). ``dedup_by`` says what makes two examples "the same" for :meth:`splits`:
    the source string (default), or the target (``dates``: the same day written in another
    format counts as the same example, so a held-out day is never seen in training at all).

    ``stratum`` maps a pair to ``(group, size of that group)``, e.g. strings of one length and
    how many such strings exist. :meth:`splits` lets the held-out set take at most half of any
    group, so a small group (the ten one-letter strings) is never held out whole and missing
    from training. ``heldout_capacity`` is then the most examples a held-out set can have (the
    sum of the halves; None: ``n_sources``).
    """

    name: str
    description: str
    src_vocab: Vocab = field(repr=False)
    tgt_vocab: Vocab = field(repr=False)
    max_src_len: int
    max_tgt_len: int
    generate: Callable[[int, np.random.Generator], list[Pair]] = field(repr=False, compare=False)
    n_sources: int = field(repr=False)
    dedup_by: Literal["source", "target"] = field(default="source", repr=False)
    stratum: Callable[[Pair], tuple[Any, int]] | None = field(
        default=None, repr=False, compare=False
    )
    heldout_capacity: int | None = field(default=None, repr=False, compare=False)

    @property
    def max_heldout(self) -> int:
        """The largest held-out set :meth:`splits` can make (before :data:`MAX_SPLIT_PAIRS`)."""
        cap = self.n_sources if self.heldout_capacity is None else self.heldout_capacity
        return min(cap, self.n_sources)

    def check_split(self, n_train: int, n_heldout: int) -> None:
        """Raise a ``ValueError`` that states the bound when :meth:`splits` cannot make
        ``n_train`` training and ``n_heldout`` held-out pairs: more held-out pairs than the task
        can hold out (:attr:`max_heldout`), more pairs than it has (``n_sources``), or more than
        :data:`MAX_SPLIT_PAIRS` in all. Costs nothing: it runs before anything is drawn."""
        n_train = _check_count("n_train", n_train)
        n_heldout = _check_count("n_heldout", n_heldout)
        need = n_train + n_heldout
        if need > MAX_SPLIT_PAIRS:
            raise ValueError(
                f"n_train + n_heldout = {n_train:,} + {n_heldout:,} = {need:,} pairs is more than "
                f"nanotf makes: at most {MAX_SPLIT_PAIRS:,} in all (every pair is kept in memory "
                "and the held-out ones are decoded at every evaluation); ask for fewer"
            )
        if n_heldout > self.max_heldout:
            why = (
                " (the held-out set takes at most half of each group of examples, such as the "
                "strings of one length or the numbers of one digit count, so that training "
                "sees every kind)"
                if self.max_heldout < self.n_sources
                else ""
            )
            raise ValueError(
                f"n_heldout={n_heldout:,} is more than task {self.name!r} can hold out: at most "
                f"{self.max_heldout:,}{why}"
            )
        if need > self.n_sources:
            raise ValueError(
                f"task {self.name!r} has only {self.n_sources:,} distinct examples, but "
                f"splits asked for {n_train} train + {n_heldout} held-out = {need}; ask for "
                "fewer (copy, reverse and sort grow with max_len and the alphabet: get_task(name, "
                "alphabet=..., max_len=...))"
            )

    def sample(self, n: int, rng: RngLike) -> list[Pair]:
        """``n`` independent random pairs (duplicates possible); ``rng`` is a Generator or a seed.

        The same generator state gives the same pairs, so a seed reproduces a data set.
        """
        n = _check_count("n", n)
        return self.generate(n, as_generator(rng)) if n else []

    def splits(self, n_train: int, n_heldout: int, seed: int) -> tuple[list[Pair], list[Pair]]:
        """A training set and a held-out set of distinct examples, disjoint from each other.

        No example occurs twice, and no held-out source occurs in the training set (examples
        are compared by ``dedup_by``). The held-out set comes from its own random stream, so a
        seed gives the same held-out set whatever ``n_train`` is: grow the training set and the
        evaluation stays comparable. The held-out set takes at most half of any ``stratum``
        group, so training always sees every kind of example. Asking for more than the task
        can give (see :meth:`check_split`) raises a ``ValueError`` before anything is drawn.
        """
        n_train = _check_count("n_train", n_train)
        n_heldout = _check_count("n_heldout", n_heldout)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise TypeError(f"seed must be a non-negative integer, got {seed!r}")
        self.check_split(n_train, n_heldout)
        heldout_ss, train_ss = np.random.SeedSequence(int(seed)).spawn(2)
        seen: set[str] = set()
        heldout = self._distinct(n_heldout, np.random.default_rng(heldout_ss), seen, self.stratum)
        train = self._distinct(n_train, np.random.default_rng(train_ss), seen)
        return train, heldout

    def _distinct(
        self,
        n: int,
        rng: np.random.Generator,
        seen: set[str],
        stratum: Callable[[Pair], tuple[Any, int]] | None = None,
    ) -> list[Pair]:
        """Draw until ``n`` pairs whose key is not in ``seen`` are found (adds them to it).

        With ``stratum``, a pair is skipped once its group already holds half of its size.
        """
        key = 0 if self.dedup_by == "source" else 1
        taken: dict[Any, int] = {}
        out: list[Pair] = []
        drawn, budget = 0, 100 * n + 10_000
        while len(out) < n:
            if drawn >= budget:
                raise RuntimeError(
                    f"task {self.name!r}: found only {len(out)} of {n} new distinct examples "
                    f"after {drawn} random draws ({len(seen)} distinct in all, the task has "
                    f"{self.n_sources}); ask splits for fewer examples"
                )
            chunk = max(2 * (n - len(out)), 64)
            drawn += chunk
            for pair in self.generate(chunk, rng):
                if pair[key] in seen:
                    continue
                if stratum is not None:
                    group, size = stratum(pair)
                    if taken.get(group, 0) >= size // 2:
                        continue
                    taken[group] = taken.get(group, 0) + 1
                seen.add(pair[key])
                out.append(pair)
                if len(out) == n:
                    break
        return out

    # -- encoding helpers, the convention of this module in one place --------------------------
    def encode_source(self, text: str) -> list[int]:
        """Source ids as the encoder reads them: the symbols, then ``<eos>``."""
        return self.src_vocab.encode(text, add_eos=True)

    def encode_target(self, text: str) -> list[int]:
        """Target ids as the decoder is trained on them: ``<bos>``, the symbols, ``<eos>``."""
        return self.tgt_vocab.encode(text, add_bos=True, add_eos=True)

    def decode_target(self, ids: Iterable[int] | np.ndarray) -> str:
        """Text of generated target ids (stops at ``<eos>``; ``<bos>``/``<pad>`` skipped)."""
        return self.tgt_vocab.decode(ids)
