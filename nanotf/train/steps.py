"""What the training loop does with one batch, for either model: the ids checked on the host,
and the forward with its cross-entropy (``lm_loss`` in :mod:`~nanotf.train.lm` is GPT's)."""

from __future__ import annotations

from typing import Any

from ..checks import check_int_ids
from ..data import PAD_ID, Batch, LMBatch
from ..functional import cross_entropy_forward
from ..models.transformer import Transformer

__all__ = ["check_batch_ids", "seq2seq_loss"]


def check_batch_ids(model: Any, batch: Batch | LMBatch) -> None:
    """The ids of a host batch lie in ``model``'s vocabularies, and it has a target token to
    learn from. Checked on the host, once per batch, so the device step need not check them
    again (``nanotf.checks.ids_checked_on_host``)."""
    if isinstance(batch, LMBatch):
        check_int_ids("GPT: input_ids", batch.ids, model.config.vocab_size)
    else:
        check_int_ids("Transformer: source ids", batch.src, model.src_vocab_size)
        check_int_ids("Transformer: target ids", batch.tgt, model.tgt_vocab_size)
    if batch.n_tokens == 0:
        raise ValueError("training batch has no target token to learn from")


def seq2seq_loss(
    model: Transformer,
    batch: Batch,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    unpadded: bool = False,
) -> tuple[Any, Any, Any]:
    """Teacher forcing on a batch (on the backend): the decoder reads ``<bos> y`` and predicts
    ``y <eos>``, the loss ignoring ``<pad>``. Returns ``(logits (B, T-1, V), loss, cache for
    cross_entropy_backward)``. ``unpadded``: through ``model.forward_unpadded`` (the same loss,
    the padding left out of all but attention)."""
    forward = model.forward_unpadded if unpadded else model.forward
    logits = forward(batch.src, batch.tgt_in, batch.src_mask, batch.tgt_in_mask)
    loss, cache = cross_entropy_forward(
        logits,
        batch.tgt_out,
        ignore_index=PAD_ID,
        label_smoothing=label_smoothing,
        reduction=reduction,
    )
    return logits, loss, cache
