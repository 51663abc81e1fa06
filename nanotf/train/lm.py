"""The GPT side of training: the model a config builds, its loss on a batch of sequences, and
its held-out evaluation (what follows the prompt, generated greedily).

A run with ``model="gpt"`` reads each pair as one sequence ``<bos> source = target <eos>``
(:class:`~nanotf.tasks.lm.LMTask`). One step::

    batch = lm_batch(pairs)                                ids (B, L), labels (B, L-1)
    logits = model.forward(batch.inputs)                   (B, L-1, V), causal: position t
                                                           sees tokens 0..t only
    loss, cache = cross_entropy_forward(logits, labels,    the prompt's labels are <pad>:
                      ignore_index=PAD, label_smoothing)   only the continuation counts
    model.backward(cross_entropy_backward(1.0, cache))

Held out, the model reads the prompt ``<bos> source =`` and continues greedily until
``<eos>``; the exact match is the share of continuations equal to the target.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..backend import asarray, to_numpy
from ..checks import ids_checked_on_host
from ..data import EOS_ID, PAD_ID, LMBatch, LMTask, lm_batch
from ..functional import cross_entropy_forward
from ..models.gpt2 import GPT2LMHeadModel
from .config import TrainConfig

__all__ = ["build_gpt", "continue_prompts", "gpt_config_dict", "lm_evaluate_batch", "lm_loss"]


def gpt_config_dict(config: TrainConfig, vocab_size: int) -> dict[str, Any]:
    """The Hugging Face ``GPT2Config`` dict a training config describes: ``n_layers`` blocks of
    width ``d_model``, ``n_heads`` heads, feed-forward width ``d_ff``, ``dropout`` everywhere
    GPT-2 has it, a position table of ``max_len``."""
    if config.max_len is None:
        raise ValueError("gpt_config_dict needs config.max_len set (Trainer resolves it)")
    return {
        "vocab_size": vocab_size,
        "n_positions": config.max_len,
        "n_embd": config.d_model,
        "n_layer": config.n_layers,
        "n_head": config.n_heads,
        "n_inner": config.d_ff,
        "activation_function": config.activation,
        "resid_pdrop": config.dropout,
        "embd_pdrop": config.dropout,
        "attn_pdrop": config.dropout,
        "layer_norm_epsilon": 1e-5,
        "initializer_range": 0.02,
    }


def build_gpt(config: TrainConfig, lm: LMTask) -> GPT2LMHeadModel:
    """The GPT a config describes, over the task's one vocabulary, initialised as GPT-2 is
    from nanotf's current generator."""
    return GPT2LMHeadModel.from_config(gpt_config_dict(config, len(lm.vocab)))


def lm_loss(
    model: GPT2LMHeadModel,
    batch: LMBatch,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> tuple[Any, Any, Any]:
    """Forward a batch (on the backend) and its cross-entropy over the continuation's labels:
    ``(logits (B, L-1, V), loss, cache for cross_entropy_backward)``."""
    logits = model.forward(batch.inputs)  # (B, L-1, V); right padding needs no mask
    loss, cache = cross_entropy_forward(
        logits,
        batch.labels,
        ignore_index=PAD_ID,
        label_smoothing=label_smoothing,
        reduction=reduction,
    )
    return logits, loss, cache


def continue_prompts(
    model: GPT2LMHeadModel,
    lm: LMTask,
    sources: Sequence[str],
    max_new_tokens: int | None = None,
    **sampling: Any,
) -> list[str]:
    """The model's continuation of ``<bos> source =`` for every source, as text: greedy, or
    sampled with ``sampling`` (``do_sample=True, temperature=..., top_k=..., top_p=...,
    seed=...``, as ``GPT2LMHeadModel.generate`` takes them).

    Prompts are grouped by length, so every ``generate`` call reads equal-length prompts and
    no padding is needed; the outputs come back in the order of ``sources``.
    ``max_new_tokens`` (default: the task's longest continuation, target and ``<eos>``) is cut
    to what the position table leaves after the prompt.
    """
    n_positions = model.config.n_positions
    want = lm.max_continuation_len if max_new_tokens is None else max_new_tokens
    prompts = [lm.prompt_ids(s) for s in sources]
    by_length: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        if len(p) >= n_positions:
            raise ValueError(
                f"source {sources[i]!r} makes a prompt of {len(p)} tokens (<bos>, the source, "
                f"{lm.vocab.id_to_token(lm.sep_id)!r}); the model's position table holds "
                f"{n_positions}, which leaves no room for an answer"
            )
        by_length.setdefault(len(p), []).append(i)
    out: list[str] = [""] * len(prompts)
    for t, rows in sorted(by_length.items()):
        ids = asarray(np.array([prompts[i] for i in rows], dtype=np.int64))  # (b, t)
        new = min(want, n_positions - t)
        got = to_numpy(
            model.generate(
                ids, max_new_tokens=new, eos_token_id=EOS_ID, pad_token_id=PAD_ID, **sampling
            )
        )
        for i, row in zip(rows, got[:, t:], strict=True):
            out[i] = lm.continuation_text(row)
    return out


def lm_evaluate_batch(
    model: GPT2LMHeadModel,
    lm: LMTask,
    chunk: list[tuple[str, str]],
    totals: dict[str, Any],
    examples: list[tuple[str, str, str]],
) -> None:
    """Add one chunk of held-out pairs to ``totals`` (summed loss, tokens, right argmaxes,
    exact matches) and ``examples`` (source, target, continuation)."""
    host_batch = lm_batch(chunk, lm)  # ids made here from the vocabulary: in range
    batch = host_batch.to_backend()
    with ids_checked_on_host():
        logits, loss, _ = lm_loss(model, batch, reduction="sum")
    mask = host_batch.label_mask  # the labels and their mask are on the host already
    pred = to_numpy(logits.argmax(axis=-1))
    totals["loss"] += float(to_numpy(loss))
    totals["right"] += int(((pred == host_batch.labels) & mask).sum())
    totals["tokens"] += int(mask.sum())
    outputs = continue_prompts(model, lm, [src for src, _ in chunk])
    for (src, tgt), text in zip(chunk, outputs, strict=True):
        totals["exact"] += text == tgt
        examples.append((src, tgt, text))
