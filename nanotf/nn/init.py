"""Weight initialisation, drawn from the backend's one seeded generator in the default dtype."""

from __future__ import annotations

import math
from typing import Any

from ..backend import array_module, default_dtype, rng
from .parameter import Parameter


def uniform(shape: tuple[int, ...], bound: float, dtype: Any = None) -> Any:
    """U(-bound, bound)."""
    u = rng().random(shape, dtype=array_module().float64)
    return ((2.0 * u - 1.0) * bound).astype(dtype or default_dtype())


def normal(shape: tuple[int, ...], std: float, dtype: Any = None) -> Any:
    """N(0, std²)."""
    z = rng().standard_normal(shape, dtype=array_module().float64)
    return (z * std).astype(dtype or default_dtype())


def zeros(shape: tuple[int, ...], dtype: Any = None) -> Any:
    return array_module().zeros(shape, dtype=dtype or default_dtype())


def ones(shape: tuple[int, ...], dtype: Any = None) -> Any:
    return array_module().ones(shape, dtype=dtype or default_dtype())


def xavier_uniform_(param: Parameter, gain: float = 1.0) -> None:
    """Glorot & Bengio: U(-a, a), a = gain · √(6 / (fan_in + fan_out)), in place."""
    fan_out, fan_in = param.shape[0], param.shape[1]
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    param.data[...] = uniform(param.shape, bound, param.dtype)


def normal_(param: Parameter, std: float) -> None:
    """N(0, std²) in place (BERT uses std = initializer_range = 0.02)."""
    param.data[...] = normal(param.shape, std, param.dtype)
