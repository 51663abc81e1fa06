"""What a :class:`~nanotf.train.config.TrainConfig` builds: the model, the optimizer and the
learning-rate schedule."""

from __future__ import annotations

import math
from collections.abc import Callable

from ..data import PAD_ID, Task, Vocab
from ..models.transformer import Transformer
from ..optim import SGD, Adam, AdamW, Optimizer, cosine_lr, noam_lr
from .config import TrainConfig

__all__ = ["build_model", "lr_schedule", "make_optimizer", "resolved_max_len"]


def resolved_max_len(config: TrainConfig, task: Task) -> int:
    """``config.max_len``, or when it is None: for the Transformer twice the task's longest
    sequence, plus 8; for GPT the longest whole sequence ``<bos> source = target <eos>``
    (the prompt and continuation share the one position table)."""
    if config.max_len is not None:
        return config.max_len
    if config.model == "gpt":
        return task.max_src_len + task.max_tgt_len  # LMTask(task).max_seq_len
    return 2 * max(task.max_src_len, task.max_tgt_len) + 8


def build_model(config: TrainConfig, src_vocab: Vocab, tgt_vocab: Vocab) -> Transformer:
    """The :class:`Transformer` a config describes (``n_layers`` encoder and decoder layers),
    initialised from nanotf's current generator."""
    if config.max_len is None:
        raise ValueError("build_model needs config.max_len set (Trainer resolves it)")
    share = config.share_embeddings
    if share and src_vocab != tgt_vocab:
        raise ValueError(
            f"share_embeddings needs the same source and target vocabulary; task "
            f"{config.task!r} has {len(src_vocab)} source and {len(tgt_vocab)} target tokens"
        )
    return Transformer(
        src_vocab_size=len(src_vocab),
        tgt_vocab_size=len(tgt_vocab),
        d_model=config.d_model,
        n_heads=config.n_heads,
        n_encoder_layers=config.n_layers,
        n_decoder_layers=config.n_layers,
        d_ff=config.d_ff,
        dropout=config.dropout,
        activation=config.activation,
        norm_first=config.norm_first,
        max_len=config.max_len,
        share_embeddings=share,
        tie_output=config.tie_output,
        pad_id=PAD_ID,
    )


def make_optimizer(config: TrainConfig, model: Transformer) -> Optimizer:
    """``config.optimizer`` (Adam, AdamW or SGD) over the model's parameters."""
    params = model.parameters()
    if config.optimizer in ("adam", "adamw"):
        kind = Adam if config.optimizer == "adam" else AdamW
        return kind(
            params,
            lr=config.lr,
            betas=config.betas,
            eps=config.eps,
            weight_decay=config.weight_decay,
        )
    return SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def lr_schedule(config: TrainConfig) -> Callable[[int], float]:
    """The learning rate of update ``t = 1, 2, ...`` under the config's schedule."""
    lr, warmup, steps = config.lr, config.warmup, config.steps
    if config.schedule == "cosine":
        warmup = min(warmup, steps - 1)  # a run shorter than the warm-up: cosine over one step
        return lambda t: cosine_lr(t, lr, warmup, steps, config.min_lr)
    if config.schedule == "noam":
        w = max(warmup, 1)
        factor = lr * math.sqrt(config.d_model * w)  # noam_lr peaks at factor / √(d·w) = lr
        return lambda t: noam_lr(t, config.d_model, w, factor)
    if warmup == 0:
        return lambda t: lr
    return lambda t: lr * min(1.0, t / warmup)
