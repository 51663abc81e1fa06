"""Toy sequence-to-sequence tasks for training the encoder–decoder Transformer, made on the host.

Nothing is downloaded: every example is generated from a seed with ``numpy.random.Generator``,
so the same seed always gives the same data. Data is made here with NumPy on the CPU; the training
loop moves each :class:`Batch` to the device (``batch.to_backend()``) when it needs it.

Three pieces, bottom to top:

1. :class:`Vocab` turns text into integer ids and back. Ids 0-3 are always the special tokens
   ``<pad>`` (0), ``<bos>`` (1), ``<eos>`` (2) and ``<unk>`` (3); the task's symbols follow.
   A vocabulary is character-level (``"abc"`` -> 3 tokens) or word-level (whitespace split).

2. A :class:`Task` generates ``(source, target)`` text pairs. :func:`get_task` builds one by name
   (see :data:`TASKS`):

   =========  ==================================  ==========================
   name       source                              target
   =========  ==================================  ==========================
   copy       ``"cabjj"``                         ``"cabjj"``
   reverse    ``"cabjj"``                         ``"jjbac"``
   sort       ``"cabjj"``                         ``"abcjj"``
   numbers    ``"three hundred forty-two"``       ``"342"``
   dates      ``"march 5, 1999"``                 ``"1999-03-05"``
   =========  ==================================  ==========================

   ``task.splits(n_train, n_heldout, seed)`` gives a training set and a held-out set whose
   sources never occur in the training set, so held-out accuracy measures generalisation, not
   memory. How many it can give is bounded, and checked before anything is drawn
   (:meth:`Task.check_split`): by what the task has, and by :data:`MAX_SPLIT_PAIRS` in all.

3. :func:`make_batch` / :func:`batches` turn pairs into padded integer arrays. The layout of one
   example (``.`` is ``<pad>``)::

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

import datetime
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

__all__ = [
    "BOS_ID",
    "EOS_ID",
    "MAX_SPLIT_PAIRS",
    "MAX_STRING_LEN",
    "PAD_ID",
    "SPECIAL_TOKENS",
    "TASKS",
    "UNK_ID",
    "Batch",
    "Task",
    "Vocab",
    "batches",
    "copy_task",
    "date_to_text",
    "dates_task",
    "get_task",
    "make_batch",
    "number_to_words",
    "numbers_task",
    "reverse_task",
    "sort_task",
]

# ----------------------------------------------------------------------------------------------
# Vocabulary
# ----------------------------------------------------------------------------------------------

PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
SPECIAL_TOKENS: tuple[str, ...] = ("<pad>", "<bos>", "<eos>", "<unk>")

Level = Literal["char", "word"]
UnkPolicy = Literal["raise", "map"]

_MAX_SHOWN = 20  # how many allowed symbols an error message lists before abbreviating


def _abbreviate(items: Sequence[str], limit: int = _MAX_SHOWN) -> str:
    """``'a', 'b', ... (+ 12 more)``: a list short enough for an error message."""
    shown = ", ".join(repr(s) for s in items[:limit])
    if len(items) > limit:
        shown += f", ... (+{len(items) - limit} more)"
    return shown


class Vocab:
    """A fixed vocabulary: special tokens first (``<pad>``=0, ``<bos>``=1, ``<eos>``=2,
    ``<unk>``=3), then ``symbols`` in the order given.

    ``level="char"`` treats every character as a token (each symbol must be one character, and
    ``" "`` may be one of them); ``level="word"`` splits text on whitespace (symbols are words
    without whitespace) and :meth:`decode` joins words with one space.

    Text with a symbol outside the vocabulary raises a ``ValueError`` naming the symbol, its
    position and the allowed symbols, unless ``unk="map"`` (here or in :meth:`encode`), which
    maps it to ``<unk>`` instead. Raising is the default: in a toy task an unknown symbol is a
    bug, not a rare word (and a model trained on a toy task has never seen ``<unk>``).

    >>> v = Vocab("abc")
    >>> v.encode("cab", add_bos=True, add_eos=True)
    [1, 6, 4, 5, 2]
    >>> v.decode([1, 6, 4, 5, 2, 0, 0])
    'cab'
    """

    def __init__(
        self, symbols: Iterable[str], level: Level = "char", unk: UnkPolicy = "raise"
    ) -> None:
        if level not in ("char", "word"):
            raise ValueError(f"level must be 'char' or 'word', got {level!r}")
        if unk not in ("raise", "map"):
            raise ValueError(f"unk must be 'raise' or 'map', got {unk!r}")
        if isinstance(symbols, str) and level == "word":
            raise TypeError(
                "a word-level Vocab needs a list of words, got the string "
                f"{symbols[:40]!r}; did you mean symbols={symbols.split()!r}?"
            )
        syms = tuple(symbols)
        if not syms:
            raise ValueError("a Vocab needs at least one symbol besides the special tokens")
        seen: set[str] = set()
        for i, s in enumerate(syms):
            if not isinstance(s, str):
                raise TypeError(f"symbol {i} must be a str, got {type(s).__name__} ({s!r})")
            if s in SPECIAL_TOKENS:
                raise ValueError(f"symbol {s!r} is a special token; the Vocab adds those itself")
            if s in seen:
                raise ValueError(f"symbol {s!r} appears more than once in the vocabulary")
            seen.add(s)
            if level == "char" and len(s) != 1:
                raise ValueError(
                    f"a char-level Vocab needs one-character symbols, got {s!r} (symbol {i})"
                )
            if level == "word" and (not s or any(c.isspace() for c in s)):
                raise ValueError(
                    f"word-level symbols must be non-empty and contain no whitespace, "
                    f"got {s!r} (symbol {i})"
                )
        self.symbols: tuple[str, ...] = syms
        self.level: Level = level
        self.unk: UnkPolicy = unk
        self.tokens: tuple[str, ...] = SPECIAL_TOKENS + syms
        self._ids: dict[str, int] = {t: i for i, t in enumerate(self.tokens)}
        # Text is looked up among the symbols only: a word spelled "<eos>" is not the <eos> token.
        self._symbol_ids: dict[str, int] = {s: i for i, s in enumerate(syms, len(SPECIAL_TOKENS))}

    # -- the special ids, by name --------------------------------------------------------------
    @property
    def pad_id(self) -> int:
        return PAD_ID

    @property
    def bos_id(self) -> int:
        return BOS_ID

    @property
    def eos_id(self) -> int:
        return EOS_ID

    @property
    def unk_id(self) -> int:
        return UNK_ID

    def __len__(self) -> int:
        """Number of tokens, special tokens included (the size of the embedding table)."""
        return len(self.tokens)

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._ids

    def token_to_id(self, token: str) -> int:
        """The id of one token (a symbol or a special token such as ``"<eos>"``)."""
        try:
            return self._ids[token]
        except KeyError:
            raise KeyError(
                f"{token!r} is not in the vocabulary (allowed: {_abbreviate(self.tokens)})"
            ) from None

    def id_to_token(self, i: int) -> str:
        """The token with id ``i``."""
        if not 0 <= int(i) < len(self.tokens):
            raise ValueError(f"id {i} is out of range for a vocabulary of {len(self)} tokens")
        return self.tokens[int(i)]

    # -- text <-> ids --------------------------------------------------------------------------
    def split(self, text: str) -> list[str]:
        """Cut text into symbols: its characters (char level) or ``text.split()`` (word level)."""
        if not isinstance(text, str):
            raise TypeError(f"expected text as a str, got {type(text).__name__}")
        return list(text) if self.level == "char" else text.split()

    def encode(
        self,
        text: str,
        add_bos: bool = False,
        add_eos: bool = False,
        unk: UnkPolicy | None = None,
    ) -> list[int]:
        """Token ids of ``text``, optionally wrapped in ``<bos>`` ... ``<eos>``.

        ``unk`` overrides the vocabulary's policy for this call: ``"raise"`` (a ValueError that
        names every unknown symbol and its position) or ``"map"`` (unknown -> ``<unk>``).
        """
        policy = self.unk if unk is None else unk
        if policy not in ("raise", "map"):
            raise ValueError(f"unk must be 'raise' or 'map', got {policy!r}")
        pieces = self.split(text)
        ids = [self._symbol_ids.get(p, UNK_ID) for p in pieces]
        if policy == "raise":
            bad = [
                (pos, p) for pos, (p, i) in enumerate(zip(pieces, ids, strict=True)) if i == UNK_ID
            ]
            if bad:
                raise ValueError(self._unknown_message(text, bad))
        if add_bos:
            ids.insert(0, BOS_ID)
        if add_eos:
            ids.append(EOS_ID)
        return ids

    def _unknown_message(self, text: str, bad: list[tuple[int, str]]) -> str:
        unit = "character" if self.level == "char" else "word"
        found = ", ".join(f"{p!r} at position {pos}" for pos, p in bad[:5])
        if len(bad) > 5:
            found += f", ... ({len(bad)} in all)"
        shown = text if len(text) <= 60 else text[:57] + "..."
        return (
            f"cannot encode {shown!r}: unknown {unit}{'s' if len(bad) > 1 else ''} {found} "
            f"({unit} positions count from 0). This {self.level}-level vocabulary allows "
            f"{len(self.symbols)} symbols: {_abbreviate(self.symbols)}"
        )

    def decode(self, ids: Iterable[int] | np.ndarray, stop_at_eos: bool = True) -> str:
        """Text of a sequence of ids: stops at the first ``<eos>``, skips ``<pad>`` and
        ``<bos>``, writes ``<unk>`` as ``"<unk>"``, and joins with ``""`` (char) or ``" "``
        (word). Accepts a list or a 1-D array (move device arrays to the host first)."""
        if isinstance(ids, np.ndarray):
            if ids.ndim != 1:
                raise ValueError(f"decode expects a 1-D sequence of ids, got shape {ids.shape}")
            ids = ids.tolist()
        out: list[str] = []
        n = len(self.tokens)
        for i in ids:
            i = int(i)
            if not 0 <= i < n:
                raise ValueError(f"id {i} is out of range for a vocabulary of {n} tokens")
            if i == EOS_ID and stop_at_eos:
                break
            if i in (PAD_ID, BOS_ID, EOS_ID):
                continue
            out.append(self.tokens[i])
        return ("" if self.level == "char" else " ").join(out)

    # -- checkpoints ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description, enough to rebuild the same ids with :meth:`from_dict`."""
        return {
            "level": self.level,
            "specials": list(SPECIAL_TOKENS),
            "symbols": list(self.symbols),
            "unk": self.unk,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Vocab:
        """Rebuild a vocabulary saved with :meth:`to_dict` (e.g. from a checkpoint's JSON)."""
        if not isinstance(d, dict) or "symbols" not in d or "level" not in d:
            raise ValueError(
                "a Vocab dict needs the keys 'symbols' and 'level' (as written by to_dict), "
                f"got {sorted(d) if isinstance(d, dict) else type(d).__name__}"
            )
        specials = d.get("specials", list(SPECIAL_TOKENS))
        if list(specials) != list(SPECIAL_TOKENS):
            raise ValueError(
                f"this Vocab dict has special tokens {specials!r}; nanotf expects "
                f"{list(SPECIAL_TOKENS)!r} with ids 0-3"
            )
        return cls(d["symbols"], level=d["level"], unk=d.get("unk", "raise"))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocab):
            return NotImplemented
        return (self.level, self.symbols, self.unk) == (other.level, other.symbols, other.unk)

    def __hash__(self) -> int:
        return hash((self.level, self.symbols, self.unk))

    def __repr__(self) -> str:
        return (
            f"Vocab({len(self)} tokens, level={self.level!r}, "
            f"symbols=[{_abbreviate(self.symbols, 12)}])"
        )


# ----------------------------------------------------------------------------------------------
# Tasks
# ----------------------------------------------------------------------------------------------

Pair = tuple[str, str]
RngLike = np.random.Generator | int


def _as_generator(rng: RngLike) -> np.random.Generator:
    """Accept a ``numpy.random.Generator`` or an integer seed."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool) and rng >= 0:
        return np.random.default_rng(int(rng))
    raise TypeError(
        "rng must be a numpy.random.Generator or a non-negative integer seed, "
        f"got {type(rng).__name__} ({rng!r})"
    )


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
        return self.generate(n, _as_generator(rng)) if n else []

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


# -- copy / reverse / sort ---------------------------------------------------------------------

DEFAULT_ALPHABET = "abcdefghij"
#: The longest strings copy/reverse/sort make. Attention costs memory ∝ length²: a batch of 64
#: strings of 256 symbols already holds ~70 MB per attention map.
MAX_STRING_LEN = 256


def _digits_stratum(pair: Pair) -> tuple[int, int]:
    """Numbers grouped by their count of digits d: ten of one digit, 9 * 10**(d-1) of more."""
    d = len(pair[1])
    return d, 10 if d == 1 else 9 * 10 ** (d - 1)


def _string_task(
    name: str,
    transform: Callable[[str], str],
    what: str,
    alphabet: str,
    min_len: int,
    max_len: int,
) -> Task:
    if not isinstance(alphabet, str) or len(set(alphabet)) != len(alphabet) or not alphabet:
        raise ValueError(
            f"alphabet must be a non-empty string of distinct characters, got {alphabet!r}"
        )
    if not (isinstance(min_len, int) and isinstance(max_len, int) and 1 <= min_len <= max_len):
        raise ValueError(f"need integers 1 <= min_len <= max_len, got {min_len}, {max_len}")
    if max_len > MAX_STRING_LEN:
        raise ValueError(f"max_len must be at most {MAX_STRING_LEN}, got {max_len}")
    letters = np.array(list(alphabet))

    def generate(n: int, rng: np.random.Generator) -> list[Pair]:
        lengths = rng.integers(min_len, max_len + 1, size=n)
        chars = letters[rng.integers(0, len(alphabet), size=(n, max_len))]
        srcs = ["".join(row[:k]) for row, k in zip(chars.tolist(), lengths.tolist(), strict=True)]
        return [(s, transform(s)) for s in srcs]

    vocab = Vocab(alphabet, level="char")
    example = "cabjj" if set("abcj") <= set(alphabet) else alphabet[::-1][:max_len]
    return Task(
        name=name,
        description=(
            f"{what}: random strings over {alphabet!r}, {min_len}-{max_len} characters "
            f"(length uniform, then characters uniform); e.g. {example!r} -> "
            f"{transform(example)!r}"
        ),
        src_vocab=vocab,
        tgt_vocab=vocab,
        max_src_len=max_len + 1,
        max_tgt_len=max_len + 2,
        generate=generate,
        n_sources=sum(len(alphabet) ** k for k in range(min_len, max_len + 1)),
        stratum=lambda pair: (len(pair[0]), len(alphabet) ** len(pair[0])),
        heldout_capacity=sum(len(alphabet) ** k // 2 for k in range(min_len, max_len + 1)),
    )


def copy_task(alphabet: str = DEFAULT_ALPHABET, min_len: int = 1, max_len: int = 10) -> Task:
    """``copy``: the target is the source. The simplest test that attention can point."""
    return _string_task("copy", lambda s: s, "copy the string", alphabet, min_len, max_len)


def reverse_task(alphabet: str = DEFAULT_ALPHABET, min_len: int = 1, max_len: int = 10) -> Task:
    """``reverse``: the target is the source backwards (output step t looks at input n-1-t)."""
    return _string_task(
        "reverse", lambda s: s[::-1], "reverse the string", alphabet, min_len, max_len
    )


def sort_task(alphabet: str = DEFAULT_ALPHABET, min_len: int = 1, max_len: int = 10) -> Task:
    """``sort``: the target is the source's characters in alphabet order (counting, not
    pointing: the attention must find the smallest remaining characters)."""
    order = {c: i for i, c in enumerate(alphabet)}
    return _string_task(
        "sort",
        lambda s: "".join(sorted(s, key=order.__getitem__)),
        "sort the characters (in alphabet order)",
        alphabet,
        min_len,
        max_len,
    )


# -- numbers -----------------------------------------------------------------------------------

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()  # 20, 30, ..., 90


def _below_100(n: int) -> str:
    if n < 20:
        return _ONES[n]
    tens, ones = divmod(n, 10)
    return _TENS[tens - 2] + (f"-{_ONES[ones]}" if ones else "")


def _below_1000(n: int) -> str:
    hundreds, rest = divmod(n, 100)
    if not hundreds:
        return _below_100(rest)
    return f"{_ONES[hundreds]} hundred" + (f" {_below_100(rest)}" if rest else "")


def number_to_words(n: int) -> str:
    """English words for ``0 <= n <= 999_999``, in the style of the ``numbers`` task.

    American style: no "and", no commas; 21-99 are hyphenated ("forty-two") and each such
    compound is *one* word of the vocabulary.

    >>> number_to_words(342)
    'three hundred forty-two'
    >>> number_to_words(1205)
    'one thousand two hundred five'
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 <= n <= 999_999:
        raise ValueError(f"number_to_words needs an integer in 0..999999, got {n!r}")
    thousands, rest = divmod(int(n), 1000)
    if not thousands:
        return _below_1000(rest)
    return f"{_below_1000(thousands)} thousand" + (f" {_below_1000(rest)}" if rest else "")


_NUMBER_WORDS = (
    _ONES
    + [_below_100(n) for n in range(20, 100)]  # twenty, twenty-one, ..., ninety-nine
    + ["hundred", "thousand"]
)


def numbers_task() -> Task:
    """``numbers``: English number words -> digits, 0..999999.

    Source: word level over 102 words (zero..nineteen, twenty..ninety, the 72 hyphenated
    compounds twenty-one..ninety-nine, hundred, thousand). Target: char level over the digits.

    Numbers are drawn by first choosing how many digits (1-6, uniform) and then a number with
    that many digits, so small numbers are as common as large ones (uniform over 0..999999
    would make 90% of them six-digit numbers).
    """
    digits_lo = np.array([0, 10, 100, 1_000, 10_000, 100_000])
    digits_hi = np.array([10, 100, 1_000, 10_000, 100_000, 1_000_000])

    def generate(n: int, rng: np.random.Generator) -> list[Pair]:
        k = rng.integers(0, 6, size=n)
        values = rng.integers(digits_lo[k], digits_hi[k])
        return [(number_to_words(v), str(v)) for v in values.tolist()]

    longest_below_1000 = max(len(_below_1000(n).split()) for n in range(1000))  # 3
    return Task(
        name="numbers",
        description=(
            "English number words to digits, 0..999999 (American style, no 'and', hyphenated "
            "21-99 as single words); e.g. 'three hundred forty-two' -> '342', "
            "'one thousand two hundred five' -> '1205'"
        ),
        src_vocab=Vocab(_NUMBER_WORDS, level="word"),
        tgt_vocab=Vocab("0123456789", level="char"),
        max_src_len=2 * longest_below_1000 + 1 + 1,  # "... thousand ..." + <eos>
        max_tgt_len=6 + 2,
        generate=generate,
        n_sources=1_000_000,
        stratum=lambda pair: _digits_stratum(pair),
        heldout_capacity=sum(_digits_stratum(("", "9" * d))[1] // 2 for d in range(1, 7)),
    )


# -- dates -------------------------------------------------------------------------------------

_MONTHS = (
    "january february march april may june july august september october november december"
).split()
_WEEKDAYS = "monday tuesday wednesday thursday friday saturday sunday".split()  # date.weekday()

#: The source formats of the ``dates`` task (all unambiguous: the month is always a word).
DATE_FORMATS: tuple[str, ...] = (
    "{month} {day}, {year}",  # march 5, 1999
    "{day} {month} {year}",  # 5 march 1999
    "{weekday}, {month} {day}, {year}",  # friday, march 5, 1999
)
FIRST_DATE = datetime.date(1900, 1, 1)
LAST_DATE = datetime.date(2099, 12, 31)


def date_to_text(d: datetime.date, style: int) -> str:
    """``d`` written in ``DATE_FORMATS[style]``: lower case, English, day without a leading zero.

    >>> date_to_text(datetime.date(1999, 3, 5), 2)
    'friday, march 5, 1999'
    """
    if not 0 <= style < len(DATE_FORMATS):
        raise ValueError(f"style must be in 0..{len(DATE_FORMATS) - 1}, got {style!r}")
    return DATE_FORMATS[style].format(
        month=_MONTHS[d.month - 1], day=d.day, year=d.year, weekday=_WEEKDAYS[d.weekday()]
    )


def dates_task() -> Task:
    """``dates``: a date written out in English -> ISO 8601 (``YYYY-MM-DD``).

    Dates are uniform over 1900-01-01..2099-12-31 (so only real calendar days: 29 february
    only in leap years, and 1900 is not one), each written in one of three formats chosen
    uniformly (:data:`DATE_FORMATS`)::

        march 5, 1999             -> 1999-03-05
        5 march 1999              -> 1999-03-05
        friday, march 5, 1999     -> 1999-03-05   (the weekday is correct, and redundant)

    The source is char level (letters of the month and weekday names, digits, space, comma),
    so the model must learn to read "march" letter by letter. The target is char level over
    the digits and "-". Splits compare examples by their date, so a held-out day never occurs
    in training in any format.
    """
    first, last = FIRST_DATE.toordinal(), LAST_DATE.toordinal()

    def generate(n: int, rng: np.random.Generator) -> list[Pair]:
        ordinals = rng.integers(first, last + 1, size=n)
        styles = rng.integers(0, len(DATE_FORMATS), size=n)
        out = []
        for o, s in zip(ordinals.tolist(), styles.tolist(), strict=True):
            d = datetime.date.fromordinal(o)
            out.append((date_to_text(d, s), d.isoformat()))
        return out

    src_chars = sorted(set("".join(_MONTHS + _WEEKDAYS)) | set("0123456789 ,"))
    longest = max(
        len(f.format(month="september", day=30, year=1999, weekday="wednesday"))
        for f in DATE_FORMATS
    )  # "wednesday, september 30, 1999": 29 characters
    return Task(
        name="dates",
        description=(
            "dates written out in English to ISO 8601, 1900-2099, three formats; e.g. "
            "'march 5, 1999' / '5 march 1999' / 'friday, march 5, 1999' -> '1999-03-05'"
        ),
        src_vocab=Vocab(src_chars, level="char"),
        tgt_vocab=Vocab("0123456789-", level="char"),
        max_src_len=longest + 1,
        max_tgt_len=10 + 2,
        generate=generate,
        n_sources=last - first + 1,
        dedup_by="target",
    )


#: Every built-in task: name -> factory. ``get_task(name)`` calls the factory.
TASKS: dict[str, Callable[..., Task]] = {
    "copy": copy_task,
    "reverse": reverse_task,
    "sort": sort_task,
    "numbers": numbers_task,
    "dates": dates_task,
}


def get_task(name: str, **options: Any) -> Task:
    """The built-in task called ``name`` (one of :data:`TASKS`).

    Options go to its factory, e.g. ``get_task("copy", alphabet="0123456789", max_len=20)``.
    """
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; the known tasks are: {', '.join(TASKS)}")
    return TASKS[name](**options)


# ----------------------------------------------------------------------------------------------
# Batches
# ----------------------------------------------------------------------------------------------


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
        summed loss by this for a per-token mean."""
        return int(self.tgt_out_mask.sum())

    def __len__(self) -> int:
        """Number of examples in the batch (B)."""
        return int(self.src.shape[0])

    def to_backend(self) -> Batch:
        """The same batch with every array on the current backend's device
        (``nanotf.backend.asarray``: a no-op for NumPy, a host-to-GPU copy for CuPy)."""
        from .backend import asarray

        return Batch(
            asarray(self.src), asarray(self.tgt), asarray(self.src_mask), asarray(self.tgt_mask)
        )


def _pad(seqs: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Stack ragged id lists into (B, longest) int64 ids padded with PAD_ID, and the bool mask."""
    width = max(len(s) for s in seqs)
    ids = np.full((len(seqs), width), PAD_ID, dtype=np.int64)
    mask = np.zeros((len(seqs), width), dtype=bool)
    for row, s in enumerate(seqs):
        ids[row, : len(s)] = s
        mask[row, : len(s)] = True
    return ids, mask


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
        if not (
            isinstance(pair, (tuple, list))
            and len(pair) == 2
            and all(isinstance(t, str) for t in pair)
        ):
            raise TypeError(f"pair {i} must be a (source, target) tuple of two str, got {pair!r}")
        try:
            srcs.append(task.encode_source(pair[0]))
            tgts.append(task.encode_target(pair[1]))
        except ValueError as err:
            raise ValueError(f"pair {i} {tuple(pair)!r} of task {task.name!r}: {err}") from err
    src, src_mask = _pad(srcs)
    tgt, tgt_mask = _pad(tgts)
    return Batch(src=src, tgt=tgt, src_mask=src_mask, tgt_mask=tgt_mask)


def _default_shuffle_rng() -> np.random.Generator:
    """A host generator that follows ``nanotf.manual_seed``: the backend's own generator on
    NumPy, or a NumPy generator seeded from it on CuPy (shuffling is host-side work)."""
    from .backend import rng as backend_rng

    g = backend_rng()
    if isinstance(g, np.random.Generator):
        return g
    from .backend import to_numpy

    return np.random.default_rng(int(to_numpy(g.random(1))[0] * 2**52))


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
        gen = _default_shuffle_rng() if rng is None else _as_generator(rng)
        order = gen.permutation(len(pairs)).tolist()
    else:
        order = list(range(len(pairs)))
    stop = len(order) - len(order) % batch_size if drop_last else len(order)

    def epoch() -> Iterator[Batch]:
        for start in range(0, stop, batch_size):
            yield make_batch([pairs[i] for i in order[start : start + batch_size]], task)

    return epoch()
