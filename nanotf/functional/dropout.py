"""Inverted dropout: zero each element with probability p and scale the rest by 1 / (1 - p)."""

from __future__ import annotations

from typing import Any

from ..backend import get_array_module
from ..backend import rng as default_rng
from ._checks import check_float


def dropout_forward(
    x: Any, p: float, training: bool = True, rng: Any = None, mask: Any = None
) -> tuple[Any, Any]:
    """``out = x * keep / (1 - p)`` with ``keep ~ Bernoulli(1 - p)``.

    In eval mode or with ``p = 0`` it is the identity and the cache is None. The kept mask,
    already scaled by 1 / (1 - p), is the cache, so the backward reuses exactly this draw.
    ``rng`` defaults to the backend's seeded generator; ``mask`` (bool, same shape as x) may be
    given to replay a known draw, e.g. to compare with another implementation.
    """
    check_float("dropout input", x)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x, None
    xp = get_array_module(x)
    if mask is None:
        gen = default_rng() if rng is None else rng
        u = gen.random(x.shape, dtype=x.dtype)
        if get_array_module(u) is not xp:  # a generator of another device: move the draw
            u = xp.asarray(u)
        mask = u >= p
    elif tuple(mask.shape) != tuple(x.shape):
        raise ValueError(f"dropout mask must have shape {tuple(x.shape)}, got {tuple(mask.shape)}")
    scale = 0.0 if p == 1.0 else 1.0 / (1.0 - p)
    keep = mask.astype(x.dtype)
    keep *= scale  # 0 or 1/(1-p)
    return x * keep, keep


def dropout_backward(dout: Any, cache: Any) -> Any:
    """``dx = dout * keep / (1 - p)``: the same scaled mask as the forward (identity if none)."""
    return dout if cache is None else dout * cache
