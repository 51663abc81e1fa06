"""GPT-2's layers: ``Conv1D``, ``GPT2Attention``, ``GPT2MLP``, ``GPT2Block``, their cached paths."""

from __future__ import annotations

import math
from typing import Any

from ...backend import get_array_module
from ...functional import attention_backward, attention_forward, merge_heads, split_heads
from ...nn import (
    Activation,
    Dropout,
    LayerNorm,
    Module,
    Parameter,
    residual_backward,
    residual_forward,
)
from ...nn import init as nn_init
from ...nn.attention import key_padding_to_mask
from ...nn.checks import check_float_input, check_positive_int
from ...nn.kv_cache import KVCache
from .config import GPT2Config


def _check_inference(module: Module, who: str) -> None:
    if module.training:
        raise RuntimeError(
            f"{who}: forward_cached is inference only (no dropout, no backward): call .eval() "
            "first"
        )


def _refuse_backward(module: Module, who: str) -> None:
    if getattr(module, "_cached_call", False):
        raise RuntimeError(
            f"{who}: backward after forward_cached: the cached path is inference only and keeps "
            "nothing for a backward; run forward first"
        )


# -- the modules, in Hugging Face's tree --------------------------------------------------------


class Conv1D(Module):
    """GPT-2's projection: ``y = x @ W + b`` with W stored (in_features, out_features).

    The transpose of ``Linear``'s layout, kept so that GPT-2 checkpoints load as they are.
    Backward (x flattened to (N, in)): ``dx = dout Wᵀ``, ``dW = xᵀ dout``, ``db = Σ dout``.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        in_features = check_positive_int("Conv1D", "in_features", in_features)
        out_features = check_positive_int("Conv1D", "out_features", out_features)
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(nn_init.normal((in_features, out_features), 0.02))
        self.bias = Parameter(nn_init.zeros((out_features,)))
        self._x: Any = None

    def forward(self, x: Any) -> Any:
        """x: (..., in_features) -> (..., out_features)."""
        n_in, n_out = self.in_features, self.out_features
        check_float_input(
            f"Conv1D({n_in} -> {n_out})",
            "input",
            x,
            like=self.weight.data,
            min_ndim=1,
            last_dim=n_in,
            layout=f"(..., {n_in})",
        )
        self._x = x
        x2 = x.reshape(-1, n_in)  # (N, in): one 2-D GEMM
        out = x2 @ self.weight.data  # (N, out)
        out += self.bias.data
        return out.reshape(*x.shape[:-1], n_out)

    def backward(self, dout: Any) -> Any:
        x = self._x
        n_in, n_out = self.in_features, self.out_features
        d2 = dout.reshape(-1, n_out)  # (N, out)
        self.accumulate(self.weight, x.reshape(-1, n_in).T @ d2)  # (in, N) @ (N, out)
        self.accumulate(self.bias, d2.sum(axis=0))
        return (d2 @ self.weight.data.T).reshape(x.shape)  # (N, out) @ (out, in)

    def _extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}"


class GPT2Attention(Module):
    """Causal self-attention: ``c_attn`` (C -> 3C: q, k, v), the heads, ``c_proj``, dropout.

    ``forward(x, attention_mask=None)``: x (B, T, C) -> (B, T, C); ``attention_mask`` (B, T) is
    1/True for the keys that may be attended (real tokens). Scores are scaled by 1/√head_dim
    (``scale_attn_weights``) and by 1/(layer index + 1) with ``scale_attn_by_inverse_layer_idx``.
    Saves ``scores`` and ``probs`` (B, H, T, T) and their gradients.
    """

    def __init__(self, c: GPT2Config, layer_idx: int) -> None:
        super().__init__()
        self.n_embd, self.n_head = c.n_embd, c.n_head
        self.head_dim = c.n_embd // c.n_head
        scale = 1.0 / math.sqrt(self.head_dim) if c.scale_attn_weights else 1.0
        if c.scale_attn_by_inverse_layer_idx:
            scale /= float(layer_idx + 1)
        self.scale = scale
        self.attn_pdrop = c.attn_pdrop  # dropout on the probabilities, inside the attention op
        self.c_attn = Conv1D(c.n_embd, 3 * c.n_embd)
        self.c_proj = Conv1D(c.n_embd, c.n_embd)
        self.resid_dropout = Dropout(c.resid_pdrop)
        self._cache: Any = None
        self._cached_call = False  # the last call was forward_cached: no backward possible

    def forward(self, x: Any, attention_mask: Any = None) -> Any:
        self._cached_call = False
        b, t, c = x.shape
        mask = None
        if attention_mask is not None:  # (B, Tk) -> (B, 1, 1, Tk), combined with the causal one
            like = self.c_proj.weight.data
            mask = key_padding_to_mask(attention_mask, b, t, "GPT2Attention", like)
        qkv = self.c_attn.forward(x)  # (B, T, 3C)
        q = split_heads(qkv[..., :c], self.n_head)  # (B, H, T, D)
        k = split_heads(qkv[..., c : 2 * c], self.n_head)  # (B, H, T, D)
        v = split_heads(qkv[..., 2 * c :], self.n_head)  # (B, H, T, D)
        out, self._cache = attention_forward(
            q,
            k,
            v,
            mask=mask,
            causal=True,
            dropout_p=self.attn_pdrop,
            training=self.training,
            scale=self.scale,
        )
        self.save(scores=self._cache.scores, probs=self._cache.probs)
        out = self.c_proj.forward(merge_heads(out))  # (B, T, C)
        return self.resid_dropout.forward(out)

    def forward_cached(self, x_new: Any, cache: KVCache, attention_mask: Any = None) -> Any:
        """Incremental causal self-attention, **inference only**: x_new (B, Tn, C), the new
        positions only -> (B, Tn, C).

        Projects the new positions with ``c_attn``, appends their keys and values to ``cache``
        and attends the new queries to every cached key with ``causal=True`` (aligned bottom
        right: a block of new queries sees every earlier key and the new ones up to itself), so
        the rows equal ``forward``'s on the whole sequence at those positions.
        ``attention_mask`` (B, T_cached + Tn) covers every key, cached and new. Dropout is off,
        nothing is kept for a backward (no scores, no probabilities), and ``backward`` after it
        raises. Needs eval mode.
        """
        who = f"GPT2Attention(n_embd={self.n_embd}, n_head={self.n_head})"
        _check_inference(self, who)
        if not isinstance(cache, KVCache):
            raise TypeError(
                f"{who}: forward_cached needs a KVCache, got {type(cache).__name__}"
            )
        like = self.c_proj.weight.data
        check_float_input(
            who, "x_new", x_new, like=like, ndim=3, last_dim=self.n_embd,
            layout=f"(batch, new positions, {self.n_embd})",
        )
        b, _, c = x_new.shape
        self._cached_call, self._cache = True, None
        qkv = self.c_attn.forward(x_new)  # (B, Tn, 3C)
        q = split_heads(qkv[..., :c], self.n_head)  # (B, H, Tn, D)
        k, v = cache.append(
            split_heads(qkv[..., c : 2 * c], self.n_head),
            split_heads(qkv[..., 2 * c :], self.n_head),
        )  # (B, H, T_cached + Tn, D) each
        mask = None
        if attention_mask is not None:
            mask = key_padding_to_mask(attention_mask, b, k.shape[2], who, like)
        out, _ = attention_forward(
            q, k, v, mask=mask, causal=True, training=False, scale=self.scale
        )
        return self.c_proj.forward(merge_heads(out))  # (B, Tn, C); resid_dropout is off

    def backward(self, dout: Any) -> Any:
        _refuse_backward(self, "GPT2Attention")
        d = self.c_proj.backward(self.resid_dropout.backward(dout))  # (B, T, C)
        grads: dict[str, Any] = {}
        dq, dk, dv = attention_backward(split_heads(d, self.n_head), self._cache, grads)
        self.save_grad(**grads)
        xp = get_array_module(d)
        dqkv = xp.concatenate([merge_heads(dq), merge_heads(dk), merge_heads(dv)], axis=-1)
        return self.c_attn.backward(dqkv)  # (B, T, C)

    def _extra_repr(self) -> str:
        return f"n_embd={self.n_embd}, n_head={self.n_head}, causal=True"


class GPT2MLP(Module):
    """``dropout(c_proj(act(c_fc(x))))``: C -> n_inner -> C. Saves ``pre_activation``."""

    def __init__(self, c: GPT2Config) -> None:
        super().__init__()
        self.c_fc = Conv1D(c.n_embd, c.inner_dim)
        self.c_proj = Conv1D(c.inner_dim, c.n_embd)
        self.act = Activation(c.activation_function)
        self.dropout = Dropout(c.resid_pdrop)

    def forward(self, x: Any) -> Any:
        pre = self.c_fc.forward(x)  # (B, T, n_inner)
        self.save(pre_activation=pre)
        return self.dropout.forward(self.c_proj.forward(self.act.forward(pre)))

    def backward(self, dout: Any) -> Any:
        dpre = self.act.backward(self.c_proj.backward(self.dropout.backward(dout)))
        self.save_grad(pre_activation=dpre)
        return self.c_fc.backward(dpre)


class GPT2Block(Module):
    """``a = x + attn(ln_1(x))``, ``out = a + mlp(ln_2(a))`` (the dropouts sit inside attn and
    mlp, as in Hugging Face)."""

    def __init__(self, c: GPT2Config, layer_idx: int) -> None:
        super().__init__()
        self.ln_1 = LayerNorm(c.n_embd, c.layer_norm_epsilon)
        self.attn = GPT2Attention(c, layer_idx)
        self.ln_2 = LayerNorm(c.n_embd, c.layer_norm_epsilon)
        self.mlp = GPT2MLP(c)

    def forward(self, x: Any, attention_mask: Any = None) -> Any:
        """x: (B, T, C) -> (B, T, C)."""
        self._cached_call = False
        a = residual_forward(
            x, lambda h: self.attn.forward(h, attention_mask), self.ln_1, None, True
        )
        return residual_forward(a, self.mlp.forward, self.ln_2, None, True)

    def forward_cached(self, x_new: Any, cache: KVCache, attention_mask: Any = None) -> Any:
        """The block on the new positions only, **inference only**: x_new (B, Tn, C) ->
        (B, Tn, C), with ``GPT2Attention.forward_cached`` (``cache`` is this layer's)."""
        _check_inference(self, "GPT2Block")
        self._cached_call = True
        a = residual_forward(
            x_new,
            lambda h: self.attn.forward_cached(h, cache, attention_mask),
            self.ln_1,
            None,
            True,
        )
        return residual_forward(a, self.mlp.forward, self.ln_2, None, True)

    def backward(self, dout: Any) -> Any:
        _refuse_backward(self, "GPT2Block")
        da = residual_backward(dout, self.mlp.backward, self.ln_2, None, True)
        return residual_backward(da, self.attn.backward, self.ln_1, None, True)
