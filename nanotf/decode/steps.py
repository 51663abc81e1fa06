"""One decoding step: next-token log-probabilities, from the whole prefix or a key/value cache."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import asarray, to_numpy
from ..nn import DecoderCache
from ..text.specials import PAD_ID
from .common import Seq2SeqModel, _log_softmax


def _last_log_probs(logits: Any, never: tuple[int, ...], on_device: bool) -> Any:
    """``log softmax`` (float64) of the last position of ``logits`` (B, t, V), with the tokens
    ``never`` set to -inf afterwards: on the host (one transfer of (B, V) logits), or left on
    the logits' device (no transfer; the same values)."""
    last = logits[:, -1, :]  # (B, V)
    logp = _log_softmax(last if on_device else to_numpy(last))
    logp[:, list(never)] = -np.inf
    return logp


def _next_log_probs(
    model: Seq2SeqModel,
    ys: np.ndarray,
    memory: Any,
    src_mask: Any,
    never: tuple[int, ...],
    on_device: bool = False,
) -> Any:
    """Run the decoder on the whole prefix ``ys`` (B, t) and return the host log-probabilities
    of the next token, (B, V) float64, with the tokens ``never`` (``<pad>``, ``<bos>``) set to
    -inf afterwards (not renormalised: scores stay the model's log-probabilities); with
    ``on_device``, the same values left on the model's device.
    (Recomputes the prefix: no key/value cache.)"""
    ys_dev = asarray(ys)
    logits = model.decode(ys_dev, memory, src_mask, ys_dev != PAD_ID)  # (B, t, V)
    return _last_log_probs(logits, never, on_device)


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

    def next_log_probs(
        self, last: np.ndarray, parents: np.ndarray | None, on_device: bool = False
    ) -> Any:
        """``last`` (n, 1) the newest token of each row -> (n, V) float64 host log-probabilities
        of the next token, as ``_next_log_probs`` computes them from the whole prefix (left on
        the device with ``on_device``)."""
        if parents is not None and not (
            parents.size == self.cache.batch and (parents == np.arange(parents.size)).all()
        ):
            self.cache.reorder(asarray(parents))
        tok = asarray(last)
        logits = self.model.decode_step(tok, self.memory, self.cache, self.src_mask, tok != PAD_ID)
        self.memory = self.src_mask = None  # in the cache now
        return _last_log_probs(logits, self.never, on_device)


def _cached(model: Seq2SeqModel, use_cache: bool) -> bool:
    """Whether to decode with a key/value cache: asked for, and the model has ``decode_step``."""
    return bool(use_cache) and callable(getattr(model, "decode_step", None))
