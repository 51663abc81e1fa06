"""Reading a training checkpoint back: its config, vocabularies and model state checked against
the run that loads it, an all-or-nothing restore of the training state, and :func:`load_model`
(a trained model for translating).

Every check raises :class:`~nanotf.checkpoint.CheckpointError` naming the file and what is
wrong, before anything changes.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..backend import set_default_dtype, to_numpy
from ..checkpoint import CheckpointError, load_checkpoint
from ..data import LMTask, Task, Vocab
from ..models.gpt2 import GPT2LMHeadModel
from ..models.transformer import Transformer
from ..optim import LRScheduler, Optimizer
from .config import MODEL_FIELDS, TrainConfig, make_task
from .factories import build_model, resolved_max_len
from .history import History
from .lm import build_gpt
from .rng_state import host_rng_state, set_host_rng_state

__all__ = [
    "check_fits",
    "check_model_state",
    "check_optimizer_state",
    "MODEL_CLASSES",
    "load_gpt",
    "load_model",
    "restore_training_state",
    "saved_config",
    "saved_history",
    "saved_vocabs",
]


#: the model class a checkpoint of each ``TrainConfig.model`` holds (``extra["model"]``)
MODEL_CLASSES = {"transformer": "Transformer", "gpt": "GPT2LMHeadModel"}


def saved_config(ckpt: Mapping[str, Any]) -> TrainConfig | None:
    """The training config of a checkpoint (what :func:`load_checkpoint` returned), checked:
    a Transformer's or a GPT's, every field of :class:`TrainConfig` present and valid, its
    ``model`` the kind the checkpoint holds. None when it holds no config; otherwise a
    :class:`CheckpointError` naming the file and the field. (Checkpoints written before GPT
    have no ``model`` field: they hold a Transformer.)"""
    where = ckpt["path"]
    kind = (ckpt.get("extra") or {}).get("model", "Transformer")
    if kind not in MODEL_CLASSES.values():
        raise CheckpointError(
            f"checkpoint {where} holds a {kind!r} model; nanotf train, translate and generate "
            "read checkpoints of the encoder-decoder 'Transformer' and of GPT "
            "('GPT2LMHeadModel')"
        )
    d = ckpt.get("config")
    if d is None:
        return None
    if isinstance(d, dict) and "model" not in d:
        d = {**d, "model": "transformer"}
    missing = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in d]
    if missing:
        raise CheckpointError(
            f"checkpoint {where}: its config lacks the fields {missing} (nanotf train writes "
            "every field of TrainConfig)"
        )
    try:
        config = TrainConfig.from_dict(d)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"checkpoint {where} has an unusable config: {err}") from err
    if MODEL_CLASSES[config.model] != kind:
        raise CheckpointError(
            f"checkpoint {where}: its config says model={config.model!r}, but it holds a "
            f"{kind!r}"
        )
    return config


def saved_vocabs(ckpt: Mapping[str, Any], required: bool) -> dict[str, Vocab]:
    """``{"src": Vocab, "tgt": Vocab}`` of a checkpoint, checked ({} when it holds none and
    they are not ``required``)."""
    where, vocabs = ckpt["path"], ckpt.get("vocabs")
    if vocabs is None:
        if required:
            raise CheckpointError(f"checkpoint {where} holds no vocabularies")
        return {}
    out = {}
    for side in ("src", "tgt"):
        if side not in vocabs:
            raise CheckpointError(
                f"checkpoint {where}: its vocabs lack {side!r} (expected 'src' and 'tgt', "
                f"got {sorted(vocabs)})"
            )
        try:
            out[side] = Vocab.from_dict(vocabs[side])
        except (TypeError, ValueError) as err:
            raise CheckpointError(
                f"checkpoint {where}: its vocabs[{side!r}] is not a vocabulary: {err}"
            ) from err
    return out


def check_model_state(where: Any, model: Transformer, state: dict[str, Any]) -> None:
    """Every parameter present with the right shape and dtype, nothing extra; else one
    :class:`CheckpointError` listing the problems (a few of them)."""
    own = model.state_dict()
    problems = []
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    if missing:
        problems.append(f"missing {len(missing)} parameters ({', '.join(missing[:3])}, ...)")
    if extra:
        problems.append(f"{len(extra)} unexpected parameters ({', '.join(extra[:3])}, ...)")
    for name, a in own.items():
        if name in state:
            s = state[name]
            if tuple(s.shape) != tuple(a.shape):
                problems.append(f"{name} has shape {tuple(s.shape)}, the model {tuple(a.shape)}")
            elif np.dtype(s.dtype) != np.dtype(a.dtype):
                problems.append(f"{name} has dtype {s.dtype}, the model {a.dtype}")
    if problems:
        shown = "; ".join(problems[:4]) + (
            f"; ... ({len(problems)} problems)" if len(problems) > 4 else ""
        )
        raise CheckpointError(f"checkpoint {where} does not fit the model: {shown}")


def _trained(
    path: str | os.PathLike[str], model: str
) -> tuple[Any, Task, TrainConfig, dict[str, Vocab]]:
    """The trained model of a checkpoint of kind ``model`` ("transformer" or "gpt"), in eval
    mode, with its task, config and vocabularies; a checkpoint of the other kind is refused,
    naming the command that reads it."""
    ckpt = load_checkpoint(path)
    where = ckpt["path"]
    config = saved_config(ckpt)
    if config is None or ckpt.get("vocabs") is None:
        raise CheckpointError(f"checkpoint {where} holds no config or vocabularies")
    if config.model != model:
        other = (
            "a GPT (trained with --model gpt): continue prompts with python -m nanotf generate"
            if config.model == "gpt"
            else "an encoder-decoder Transformer: decode with python -m nanotf translate"
        )
        raise CheckpointError(f"checkpoint {where} holds {other} --checkpoint {where}")
    vocabs = saved_vocabs(ckpt, required=True)
    task = make_task(config.task, config.task_options)
    if config.max_len is None:  # as Trainer does; the shapes are checked below
        config = dataclasses.replace(config, max_len=resolved_max_len(config, task))
    set_default_dtype(config.dtype)
    if model == "gpt":
        for side, vocab in vocabs.items():
            if vocab != getattr(task, f"{side}_vocab"):
                raise CheckpointError(
                    f"checkpoint {where}: its {side} vocabulary differs from task "
                    f"{task.name!r}'s"
                )
        net: Any = build_gpt(config, LMTask(task))
    else:
        net = build_model(config, vocabs["src"], vocabs["tgt"])
    check_model_state(where, net, ckpt["model"])
    net.load_state_dict(ckpt["model"])
    net.eval()
    return net, task, config, vocabs


def load_model(
    path: str | os.PathLike[str],
) -> tuple[Transformer, Vocab, Vocab, TrainConfig]:
    """The trained Transformer of a checkpoint, in eval mode, with its source and target
    vocabularies and its config (for translating; no optimizer is built). A GPT checkpoint
    is refused (see :func:`load_gpt`)."""
    model, _, config, vocabs = _trained(path, "transformer")
    return model, vocabs["src"], vocabs["tgt"], config


def load_gpt(path: str | os.PathLike[str]) -> tuple[GPT2LMHeadModel, LMTask, TrainConfig]:
    """The trained GPT of a checkpoint (``nanotf train --model gpt``), in eval mode, with its
    task as one sequence (to write prompts and read continuations) and its config. A
    Transformer checkpoint is refused (see :func:`load_model`)."""
    model, task, config, _ = _trained(path, "gpt")
    return model, LMTask(task), config


def check_fits(where: Any, saved: TrainConfig | None, config: TrainConfig) -> None:
    """The checkpoint's config (``saved``) agrees with ``config`` on every field that decides
    the model's shapes (:data:`~nanotf.train.config.MODEL_FIELDS`)."""
    if saved is None:
        return
    diffs = [
        f"{k}={getattr(saved, k)!r} (this run: {getattr(config, k)!r})"
        for k in MODEL_FIELDS
        if k != "max_len" and getattr(saved, k) != getattr(config, k)
    ]
    if saved.max_len is not None and saved.max_len != config.max_len:
        diffs.append(f"max_len={saved.max_len!r} (this run: {config.max_len!r})")
    if diffs:
        raise CheckpointError(
            f"checkpoint {where} does not fit this run: it was saved with " + ", ".join(diffs)
        )


def check_optimizer_state(
    where: Any, ckpt: Mapping[str, Any], optimizer: Optimizer, name: str
) -> None:
    """The checkpoint holds optimizer state, of the kind of ``optimizer`` (config name
    ``name``)."""
    if ckpt.get("optimizer") is None:
        raise CheckpointError(f"checkpoint {where} holds no optimizer state to resume from")
    kind = type(optimizer).__name__
    if ckpt.get("optimizer_class") not in (None, kind):
        raise CheckpointError(
            f"checkpoint {where} holds the state of a {ckpt.get('optimizer_class')!r} "
            f"optimizer; this run's optimizer is {kind} (optimizer={name!r})"
        )


def saved_history(ckpt: Mapping[str, Any], step: int) -> History:
    """The checkpoint's history, checked: usable, and one entry per step up to ``step``."""
    where = ckpt["path"]
    try:
        history = History.from_dict(ckpt.get("history"))
    except ValueError as err:
        raise CheckpointError(f"checkpoint {where} has an unusable history: {err}") from err
    if ckpt.get("history") is not None and len(history.step) != step:
        raise CheckpointError(
            f"checkpoint {where}: its metadata says step {step}, but its history records "
            f"{len(history.step)} steps"
        )
    return history


def restore_training_state(
    ckpt: Mapping[str, Any],
    model: Transformer,
    optimizer: Optimizer,
    scheduler: LRScheduler,
    commit: Callable[[], None],
    rollback: Callable[[], None],
) -> None:
    """Load the model, optimizer, schedule and generator state of ``ckpt``, then ``commit()``
    (the trainer takes the step and history): all of it or, when any part fails, none of it
    (the copies taken first are put back and ``rollback()`` runs)."""
    where = ckpt["path"]
    backup = (
        {k: np.array(to_numpy(v), copy=True) for k, v in model.state_dict().items()},
        optimizer.state_dict(),
        scheduler.state_dict(),
        host_rng_state(),
    )
    parts: list[tuple[str, Callable[[], None]]] = [
        ("model parameters", lambda: model.load_state_dict(ckpt["model"])),
        ("optimizer state", lambda: optimizer.load_state_dict(ckpt["optimizer"])),
        ("schedule state", lambda: scheduler.load_state_dict(ckpt["scheduler"])),
        ("random generator state", lambda: set_host_rng_state(ckpt.get("rng_state"))),
    ]
    if not ckpt.get("scheduler"):
        parts.pop(2)
    try:
        for what, load_part in parts:
            try:
                load_part()
            except Exception as err:
                raise CheckpointError(
                    f"checkpoint {where} could not be loaded ({what}): {err}"
                ) from err
        commit()
    except BaseException:
        model.load_state_dict(backup[0])
        optimizer.load_state_dict(backup[1])
        scheduler.load_state_dict(backup[2])
        set_host_rng_state(backup[3])
        rollback()
        raise
