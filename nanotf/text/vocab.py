"""Vocabularies of the toy tasks: text to integer ids and back, at character or word level.

A :class:`Vocab` has the special tokens first (ids 0-3, :mod:`nanotf.text.specials`) and the
task's symbols after them. A vocabulary is character-level (``"abc"`` -> 3 tokens) or
word-level (whitespace split).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

import numpy as np

from .specials import BOS_ID, EOS_ID, PAD_ID, SPECIAL_TOKENS, UNK_ID

__all__ = ["Level", "UnkPolicy", "Vocab"]

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
