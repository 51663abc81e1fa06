"""The vocabulary side of BERT's WordPiece tokenizer: token <-> id tables and special tokens.

A BERT vocabulary is a ``vocab.txt`` file with one token per line; the line number (from 0) is
the token's id (:func:`load_vocab`). :class:`WordPieceVocab` holds the two look-up tables and
the five special tokens every BERT vocabulary contains (``[PAD]``, ``[UNK]``, ``[CLS]``,
``[SEP]``, ``[MASK]``); :class:`~nanotf.text.wordpiece.WordPieceTokenizer` builds on it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["SPECIAL_TOKEN_ROLES", "WordPieceVocab", "check_vocab", "load_vocab"]

#: The special tokens every BERT vocabulary must contain, by role.
SPECIAL_TOKEN_ROLES = ("pad_token", "unk_token", "cls_token", "sep_token", "mask_token")


def load_vocab(path: str | os.PathLike[str]) -> dict[str, int]:
    """Read a ``vocab.txt``: token on line ``i`` (from 0) gets id ``i``."""
    vocab: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for index, line in enumerate(f):
            vocab[line.rstrip("\n")] = index
    return vocab


def check_vocab(vocab: object) -> None:
    """Raise unless ``vocab`` is a non-empty mapping token -> id."""
    if not isinstance(vocab, Mapping):
        raise TypeError(f"vocab must be a mapping token -> id, got {type(vocab).__name__}")
    if not vocab:
        raise ValueError("vocab is empty")


class WordPieceVocab:
    """Token -> id (``vocab``) and id -> token (``ids_to_tokens``) tables of a BERT vocabulary,
    with its special tokens (all five must be in ``vocab``) and their ids."""

    def __init__(
        self,
        vocab: Mapping[str, int],
        *,
        unk_token: str = "[UNK]",
        cls_token: str = "[CLS]",
        sep_token: str = "[SEP]",
        pad_token: str = "[PAD]",
        mask_token: str = "[MASK]",
    ) -> None:
        check_vocab(vocab)
        self.vocab: dict[str, int] = dict(vocab)
        self.ids_to_tokens: dict[int, str] = {}
        for token, index in self.vocab.items():
            self.ids_to_tokens.setdefault(int(index), token)

        self.unk_token, self.cls_token, self.sep_token = unk_token, cls_token, sep_token
        self.pad_token, self.mask_token = pad_token, mask_token
        special = {role: getattr(self, role) for role in SPECIAL_TOKEN_ROLES}
        missing = [f"{role}={tok!r}" for role, tok in special.items() if tok not in self.vocab]
        if missing:
            raise ValueError(
                "the vocabulary lacks the special token(s) "
                + ", ".join(missing)
                + "; a BERT vocabulary must contain all of "
                + ", ".join(repr(t) for t in special.values())
            )
        self.special_tokens: tuple[str, ...] = tuple(dict.fromkeys([*special.values()]))
        self._special_ids = frozenset(self.vocab[t] for t in self.special_tokens)

    @property
    def vocab_size(self) -> int:
        """The number of ids (the size of the model's embedding table)."""
        return max(len(self.vocab), max(self.ids_to_tokens) + 1)

    def __len__(self) -> int:
        return self.vocab_size

    @property
    def pad_token_id(self) -> int:
        return self.vocab[self.pad_token]

    @property
    def unk_token_id(self) -> int:
        return self.vocab[self.unk_token]

    @property
    def cls_token_id(self) -> int:
        return self.vocab[self.cls_token]

    @property
    def sep_token_id(self) -> int:
        return self.vocab[self.sep_token]

    @property
    def mask_token_id(self) -> int:
        return self.vocab[self.mask_token]

    def get_vocab(self) -> dict[str, int]:
        """A copy of the token -> id mapping."""
        return dict(self.vocab)

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | list[int]:
        """Look tokens up; a token not in the vocabulary gets the ``[UNK]`` id."""
        if isinstance(tokens, str):
            return self.vocab.get(tokens, self.unk_token_id)
        if not isinstance(tokens, Sequence):
            raise TypeError(
                f"tokens must be a str or a sequence of str, got {type(tokens).__name__}"
            )
        return [self.vocab.get(_check_str(t, "token"), self.unk_token_id) for t in tokens]

    def convert_ids_to_tokens(self, ids: int | Sequence[int]) -> str | list[str]:
        """Look ids up; an id outside the vocabulary is an error."""
        if isinstance(ids, (int, np.integer)):
            return self._id_to_token(int(ids))
        if not isinstance(ids, (Sequence, np.ndarray)):
            raise TypeError(f"ids must be an int or a sequence of int, got {type(ids).__name__}")
        return [self._id_to_token(int(i)) for i in ids]

    def _id_to_token(self, index: int) -> str:
        try:
            return self.ids_to_tokens[index]
        except KeyError:
            raise ValueError(
                f"token id {index} is not in the vocabulary (ids run 0..{self.vocab_size - 1})"
            ) from None


def _check_str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {type(value).__name__}: {value!r:.60}")
    return value
