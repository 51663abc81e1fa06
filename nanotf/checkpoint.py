"""Checkpoints: everything needed to resume training bit for bit, in one safetensors file.

A checkpoint holds

* ``model.<name>``: every parameter array (``model.state_dict()``; a tied parameter under each
  of its names, as the state dict lists it);
* ``optimizer.<key>``: the optimizer's state arrays (``exp_avg.0``, ...);
* JSON in the file's metadata (safetensors metadata is ``{str: str}``): the optimizer's
  scalars (step count, lr, betas, ...) and class, the schedule's state, the step, the random
  generator's state (NumPy's ``bit_generator.state``, or the counter generator's
  ``{"kind", "seed", "counter"}`` on CuPy: which draws dropout makes next), the training config,
  the vocabularies and the training history.

Arrays are stored on the host as NumPy arrays (a GPU run saves host copies), so a checkpoint
made on CuPy opens on a machine without a GPU. JSON keeps floats exactly (``repr`` round
trips), so a resumed run continues with the very same numbers; it is strict JSON (no ``NaN``:
a float that is not finite is written as ``null``, see :func:`json_safe`). (CuPy's generators cannot
export their state: a GPU run stores none, and a resumed GPU run with dropout draws other
masks than the uninterrupted one would have.)

Writing is atomic: the file is written to a temporary file in the same directory, flushed to
disk (``fsync``) and moved over the destination with ``os.replace``, so a crash or a full disk
never leaves a half-written checkpoint where a good one was.

Reading checks what it reads and raises :class:`CheckpointError` (a ``ValueError``) naming the
file and what is wrong: not there, not a safetensors file (truncated or garbage), not a nanotf
checkpoint, or metadata that does not parse or has the wrong shape (e.g. ``optimizer`` a list).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .backend import to_numpy

__all__ = [
    "CHECKPOINT_NAME",
    "FORMAT",
    "VERSION",
    "CheckpointError",
    "json_safe",
    "load_checkpoint",
    "resolve_checkpoint_path",
    "save_checkpoint",
]

FORMAT = "nanotf.checkpoint"
VERSION = 1
#: the file name ``nanotf train`` writes in its output directory
CHECKPOINT_NAME = "checkpoint.safetensors"

_MODEL, _OPTIM = "model.", "optimizer."
_JSON_KEYS = ("optimizer", "scheduler", "rng_state", "config", "vocabs", "history", "extra")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, corrupt, or not fitting the model."""


def json_safe(value: Any) -> Any:
    """``value`` with every float that is not finite (``nan``, ``inf``) replaced by ``None``,
    in nested dicts, lists and tuples (tuples become lists): what ``json.dumps(...,
    allow_nan=False)`` accepts. Python's ``json`` would otherwise write a bare ``NaN``, which is
    not JSON and which strict parsers (JavaScript, ``jq``) refuse."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def _state(obj: Any) -> Mapping[str, Any] | None:
    """``obj.state_dict()`` for a model / optimizer / schedule, or ``obj`` itself if a dict."""
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj
    if hasattr(obj, "state_dict"):
        return obj.state_dict()
    raise TypeError(f"expected an object with state_dict() or a dict, got {type(obj).__name__}")


def _host(name: str, a: Any) -> np.ndarray:
    arr = np.ascontiguousarray(to_numpy(a))
    if arr.dtype == object:
        raise TypeError(f"checkpoint entry {name!r}: cannot store an object array")
    return arr


def _json_number(name: str, value: Any) -> Any:
    """Python numbers (and 0-d arrays) as JSON-able numbers; anything else is an error."""
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        value = value.item()
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    raise TypeError(f"checkpoint entry {name!r}: expected an array or a number, got {value!r}")


def save_checkpoint(
    path: str | os.PathLike[str],
    model: Any,
    optimizer: Any = None,
    scheduler: Any = None,
    step: int = 0,
    rng_state: Any = None,
    config: Mapping[str, Any] | None = None,
    vocabs: Mapping[str, Any] | None = None,
    history: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint to ``path`` atomically and return its path.

    ``model``, ``optimizer`` and ``scheduler`` are objects with ``state_dict()`` (or their state
    dicts). The optimizer's arrays become tensors, its numbers JSON. ``rng_state`` (e.g.
    ``nanotf.train.rng_state.host_rng_state()``), ``config``, ``vocabs`` (e.g.
    ``{"src": vocab.to_dict(), "tgt": ...}``), ``history`` and ``extra`` must be JSON-able.
    The directory is created if needed.
    """
    path = Path(path)
    tensors: dict[str, np.ndarray] = {}
    model_state = _state(model)
    if not model_state:
        raise ValueError("save_checkpoint: the model has no parameters to save")
    for name, a in model_state.items():
        tensors[_MODEL + name] = _host(name, a)
    optim_scalars: dict[str, Any] | None = None
    if optimizer is not None:
        # the class name tells what kind of optimizer the state belongs to (unknown for a dict)
        kind = None if isinstance(optimizer, Mapping) else type(optimizer).__name__
        optim_scalars = {"class": kind, "scalars": {}}
        for key, value in _state(optimizer).items():  # type: ignore[union-attr]
            if hasattr(value, "shape") and getattr(value, "ndim", 0) > 0:
                tensors[_OPTIM + key] = _host(key, value)
            else:
                optim_scalars["scalars"][key] = _json_number(key, value)
    meta_values: dict[str, Any] = {
        "optimizer": optim_scalars,
        "scheduler": None if scheduler is None else dict(_state(scheduler)),  # type: ignore[arg-type]
        "rng_state": rng_state,
        "config": None if config is None else dict(config),
        "vocabs": None if vocabs is None else dict(vocabs),
        "history": None if history is None else dict(history),
        "extra": None if extra is None else dict(extra),
    }
    metadata = {"format": FORMAT, "version": str(VERSION), "step": str(int(step))}
    for key, value in meta_values.items():
        try:
            metadata[key] = json.dumps(json_safe(value), allow_nan=False)
        except (TypeError, ValueError) as err:
            raise TypeError(f"save_checkpoint: {key} cannot be stored as JSON ({err})") from err
    _atomic_save(path, tensors, metadata)
    return path


def _atomic_save(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    """safetensors to a temporary file beside ``path``, fsync, then ``os.replace`` over it."""
    from safetensors.numpy import save_file

    if path.is_dir():
        raise IsADirectoryError(f"cannot write the checkpoint {path}: it is a directory")
    directory = path.parent if str(path.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        with open(tmp, "rb+") as f:  # make the bytes durable before the rename makes them live
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable (not possible on every platform)
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def resolve_checkpoint_path(path: str | os.PathLike[str]) -> Path:
    """``path`` itself, or ``path/checkpoint.safetensors`` when ``path`` is a run directory.

    Raises :class:`CheckpointError` when there is no such file.
    """
    p = Path(path)
    if p.is_dir():
        inner = p / CHECKPOINT_NAME
        if inner.is_file():
            return inner
        raise CheckpointError(
            f"checkpoint {p} is a directory without a {CHECKPOINT_NAME} in it; pass the "
            "checkpoint file (the one `python -m nanotf train` writes under --out)"
        )
    if not p.exists():
        raise CheckpointError(f"checkpoint {p} does not exist")
    return p


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _check_metadata_shapes(path: Path, meta: dict[str, Any]) -> None:
    """Every JSON entry of the metadata is what :func:`save_checkpoint` writes: an object
    (a dict) or null, and the optimizer's entry ``{"class": str, "scalars": {...}}``. A file
    edited by hand (or by another program) fails here with the field named, not later with
    an ``AttributeError``."""
    if meta["step"] < 0:
        raise CheckpointError(
            f"checkpoint {path}: metadata field 'step' must be >= 0, got {meta['step']}"
        )
    for key in _JSON_KEYS:
        value = meta[key]
        if value is not None and not isinstance(value, dict):
            raise CheckpointError(
                f"checkpoint {path}: metadata field {key!r} must be a JSON object (or null), "
                f"got {_kind(value)} {json.dumps(value)[:60]}"
            )
    optim = meta["optimizer"]
    if optim is not None:
        if not isinstance(optim.get("class"), (str, type(None))):
            raise CheckpointError(
                f"checkpoint {path}: metadata field 'optimizer' needs a 'class' (the "
                f"optimizer's class name, a string, or null), got {_kind(optim.get('class'))}"
            )
        if not isinstance(optim.get("scalars"), dict):
            raise CheckpointError(
                f"checkpoint {path}: metadata field 'optimizer' needs 'scalars' (a JSON "
                f"object of the optimizer's numbers), got {_kind(optim.get('scalars'))}"
            )


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Returns a dict with ``"model"`` (``{name: NumPy array}``), ``"optimizer"`` (the flat state
    dict, arrays and numbers, ready for ``optimizer.load_state_dict``, or None),
    ``"optimizer_class"``, ``"scheduler"``, ``"step"``, ``"rng_state"``, ``"config"``,
    ``"vocabs"``, ``"history"``, ``"extra"`` and ``"path"``. Raises :class:`CheckpointError`
    naming the file and the problem when it cannot be read.
    """
    from safetensors import safe_open

    p = resolve_checkpoint_path(path)
    try:
        with safe_open(str(p), framework="numpy") as f:
            metadata = dict(f.metadata() or {})
            arrays = {key: f.get_tensor(key) for key in f.keys()}
    except CheckpointError:
        raise
    except Exception as err:  # SafetensorError, OSError, ...
        size = p.stat().st_size if p.exists() else 0
        raise CheckpointError(
            f"checkpoint {p} cannot be read as a safetensors file ({size} bytes; the file is "
            f"truncated or corrupt, or not a checkpoint): {err}"
        ) from err
    if metadata.get("format") != FORMAT:
        raise CheckpointError(
            f"checkpoint {p} is a safetensors file but not a nanotf checkpoint (its metadata "
            f"has format={metadata.get('format')!r}, expected {FORMAT!r})"
        )
    try:
        version = int(metadata.get("version", "0"))
    except ValueError:
        version = -1
    if version != VERSION:
        raise CheckpointError(
            f"checkpoint {p} has format version {metadata.get('version')!r}; this nanotf reads "
            f"version {VERSION}"
        )
    out: dict[str, Any] = {"path": p}
    try:
        out["step"] = int(metadata["step"])
        for key in _JSON_KEYS:
            out[key] = json.loads(metadata[key]) if key in metadata else None
    except (KeyError, ValueError) as err:
        raise CheckpointError(f"checkpoint {p} has unreadable metadata: {err!r}") from err
    _check_metadata_shapes(p, out)
    out["model"] = {k[len(_MODEL) :]: a for k, a in arrays.items() if k.startswith(_MODEL)}
    if not out["model"]:
        raise CheckpointError(f"checkpoint {p} holds no model parameters")
    optim_meta = out.pop("optimizer")
    if optim_meta is None:
        out["optimizer"], out["optimizer_class"] = None, None
    else:
        state: dict[str, Any] = dict(optim_meta["scalars"])
        state.update({k[len(_OPTIM) :]: a for k, a in arrays.items() if k.startswith(_OPTIM)})
        out["optimizer"], out["optimizer_class"] = state, optim_meta.get("class")
    return out
