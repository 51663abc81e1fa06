"""Activations of the feed-forward block: ReLU and GELU (exact erf form and tanh approximation)."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from ..backend import erf, get_array_module
from ..checks import check_dout, check_float
from . import fused

_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_C = 0.044715


class ReluCache(NamedTuple):
    """What ``relu_backward`` needs: the output (``out > 0`` exactly where ``x > 0``)."""

    out: Any  # max(x, 0), the shape of x


class GeluCache(NamedTuple):
    """What ``gelu_backward`` needs: the form, the input and the forward's Φ(x) or tanh(u)."""

    approximate: str  # "none" (erf) or "tanh"
    x: Any  # the input, its own shape
    saved: Any  # flat (n,): Φ(x) for "none", t = tanh(u) for "tanh"


def relu_forward(x: Any) -> tuple[Any, ReluCache]:
    """``out = max(x, 0)`` (NaN stays NaN, as in torch); the cache is ``ReluCache(out)``."""
    check_float("relu input", x)
    xp = get_array_module(x)
    out = xp.maximum(x, 0)
    return out, ReluCache(out)


def relu_backward(dout: Any, cache: ReluCache) -> Any:
    """d relu(x)/dx = 1 where x > 0 else 0, so ``dx = dout · (out > 0)``.

    Written ``dout · not(out <= 0)`` so that a NaN input passes ``dout`` through, as in torch.
    """
    out = cache.out
    check_dout("relu_backward", dout, out.shape, out.dtype)
    return dout * ~(out <= 0)


def gelu_forward(x: Any, approximate: str = "none") -> tuple[Any, GeluCache]:
    """GELU(x) = x · Φ(x), Φ the standard normal CDF.

    ``approximate="none"``: Φ(x) = ½ (1 + erf(x / √2))  (BERT's ``gelu``, torch's default).
    ``approximate="tanh"``: Φ(x) ≈ ½ (1 + tanh(√(2/π) (x + 0.044715 x³)))  (``gelu_new``).
    The math runs in place on a flat view ``x.reshape(-1)`` (elementwise, so the shape does not
    matter; a 0-d input becomes (1,), on which NumPy's ``out=`` works).
    """
    check_float("gelu input", x)
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu approximate must be 'none' or 'tanh', got {approximate!r}")
    kernel = fused.kernel_for("gelu_forward", x)
    if kernel is not None:  # a fused kernel for x's array module (nanotf.functional.fused)
        out, saved = kernel(x, approximate)
        return out, GeluCache(approximate, x, saved)
    xp = get_array_module(x)
    xf = x.reshape(-1)  # (n,)
    if approximate == "none":
        cdf = erf(xf * _SQRT_HALF)
        cdf += 1.0
        cdf *= 0.5  # Φ(x)
        out = xf * cdf
        return out.reshape(x.shape), GeluCache("none", x, cdf)
    inner = xf * xf
    inner *= _GELU_C
    inner += 1.0
    inner *= xf
    inner *= _SQRT_2_OVER_PI  # u = √(2/π) (x + c x³)
    t = xp.tanh(inner, out=inner)
    out = t + 1.0
    out *= xf
    out *= 0.5
    return out.reshape(x.shape), GeluCache("tanh", x, t)


def gelu_backward(dout: Any, cache: GeluCache) -> Any:
    """Derivative of GELU.

    exact:  d/dx [x Φ(x)] = Φ(x) + x φ(x),  φ(x) = exp(-x²/2) / √(2π).
    tanh:   with t = tanh(u), u = √(2/π)(x + c x³):
            d/dx = ½ (1 + t) + ½ x (1 - t²) √(2/π) (1 + 3 c x²).
    """
    x, saved = cache.x, cache.saved  # saved: Φ(x) or t, flat (n,)
    check_dout("gelu_backward", dout, x.shape, x.dtype)
    kernel = fused.kernel_for("gelu_backward", x)
    if kernel is not None:  # a fused kernel for x's array module (nanotf.functional.fused)
        return kernel(dout, x, saved, cache.approximate)
    xp = get_array_module(x)
    shape = x.shape
    x, dout = x.reshape(-1), dout.reshape(-1)  # (n,), flat as in the forward
    if cache.approximate == "none":
        pdf = x * x
        pdf *= -0.5
        xp.exp(pdf, out=pdf)
        pdf *= _INV_SQRT_2PI  # φ(x)
        pdf *= x
        pdf += saved  # Φ(x) + x φ(x)
        pdf *= dout
        return pdf.reshape(shape)
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
    return du.reshape(shape)
