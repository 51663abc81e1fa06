"""One decoding step: next-token log-probabilities, from the whole prefix or a key/value cache."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import asarray, to_numpy
from ..nn import DecoderCache
from ..text.specials import PAD_ID
from .common import Seq2SeqModel, _log_softmax


def _next_log_probs(
    model: Seq2SeqModel, ys: np.ndarray, memory: Any, src_mask: Any, never: tuple[int, ...]
) -> np.ndarray:
    """Run the decoder on the whole prefix ``ys`` (B, t) and return the host log-probabilities
    of the next token, (B, V) float64, with the tokens ``never`` (``<pad>``, ``<bos>``) set to
    -inf afterwards (not renormalised: scores stay the model's log-probabilities).
    (Recomputes the prefix: no key/value cache.)"""
    ys_dev = asarray(ys)
    logits = model.decode(ys_dev, memory, src_mask, ys_dev != PAD_ID)  # (B, t, V)
    logp = _log_softmax(to_numpy(logits[:, -1, :]))
    logp[:, list(never)] = -np.inf
    return logp


class _CachedSteps:
    """Incremental decoding with a key/value cache: each step feeds only the newest token of
    every row (``model.decode_step``); the earlier positions are read from the cache.

    ``memory`` and ``src_mask`` are the rows of the first step (one per row decoded); after the
    first step they live in the cache. Before each later step, ``parents`` (host ints) says for
    every row which row of the previous step it continues (beams picked, finished rows dropped).
    """

    def __init__(self, model: Any, memory: Any, src_mask: Any, never: tuple[int, ...]) -> None:
        self.model, self.memory, self.src_mask, self.never = model, memory, src_mask, never
        self.cache = DecoderCache()

    def next_log_probs(self, last: np.ndarray, parents: np.ndarray | None) -> np.ndarray:
        """``last`` (n, 1) the newest token of each row -> (n, V) float64 host log-probabilities
        of the next token, as ``_next_log_probs`` computes them from the whole prefix."""
        if parents is not None and not (
            parents.size == self.cache.batch and (parents == np.arange(parents.size)).all()
        ):
            self.cache.reorder(asarray(parents))
        tok = asarray(last)
        logits = self.model.decode_step(tok, self.memory, self.cache, self.src_mask, tok != PAD_ID)
        self.memory = self.src_mask = None  # in the cache now
        logp = _log_softmax(to_numpy(logits[:, -1, :]))
        logp[:, list(self.never)] = -np.inf
        return logp


def _cached(model: Seq2SeqModel, use_cache: bool) -> bool:
    """Whether to decode with a key/value cache: asked for, and the model has ``decode_step``."""
    return bool(use_cache) and callable(getattr(model, "decode_step", None))
