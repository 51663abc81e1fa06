"""Sinusoidal positional encoding of "Attention Is All You Need" (section 3.5)."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from ..backend import get_array_module
from ..checks import (
    check_dout,
    check_float,
    check_float_dtype,
    check_int,
    check_ndim,
    check_real,
    check_same_device,
)


def sinusoidal_encoding(
    max_len: int, d_model: int, base: float = 10000.0, dtype: Any = np.float32, xp: Any = np
) -> Any:
    """The (max_len, d_model) table, vectorised over positions and dimensions.

    PE[pos, 2i] = sin(pos / base^(2i/d)),  PE[pos, 2i+1] = cos(pos / base^(2i/d)).
    Computed in float64 and cast once to ``dtype``.
    """
    check_int("sinusoidal_encoding max_len", max_len)
    check_int("sinusoidal_encoding d_model", d_model)
    if max_len < 1 or d_model < 1:
        raise ValueError(
            f"sinusoidal_encoding max_len and d_model must be positive, got {max_len} and {d_model}"
        )
    check_real("sinusoidal_encoding base", base)
    if not 0 < base < math.inf:
        raise ValueError(f"sinusoidal_encoding base must be positive and finite, got {base}")
    check_float_dtype("sinusoidal_encoding dtype", dtype)
    pos = xp.arange(max_len, dtype=xp.float64)[:, None]  # (L, 1)
    two_i = xp.arange(0, d_model, 2, dtype=xp.float64)  # (ceil(d/2),)
    inv_freq = xp.exp(two_i * (-math.log(base) / d_model))  # 1 / base^(2i/d)
    angles = pos * inv_freq  # (L, ceil(d/2))
    pe = xp.empty((max_len, d_model), dtype=xp.float64)
    pe[:, 0::2] = xp.sin(angles)
    pe[:, 1::2] = xp.cos(angles[:, : d_model // 2])
    return pe.astype(dtype)


class PositionalCache(NamedTuple):
    """What ``add_positional_backward`` needs: the scale (the table is a constant)."""

    scale: float
    shape: tuple[int, ...]  # of the output (B, T, C)
    dtype: Any  # of the output


def add_positional_forward(
    x: Any, table: Any, scale: float = 1.0
) -> tuple[Any, PositionalCache]:
    """``out = x · scale + PE[:T]``; x: (B, T, C). The paper scales embeddings by √d_model.

    ``table`` (max_len, C) lives on x's device or on the host (then its first T rows are moved).

    The cache is ``PositionalCache(scale, shape, dtype)`` of the output: the table is a
    constant, so the backward needs nothing else.
    """
    check_float("add_positional input", x)
    check_ndim("add_positional input", x, 3)
    check_float("add_positional table", table)
    check_ndim("add_positional table", table, 2)
    check_real("add_positional scale", scale)
    if not isinstance(table, np.ndarray):  # a host table is moved to x's device, as documented
        check_same_device("add_positional", x=x, table=table)
    t, c = x.shape[1], x.shape[2]
    if t > table.shape[0] or c != table.shape[1]:
        raise ValueError(
            f"add_positional table is {tuple(table.shape)} (max_len, d_model); the input of "
            f"shape {tuple(x.shape)} needs length <= {table.shape[0]} and width {table.shape[1]}, "
            f"got length {t} and width {c}"
        )
    xp = get_array_module(x)
    out = x * scale
    out += xp.asarray(table[:t], dtype=x.dtype)
    return out, PositionalCache(scale, tuple(x.shape), x.dtype)


def add_positional_backward(dout: Any, cache: PositionalCache) -> Any:
    """The table is a constant, so ``dx = dout · scale``."""
    check_dout("add_positional_backward", dout, cache.shape, cache.dtype, "(B, T, C)")
    return dout * cache.scale
