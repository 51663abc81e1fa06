"""Greedy decoding: the most likely next token at every step."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import numpy as np

from ..backend import asarray, to_numpy
from ..checks import ids_checked_on_host
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

    On a device (CuPy) the log-probabilities and their argmax stay there: a step moves only the
    chosen ids to the host (one transfer of ``n_alive`` integers), which decide the rows that go
    on. The source ids and ``bos_id`` are checked on the device once, at the first step; later
    steps feed the model its own argmaxes, which lie in its vocabulary, and are not checked again.
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
            # from the second step on, the tokens fed are argmaxes over the model's vocabulary
            with ids_checked_on_host() if t > 0 else nullcontext():
                if steps is not None:
                    logp = steps.next_log_probs(ys[:, -1:], kept, on_device=True)
                else:
                    sel = asarray(alive)
                    logp = _next_log_probs(
                        model, ys, memory[sel], src_mask[sel], never, on_device=True
                    )
            nxt = to_numpy(logp.argmax(axis=-1))  # (n_alive,) the step's one transfer
            out[alive, t] = nxt
            length = t + 1
            running = nxt != eos_id
            ys = np.concatenate([ys, nxt[:, None]], axis=1)[running]
            alive = alive[running]
            kept = np.flatnonzero(running)
            if alive.size == 0:
                break
    return out[:, :length]
