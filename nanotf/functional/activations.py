"""Activations of the feed-forward block: ReLU and GELU (exact erf form and tanh approximation)."""

from __future__ import annotations

import math
from typing import Any

from ..backend import erf, get_array_module
from ._checks import check_float

_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_C = 0.044715


def relu_forward(x: Any) -> tuple[Any, Any]:
    """``out = max(x, 0)`` (NaN stays NaN, as in torch); the cache is the mask ``x > 0``."""
    check_float("relu input", x)
    xp = get_array_module(x)
    return xp.maximum(x, 0), x > 0


def relu_backward(dout: Any, cache: Any) -> Any:
    """d relu(x)/dx = 1 where x > 0 else 0, so ``dx = dout * (x > 0)``."""
    return dout * cache


def gelu_forward(x: Any, approximate: str = "none") -> tuple[Any, tuple]:
    """GELU(x) = x · Φ(x), Φ the standard normal CDF.

    ``approximate="none"``: Φ(x) = ½ (1 + erf(x / √2))  (BERT's ``gelu``, torch's default).
    ``approximate="tanh"``: Φ(x) ≈ ½ (1 + tanh(√(2/π) (x + 0.044715 x³)))  (``gelu_new``).
    """
    check_float("gelu input", x)
    xp = get_array_module(x)
    if approximate == "none":
        cdf = erf(x * _SQRT_HALF)
        cdf += 1.0
        cdf *= 0.5  # Φ(x)
        return x * cdf, ("none", x, cdf)
    if approximate == "tanh":
        inner = x * x
        inner *= _GELU_C
        inner += 1.0
        inner *= x
        inner *= _SQRT_2_OVER_PI  # u = √(2/π) (x + c x³)
        t = xp.tanh(inner, out=inner)
        out = t + 1.0
        out *= x
        out *= 0.5
        return out, ("tanh", x, t)
    raise ValueError(f"gelu approximate must be 'none' or 'tanh', got {approximate!r}")


def gelu_backward(dout: Any, cache: tuple) -> Any:
    """Derivative of GELU.

    exact:  d/dx [x Φ(x)] = Φ(x) + x φ(x),  φ(x) = exp(-x²/2) / √(2π).
    tanh:   with t = tanh(u), u = √(2/π)(x + c x³):
            d/dx = ½ (1 + t) + ½ x (1 - t²) √(2/π) (1 + 3 c x²).
    """
    kind, x, saved = cache
    xp = get_array_module(x)
    if kind == "none":
        pdf = x * x
        pdf *= -0.5
        xp.exp(pdf, out=pdf)
        pdf *= _INV_SQRT_2PI  # φ(x)
        pdf *= x
        pdf += saved  # Φ(x) + x φ(x)
        pdf *= dout
        return pdf
    t = saved
    du = x * x
    du *= 3.0 * _GELU_C
    du += 1.0
    du *= _SQRT_2_OVER_PI  # du/dx
    sech2 = t * t
    xp.subtract(1.0, sech2, out=sech2)  # 1 - t²
    du *= sech2
    du *= x
    du += t
    du += 1.0
    du *= 0.5
    du *= dout
    return du
