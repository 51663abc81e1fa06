"""Linear layer: ``y = x @ W.T + b``, W stored ``(out_features, in_features)`` as in PyTorch."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from ..checks import check_dout, check_float, check_ndim, check_same_device, check_same_dtype


class LinearCache(NamedTuple):
    """What ``linear_backward`` needs: the input and the weight."""

    x: Any  # (..., in_features)
    weight: Any  # (out_features, in_features)
    has_bias: bool  # whether to return a bias gradient


def linear_forward(x: Any, weight: Any, bias: Any = None) -> tuple[Any, LinearCache]:
    """``out = x @ W.T + b``.

    x: (..., in_features), weight: (out_features, in_features), bias: (out_features,) or None.
    Returns ``out: (..., out_features)`` and the cache ``LinearCache(x, weight, has_bias)``.
    Empty sizes work as in torch: no rows give no rows, ``in_features = 0`` gives the bias.
    """
    check_float("linear input x", x)
    check_float("linear weight", weight)
    check_ndim("linear weight", weight, 2)
    if bias is not None:
        check_float("linear bias", bias)
    check_same_device("linear", x=x, weight=weight, bias=bias)
    check_same_dtype("linear", x=x, weight=weight, bias=bias)
    n_out, n_in = weight.shape
    if x.ndim < 1 or x.shape[-1] != n_in:
        raise ValueError(
            f"linear input x must have in_features={n_in} as its last dimension (weight shape "
            f"{tuple(weight.shape)}), got x of shape {tuple(x.shape)}"
        )
    if bias is not None and tuple(bias.shape) != (n_out,):
        raise ValueError(f"linear bias must have shape ({n_out},), got {tuple(bias.shape)}")
    n_rows = math.prod(x.shape[:-1])  # N (not -1: reshape cannot infer it when a size is 0)
    x2 = x.reshape(n_rows, n_in)  # (N, in): one 2-D GEMM, not a slow batched dot
    out = x2 @ weight.T  # (N, out)
    if bias is not None:
        out += bias
    return out.reshape(*x.shape[:-1], n_out), LinearCache(x, weight, bias is not None)


def linear_backward(dout: Any, cache: LinearCache) -> tuple[Any, Any, Any]:
    """Gradients of ``out = x @ W.T + b``.

    dx = dout @ W,   dW = doutᵀ @ x (summed over all leading dims),   db = Σ dout.
    Returns ``(dx, dW, db)``; ``db`` is None when the forward had no bias.
    """
    x, weight = cache.x, cache.weight
    n_out, n_in = weight.shape
    check_dout("linear_backward", dout, (*x.shape[:-1], n_out), x.dtype, "(..., out_features)")
    n_rows = math.prod(x.shape[:-1])
    dout2 = dout.reshape(n_rows, n_out)  # (N, out)
    dx = (dout2 @ weight).reshape(x.shape)  # (N, in) -> (..., in)
    dweight = dout2.T @ x.reshape(n_rows, n_in)  # (out, N) @ (N, in) = (out, in)
    dbias = dout2.sum(axis=0) if cache.has_bias else None
    return dx, dweight, dbias
