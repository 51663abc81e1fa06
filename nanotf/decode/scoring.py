"""Scoring outputs: GNMT's length penalty and the log-probability of given sequences."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import asarray, to_numpy
from ..text.specials import BOS_ID, EOS_ID, PAD_ID
from .common import Seq2SeqModel, _check_inputs, _eval_mode, _log_softmax


def length_penalty_factor(length: int, alpha: float) -> float:
    """GNMT's length penalty (Wu et al. 2016): ``lp(|Y|) = ((5 + |Y|) / 6) ** alpha``.

    A hypothesis is ranked by ``log P(Y | X) / lp(|Y|)``, ``|Y|`` counting the generated tokens
    (``<eos>`` included, ``<bos>`` not). ``alpha = 0`` ranks by the plain log-probability, which
    favours short outputs (every token multiplies in a probability < 1); ``alpha`` around
    0.6-1.0 evens that out.
    """
    return ((5.0 + length) / 6.0) ** alpha


def sequence_log_prob(
    model: Seq2SeqModel,
    src: Any,
    src_mask: Any,
    ids: Any,
    bos_id: int = BOS_ID,
    eos_id: int = EOS_ID,
    pad_id: int = PAD_ID,
) -> np.ndarray:
    """``log P(Y | X) = Σ_t log p(y_t | y_<t, X)`` of given outputs, by one teacher-forced pass.

    ``ids`` (B, L) are outputs as the decoders return them (after ``<bos>``; the tokens up to
    and including the first ``<eos>`` count, the rest is ignored). Returns (B,) float64 on the
    host. Divide by ``length_penalty_factor(len, alpha)`` to compare with beam search's scores.
    """
    ids = np.asarray(to_numpy(ids), dtype=np.int64)
    if ids.ndim != 2:
        raise ValueError(f"ids must be a 2-D array (batch, length), got shape {ids.shape}")
    src, src_mask = _check_inputs(src, src_mask, 1)
    b = ids.shape[0]
    # count a token if no <eos> came before it, and it is not padding
    before_eos = np.cumsum(ids == eos_id, axis=1) - (ids == eos_id) == 0
    counted = before_eos & (ids != pad_id)
    tgt_in = np.concatenate([np.full((b, 1), bos_id, dtype=np.int64), ids[:, :-1]], axis=1)
    reads = np.concatenate([np.ones((b, 1), dtype=bool), counted[:, :-1]], axis=1)
    tgt_in = np.where(reads, tgt_in, pad_id)
    with _eval_mode(model):
        memory = model.encode(src, src_mask)
        tgt_dev = asarray(tgt_in)
        logits = to_numpy(model.decode(tgt_dev, memory, src_mask, tgt_dev != pad_id))
    logp = _log_softmax(logits)  # (B, L, V)
    picked = np.take_along_axis(logp, ids[:, :, None], axis=-1)[:, :, 0]  # (B, L)
    return np.where(counted, picked, 0.0).sum(axis=1)
