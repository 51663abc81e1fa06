"""What every decoder shares: the model protocol, eval mode, the input checks, log-softmax."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import numpy as np

from ..backend import asarray, to_numpy
from ..functional import log_softmax_forward
from ..text.specials import PAD_ID


class Seq2SeqModel(Protocol):
    """What decoding needs from a model (``Transformer`` has all of it). A model that also has
    ``decode_step(tgt_new, memory, cache, src_mask, tgt_mask)`` (``Transformer.decode_step``) is
    decoded with a key/value cache; without it the prefix is recomputed."""

    training: bool

    def encode(self, src: Any, src_mask: Any) -> Any: ...

    def decode(self, tgt_in: Any, memory: Any, src_mask: Any, tgt_mask: Any) -> Any: ...

    def train(self, mode: bool = True) -> Any: ...


@contextmanager
def _eval_mode(model: Seq2SeqModel) -> Iterator[None]:
    """Dropout off while decoding; the model's previous mode is restored afterwards."""
    was_training = bool(getattr(model, "training", False))
    model.train(False)
    try:
        yield
    finally:
        model.train(was_training)


def _check_inputs(src: Any, src_mask: Any, max_len: int) -> tuple[Any, Any]:
    if getattr(src, "ndim", None) != 2:
        raise ValueError(
            f"src must be a 2-D array of ids (batch, length), got "
            f"{getattr(src, 'shape', type(src).__name__)}"
        )
    if src_mask is None:
        src_mask = to_numpy(src) != PAD_ID
    if tuple(src_mask.shape) != tuple(src.shape):
        raise ValueError(
            f"src_mask must have the shape of src {tuple(src.shape)}, got {tuple(src_mask.shape)}"
        )
    _check_positive_int("max_len", max_len)
    return asarray(src), asarray(src_mask)


def _check_positive_int(name: str, value: object, *, type_only: bool = False) -> None:
    """Raise unless ``value`` is an integer (not a bool) and, unless ``type_only``, ``>= 1``."""
    is_int = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if not is_int or (not type_only and value < 1):  # type: ignore[operator]
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _log_softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise ``log softmax`` on the host, float64 (the op of ``nanotf.functional``)."""
    return log_softmax_forward(x.astype(np.float64))[0]
