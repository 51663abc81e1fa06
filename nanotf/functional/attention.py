"""Scaled dot-product attention with masks, and the multi-head split and merge.

Masks are boolean and mean "may attend" (True) as in ``torch.nn.functional.
scaled_dot_product_attention``: a key-padding mask of shape (B, Tk) becomes (B, 1, 1, Tk) with
``padding_mask``, a causal mask is ``causal=True``. Masked scores are replaced by the dtype's most
negative value before the softmax, and the probabilities are multiplied by the mask afterwards,
so a query that may attend to nothing gets all-zero weights (never NaN).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, NamedTuple

from ..backend import get_array_module
from ..checks import (
    broadcast_shape,
    check_dout,
    check_float,
    check_int,
    check_ndim,
    check_nonempty_axis,
    check_real,
    check_same_device,
    check_same_dtype,
    given,
    is_array_or_scalar,
)
from .dropout import DropoutCache, dropout_backward, dropout_forward
from .softmax import SoftmaxCache, masked_softmax_forward, softmax_backward


class AttentionCache(NamedTuple):
    """What ``attention_backward`` needs; ``scores`` and ``probs`` are there to be plotted."""

    q: Any  # (B, H, Tq, D)
    k: Any  # (B, H, Tk, D)
    v: Any  # (B, H, Tk, Dv)
    scores: Any  # (B, H, Tq, Tk): q kᵀ · scale, masked entries at the dtype's minimum
    probs: Any  # (B, H, Tq, Tk): softmax of the scores times the mask, before dropout
    dropped: Any  # (B, H, Tq, Tk): probs after dropout (probs itself without dropout)
    dropout: DropoutCache  # the dropout draw on probs
    scale: float  # the factor on q kᵀ, 1/√D by default


def split_heads(x: Any, n_heads: int) -> Any:
    """(B, T, C) -> (B, H, T, C/H), made contiguous once so the batched GEMMs run fast.

    Its backward is ``merge_heads`` (a split is a reshape and a transpose, nothing else).
    """
    check_ndim("split_heads input", x, 3)
    check_int("split_heads n_heads", n_heads, 1)
    b, t, c = x.shape
    if c % n_heads:
        raise ValueError(
            f"split_heads input: model width {c} is not divisible by the number of heads "
            f"{n_heads} (n_heads), got an input of shape {tuple(x.shape)}"
        )
    xp = get_array_module(x)
    return xp.ascontiguousarray(x.reshape(b, t, n_heads, c // n_heads).transpose(0, 2, 1, 3))


def merge_heads(x: Any) -> Any:
    """(B, H, T, D) -> (B, T, H·D), contiguous. Its backward is ``split_heads``."""
    check_ndim("merge_heads input", x, 4)
    b, h, t, d = x.shape
    xp = get_array_module(x)
    return xp.ascontiguousarray(x.transpose(0, 2, 1, 3)).reshape(b, t, h * d)


def padding_mask(keep: Any) -> Any:
    """Key-padding mask (B, Tk), True (or 1) for real tokens -> boolean (B, 1, 1, Tk).

    ``keep`` says which keys to keep (True = a real token, False = padding). The one place
    where a key-padding mask becomes an attention mask (``nn.MultiHeadAttention`` uses it too).
    """
    check_ndim("padding_mask keep", keep, 2)
    if keep.dtype != bool and keep.dtype.kind not in "iu":
        raise TypeError(
            f"padding_mask keep must be a boolean or integer array (True or 1 = real token), "
            f"got {keep.dtype}"
        )
    return (keep != 0)[:, None, None, :]


def causal_mask(t_q: int, t_k: int | None = None, xp: Any = None) -> Any:
    """(Tq, Tk) boolean, True on and below the diagonal aligned to the bottom right.

    Query i sees keys 0..i + (Tk - Tq): for Tq = Tk the usual lower triangle (query i sees keys
    0..i); with Tk - Tq earlier keys (a cache) the last query sees every key. This is torch's
    ``causal_lower_right``; ``scaled_dot_product_attention(is_causal=True)`` aligns top-left
    instead, which differs only when Tq != Tk.
    """
    check_int("causal_mask t_q", t_q, 0)
    if t_k is not None:
        check_int("causal_mask t_k", t_k, 0)
    if xp is None:
        import numpy as xp
    t_k = t_q if t_k is None else t_k
    return xp.tril(xp.ones((t_q, t_k), dtype=bool), k=t_k - t_q)


def _check_qkv(q: Any, k: Any, v: Any, scale: Any, dropout_p: Any) -> None:
    """q (B, H, Tq, D), k (B, H, Tk, D), v (B, H, Tk, Dv): float arrays of one dtype and
    device, Tk > 0 (and D > 0 when it sets the scale); scale and dropout_p real numbers."""
    for name, a in (("q", q), ("k", k), ("v", v)):
        check_float(f"attention {name}", a)
        check_ndim(f"attention {name}", a, 4)
    check_same_device("attention", q=q, k=k, v=v)
    check_same_dtype("attention", q=q, k=k, v=v)
    d = q.shape[3]
    if k.shape[:2] != q.shape[:2] or k.shape[3] != d or v.shape[:3] != k.shape[:3]:
        raise ValueError(
            "attention expects q (B, H, Tq, D), k (B, H, Tk, D), v (B, H, Tk, Dv), got "
            f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    check_nonempty_axis("attention k", k, 2, "Tk, the keys")
    if scale is None:
        check_nonempty_axis("attention q", q, 3, "D, which sets the default scale 1/√D")
    else:
        check_real("attention scale", scale)
    check_real("attention dropout_p", dropout_p, 0, 1)


def _check_mask(mask: Any, q: Any, k: Any) -> None:
    """``mask``: boolean, on q's device, broadcastable to the scores (B, H, Tq, Tk)."""
    if not is_array_or_scalar(mask) or mask.dtype != bool:
        raise TypeError(
            f"attention mask must be a boolean array (True = attend), got {given(mask)}"
        )
    check_same_device("attention", q=q, mask=mask)
    full = (*q.shape[:3], k.shape[2])
    if mask.ndim > 4 or broadcast_shape(tuple(mask.shape), full) != full:
        raise ValueError(
            f"attention mask of shape {tuple(mask.shape)} does not broadcast to the scores "
            f"(B, H, Tq, Tk) = {full} (got q {tuple(q.shape)}, k {tuple(k.shape)}); a "
            "key-padding mask (B, Tk) needs padding_mask()"
        )


def attention_forward(
    q: Any,
    k: Any,
    v: Any,
    mask: Any = None,
    causal: bool = False,
    dropout_p: float = 0.0,
    training: bool = False,
    rng: Any = None,
    scale: float | None = None,
) -> tuple[Any, AttentionCache]:
    """``out = dropout(softmax(q kᵀ · scale + mask)) v`` per batch and head.

    q: (B, H, Tq, D), k: (B, H, Tk, D), v: (B, H, Tk, Dv); ``mask`` boolean, broadcastable to
    (B, H, Tq, Tk), True where a query may attend; ``causal`` adds the lower-triangular mask.
    ``scale`` defaults to 1/√D. Returns ``out: (B, H, Tq, Dv)`` and an ``AttentionCache``
    holding, among the rest, the scores and the probabilities (before dropout) for plotting.
    """
    _check_qkv(q, k, v, scale, dropout_p)
    if mask is not None:
        _check_mask(mask, q, k)
    xp = get_array_module(q)
    d, t_q, t_k = q.shape[3], q.shape[2], k.shape[2]
    allowed = mask
    if causal:
        tri = causal_mask(t_q, t_k, xp)
        allowed = tri if allowed is None else allowed & tri
    scale = 1.0 / math.sqrt(d) if scale is None else float(scale)

    # scores = q kᵀ · scale with masked entries at the dtype's minimum, probs = softmax(scores)
    # times the mask: a fully masked row becomes zeros, not a uniform row
    probs, sm = masked_softmax_forward(q @ k.swapaxes(-1, -2), allowed, scale)  # (B, H, Tq, Tk)
    scores = sm.scores  # (B, H, Tq, Tk)
    dropped, drop_cache = dropout_forward(probs, dropout_p, training, rng=rng)
    out = dropped @ v  # (B, H, Tq, Dv)
    return out, AttentionCache(q, k, v, scores, probs, dropped, drop_cache, scale)


def attention_backward(
    dout: Any,
    cache: AttentionCache,
    grads: dict[str, Any] | None = None,
    *,
    keep: dict[str, Any] | None = None,
) -> tuple[Any, Any, Any]:
    """Gradients of attention, the forward run in reverse.

    dV = P̃ᵀ dout (P̃: probabilities after dropout),  dP̃ = dout Vᵀ,  dP = dropout'(dP̃),
    dS = P ⊙ (dP - Σ_j dP_j P_j) (softmax),  dQ = dS K · scale,  dK = dSᵀ Q · scale.
    Masked entries have P = 0, so they get no gradient. If ``grads`` is a dict it receives the
    gradients of the intermediates, ``grads["probs"] = dP`` and ``grads["scores"] = dS``
    (``keep=`` is its old, deprecated name).
    """
    if keep is not None:
        warnings.warn(
            "attention_backward(keep=...) is deprecated: pass the dict as grads=",
            DeprecationWarning,
            stacklevel=2,
        )
        grads = keep if grads is None else grads
    q, k, v = cache.q, cache.k, cache.v
    shape = (*q.shape[:3], v.shape[3])
    check_dout("attention_backward", dout, shape, q.dtype, "(B, H, Tq, Dv)")
    if grads is not None and not isinstance(grads, dict):
        raise TypeError(f"attention_backward grads must be a dict or None, got {given(grads)}")
    dv = cache.dropped.swapaxes(-1, -2) @ dout  # (B, H, Tk, Dv)
    dprobs = dropout_backward(dout @ v.swapaxes(-1, -2), cache.dropout)  # (B, H, Tq, Tk)
    dscores = softmax_backward(dprobs, SoftmaxCache(cache.probs, -1))  # (B, H, Tq, Tk)
    if grads is not None:
        grads["probs"] = dprobs
        grads["scores"] = dscores.copy()  # before the scale folds in: dL/d(scaled scores)
    dscores *= cache.scale
    dq = dscores @ k  # (B, H, Tq, D)
    dk = dscores.swapaxes(-1, -2) @ q  # (B, H, Tk, D)
    return dq, dk, dv
