"""The toy tasks as language modelling, for the decoder-only GPT: each ``(source, target)`` pair
is one sequence ``<bos> source = target <eos>``, and the model learns to continue a prompt.

The layout of one example (``.`` is ``<pad>``, ``-`` a label the loss ignores)::

    ids      <bos> a  b  c  =  c  b  a  <eos>  .     lm.sequence_ids("abc", "cba"), padded
    inputs   <bos> a  b  c  =  c  b  a  <eos>        ids[:, :-1]   what the model reads
    labels   -     -  -  -  c  b  a  <eos>  -        ids[:, 1:], the prompt's labels ignored

The loss counts only the continuation (the target and its ``<eos>``): the prompt is random and
cannot be predicted, so training on it would only add noise. At test time the model reads the
prompt ``<bos> a b c =`` (:meth:`LMTask.prompt_ids`) and generates until ``<eos>``; the
continuation is right when it equals the target exactly.

Sequences are padded on the right. A causal model never looks to the right, so the padding
changes nothing at the real positions and no attention mask is needed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import backend
from ..text.padding import pad_sequences
from ..text.specials import BOS_ID, EOS_ID, PAD_ID
from ..text.vocab import Vocab
from .base import Pair, Task, check_pair

__all__ = ["SEPARATOR", "LMBatch", "LMTask", "lm_batch"]

#: The token between the prompt and its continuation (``"abc=cba"``).
SEPARATOR = "="


@dataclass(frozen=True)
class LMTask:
    """A :class:`Task` read as one sequence per pair, over one vocabulary for both sides.

    ``vocab`` holds the specials, then the source's symbols, :data:`SEPARATOR`, and the target's
    symbols the source lacks. It is character-level when both sides are (``"abc=cba"``),
    word-level otherwise (``numbers``: ``"forty-two = 4 2"``, the digits as words).
    """

    task: Task
    vocab: Vocab = field(init=False, repr=False)

    def __post_init__(self) -> None:
        src, tgt = self.task.src_vocab, self.task.tgt_vocab
        symbols = list(src.tokens[4:])
        if SEPARATOR in symbols or SEPARATOR in tgt.tokens[4:]:
            raise ValueError(
                f"task {self.task.name!r} uses {SEPARATOR!r} as a symbol; a language-model "
                "sequence needs it as the separator between prompt and continuation"
            )
        symbols.append(SEPARATOR)
        symbols += [t for t in tgt.tokens[4:] if t not in symbols]
        level = "char" if src.level == tgt.level == "char" else "word"
        object.__setattr__(self, "vocab", Vocab(symbols, level=level))

    @property
    def name(self) -> str:
        return self.task.name

    @property
    def description(self) -> str:
        return f"{self.task.description}; as one sequence: source{SEPARATOR}target"

    @property
    def sep_id(self) -> int:
        return self.vocab.token_to_id(SEPARATOR)

    @property
    def max_prompt_len(self) -> int:
        """The longest prompt in tokens: ``<bos>``, the source, the separator."""
        return self.task.max_src_len + 1  # max_src_len counts the source's <eos>

    @property
    def max_continuation_len(self) -> int:
        """The longest continuation in tokens: the target and its ``<eos>``."""
        return self.task.max_tgt_len - 1  # max_tgt_len counts <bos> and <eos>

    @property
    def max_seq_len(self) -> int:
        """The longest whole sequence: prompt and continuation."""
        return self.max_prompt_len + self.max_continuation_len

    def _ids(self, text: str, side: Vocab) -> list[int]:
        side.encode(text)  # raises the vocabulary's clear error for an unknown symbol
        return [self.vocab.token_to_id(t) for t in side.split(text)]

    def prompt_ids(self, source: str) -> list[int]:
        """``<bos> source =``: what the model reads before it continues."""
        return [BOS_ID, *self._ids(source, self.task.src_vocab), self.sep_id]

    def sequence_ids(self, source: str, target: str) -> list[int]:
        """``<bos> source = target <eos>``: one training sequence."""
        return [
            *self.prompt_ids(source),
            *self._ids(target, self.task.tgt_vocab),
            EOS_ID,
        ]

    def continuation_text(self, ids: Iterable[int] | np.ndarray) -> str:
        """Text of generated ids after the prompt: up to the first ``<eos>``, written as the
        target side writes (characters joined, or words spaced)."""
        if isinstance(ids, np.ndarray):
            ids = ids.tolist()
        tokens = []
        for i in ids:
            i = int(i)
            if i == EOS_ID:
                break
            if i not in (PAD_ID, BOS_ID):
                tokens.append(self.vocab.id_to_token(i))
        return ("" if self.task.tgt_vocab.level == "char" else " ").join(tokens)


@dataclass(frozen=True)
class LMBatch:
    """A right-padded batch of sequences (NumPy int64 on the host until moved).

    ``ids`` (B, L): ``<bos> source = target <eos>``, padded with ``<pad>``; ``labels`` (B, L-1):
    the next token where it belongs to the continuation, ``<pad>`` (ignored) elsewhere.
    The model reads :attr:`inputs` and predicts ``labels``.
    """

    ids: Any
    labels: Any

    @property
    def inputs(self) -> Any:
        """What the model reads (B, L-1): ``ids`` without its last position."""
        return self.ids[:, :-1]

    @property
    def label_mask(self) -> Any:
        """(B, L-1) True where a label counts (the continuation's tokens)."""
        return self.labels != PAD_ID

    @property
    def n_tokens(self) -> int:
        """Number of labels the loss counts."""
        return int(self.label_mask.sum())

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def to_backend(self) -> LMBatch:
        """The same batch on the current backend's device."""
        return LMBatch(backend.asarray(self.ids), backend.asarray(self.labels))


def lm_batch(pairs: Sequence[Pair], lm: LMTask) -> LMBatch:
    """Encode ``(source, target)`` pairs as sequences, padded on the right to the longest."""
    pairs = list(pairs)
    if not pairs:
        raise ValueError("lm_batch needs at least one (source, target) pair, got none")
    seqs, prompt_lens = [], []
    for i, pair in enumerate(pairs):
        check_pair(i, pair)
        try:
            seqs.append(lm.sequence_ids(pair[0], pair[1]))
        except ValueError as err:
            raise ValueError(f"pair {i} {tuple(pair)!r} of task {lm.name!r}: {err}") from err
        prompt_lens.append(len(lm.prompt_ids(pair[0])))
    ids, real = pad_sequences(seqs, PAD_ID)  # (B, L)
    labels = ids[:, 1:].copy()  # (B, L-1): label t is token t + 1
    # a label counts from the first continuation token (position prompt_len - 1 predicts it)
    position = np.arange(labels.shape[1])[None, :]  # (1, L-1)
    labels[position < np.array(prompt_lens)[:, None] - 1] = PAD_ID
    labels[~real[:, 1:]] = PAD_ID
    return LMBatch(ids=ids, labels=labels)
