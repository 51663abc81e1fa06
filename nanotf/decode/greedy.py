"""Greedy decoding: the most likely next token at every step."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import asarray
from ..text.specials import BOS_ID, EOS_ID, PAD_ID
from .common import Seq2SeqModel, _check_inputs, _eval_mode
from .steps import _cached, _CachedSteps, _next_log_probs


def greedy_decode(
    model: Seq2SeqModel,
    src: Any,
    src_mask: Any,
    max_len: int,
    bos_id: int = BOS_ID,
    eos_id: int = EOS_ID,
    pad_id: int = PAD_ID,
    use_cache: bool = True,
) -> np.ndarray:
    """Pick the most likely next token at every step: ``y_t = argmax_v logits(y_<t, x)[v]``.

    ``src`` (B, S) ids and ``src_mask`` (B, S) bool (True = real token; None derives it from
    ``pad_id``). Stops a row at ``<eos>`` or after ``max_len`` generated tokens. Returns a host
    ``int64`` array (B, L ≤ max_len) of the ids after ``<bos>`` (``<eos>`` included, ``pad_id``
    after it). Runs in eval mode (no dropout); the model's mode is restored afterwards.
    ``use_cache`` (default) decodes with a key/value cache; False recomputes the prefix at
    every step (the reference: same ids, log-probabilities equal to round-off).
    """
    src, src_mask = _check_inputs(src, src_mask, max_len)
    b = int(src.shape[0])
    never = (pad_id, bos_id)
    with _eval_mode(model):
        memory = model.encode(src, src_mask)  # (B, S, C), computed once
        steps = _CachedSteps(model, memory, src_mask, never) if _cached(model, use_cache) else None
        ys = np.full((b, 1), bos_id, dtype=np.int64)
        out = np.full((b, max_len), pad_id, dtype=np.int64)
        alive = np.arange(b)  # rows still decoding
        kept = None  # the rows of the previous step that are still decoding (cached path)
        length = 0
        for t in range(max_len):
            if steps is not None:
                logp = steps.next_log_probs(ys[:, -1:], kept)
            else:
                sel = asarray(alive)
                logp = _next_log_probs(model, ys, memory[sel], src_mask[sel], never)
            nxt = logp.argmax(axis=-1)  # (n_alive,)
            out[alive, t] = nxt
            length = t + 1
            running = nxt != eos_id
            ys = np.concatenate([ys, nxt[:, None]], axis=1)[running]
            alive = alive[running]
            kept = np.flatnonzero(running)
            if alive.size == 0:
                break
    return out[:, :length]
