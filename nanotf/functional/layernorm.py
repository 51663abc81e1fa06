"""Layer normalisation over the last dimension, with a learned scale and shift (biased variance)."""

from __future__ import annotations

from typing import Any, NamedTuple

from ..backend import get_array_module
from ..checks import (
    check_dout,
    check_float,
    check_nonempty_axis,
    check_real,
    check_same_device,
    check_same_dtype,
)
from . import fused


class LayerNormCache(NamedTuple):
    """What ``layernorm_backward`` needs; ``xhat`` and ``rstd`` are worth plotting too."""

    xhat: Any  # (x - μ) / √(σ² + eps), (..., C)
    rstd: Any  # 1 / √(σ² + eps), (..., 1)
    gamma: Any  # the scale γ, (C,)


def layernorm_forward(
    x: Any, gamma: Any, beta: Any, eps: float = 1e-5
) -> tuple[Any, LayerNormCache]:
    """``out = (x - μ) / √(σ² + eps) · γ + β``, μ and σ² over the last dimension.

    x: (..., C), gamma and beta: (C,). The cache, ``LayerNormCache(xhat, rstd, gamma)``, keeps
    the normalised input ``x̂`` and ``rstd = 1 / √(σ² + eps)`` (both are worth plotting) and γ.
    """
    check_float("layernorm input", x)
    check_float("layernorm gamma", gamma)
    check_float("layernorm beta", beta)
    check_real("layernorm eps", eps)
    check_same_device("layernorm", x=x, gamma=gamma, beta=beta)
    check_same_dtype("layernorm", x=x, gamma=gamma, beta=beta)
    check_nonempty_axis("layernorm input", x, -1, "the C features it normalises over")
    n = x.shape[-1]
    if tuple(gamma.shape) != (n,) or tuple(beta.shape) != (n,):
        raise ValueError(
            f"layernorm gamma and beta must have shape ({n},) to match x {tuple(x.shape)}, "
            f"got {tuple(gamma.shape)} and {tuple(beta.shape)}"
        )
    kernel = fused.kernel_for("layernorm_forward", x)
    if kernel is not None:  # a fused kernel for x's array module (nanotf.functional.fused)
        out, xhat, rstd = kernel(x, gamma, beta, eps)
        return out, LayerNormCache(xhat, rstd, gamma)
    xp = get_array_module(x)
    mean = x.mean(axis=-1, keepdims=True)  # (..., 1)
    xhat = x - mean  # (..., C)
    var = (xhat * xhat).mean(axis=-1, keepdims=True)  # biased, as torch
    var += eps
    rstd = xp.sqrt(var, out=var)
    xp.divide(1.0, rstd, out=rstd)  # (..., 1)
    xhat *= rstd
    out = xhat * gamma
    out += beta
    return out, LayerNormCache(xhat, rstd, gamma)


def layernorm_backward(dout: Any, cache: LayerNormCache) -> tuple[Any, Any, Any]:
    """Gradients of LayerNorm.

    dγ = Σ dout ⊙ x̂,   dβ = Σ dout   (sums over all leading dims),
    dx = rstd · (g - mean(g) - x̂ · mean(g ⊙ x̂)),  with g = dout ⊙ γ.
    """
    xhat = cache.xhat
    check_dout("layernorm_backward", dout, xhat.shape, xhat.dtype, "(..., C)")
    kernel = fused.kernel_for("layernorm_backward", dout)
    if kernel is not None:  # a fused kernel for dout's array module (nanotf.functional.fused)
        return kernel(dout, xhat, cache.rstd, cache.gamma)
    n = xhat.shape[-1]
    dout2 = dout.reshape(-1, n)
    dgamma = (dout2 * xhat.reshape(-1, n)).sum(axis=0)
    dbeta = dout2.sum(axis=0)
    g = dout * cache.gamma  # (..., C)
    dx = xhat * (g * xhat).mean(axis=-1, keepdims=True)
    dx += g.mean(axis=-1, keepdims=True)
    xp = get_array_module(dout)
    xp.subtract(g, dx, out=dx)
    dx *= cache.rstd
    return dx, dgamma, dbeta
