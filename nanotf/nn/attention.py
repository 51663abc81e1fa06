"""Multi-head attention: project, split into heads, attend, merge, project back."""

from __future__ import annotations

from typing import Any, NamedTuple

from ..checks import broadcast_shape
from ..functional import (
    attention_backward,
    attention_forward,
    merge_heads,
    padding_mask,
    split_heads,
)
from ..functional.packing import TokenPacking, pack_tokens, unpack_tokens
from .checks import (
    check_array,
    check_float_input,
    check_mask,
    check_positive_int,
    check_probability,
    describe,
)
from .kv_cache import KVCache
from .layers import Linear
from .module import Module


def key_padding_to_mask(
    key_padding_mask: Any, batch: int, t_k: int, who: str = "attention", like: Any = None
) -> Any:
    """(B, Tk) with True/1 for real tokens -> boolean (B, 1, 1, Tk), type- and shape-checked
    in the module's words (and of ``like``'s array module), then made by ``padding_mask``."""
    check_mask(
        who,
        "key padding mask",
        key_padding_mask,
        (batch, t_k),
        "shape (batch, key length)",
        like,
    )
    return padding_mask(key_padding_mask != 0)  # != 0: a 0/1 float mask becomes boolean


class AttentionGrads(NamedTuple):
    """What ``MultiHeadAttention.backward`` returns: ``dx`` (B, T, C), the gradient of the
    queries' input, and ``dmemory`` (B, S, C), the gradient of the memory the keys and values
    came from in cross-attention (None for self-attention)."""

    dx: Any
    dmemory: Any


class MultiHeadAttention(Module):
    """Self- or cross-attention with ``n_heads`` heads over a model width ``d_model``.

    ``forward(x, memory=None, key_padding_mask=None, attn_mask=None)``: queries come from
    ``x: (B, Tq, C)``, keys and values from ``memory: (B, Tk, C)`` (cross-attention) or from ``x``
    (self-attention). ``key_padding_mask: (B, Tk)`` is True (or 1) for real tokens, as Hugging
    Face's ``attention_mask`` (note: PyTorch's ``key_padding_mask`` has the opposite meaning).
    ``attn_mask`` is a boolean broadcastable to (B, H, Tq, Tk), True = may attend; ``causal``
    (set at construction) adds the look-ahead mask.

    ``names`` are the attribute names of the query, key, value and output projections, so a
    model can carry its checkpoint's names; an output name of None leaves the output
    projection out (BERT keeps it in a separate module).

    Packed (``packing=`` / ``memory_packing=``, ``TokenPacking``s of
    ``nanotf.functional.packing``): ``x`` (and ``memory``) are the real tokens' rows (N, C), the
    projections run on those rows alone, attention runs in the padded layout (B, H, T, D), zeros
    at the padding, which the packing's mask keeps out of the keys, and the output is rows again
    (N, C). The same numbers as the padded call at the real tokens.

    Saved for inspection: ``scores`` (B, H, Tq, Tk) after scaling and masking, ``probs`` (B, H,
    Tq, Tk) before dropout, and, after a backward, the gradients of both.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        causal: bool = False,
        names: tuple[str, str, str, str | None] = ("q_proj", "k_proj", "v_proj", "out_proj"),
    ) -> None:
        super().__init__()
        d_model = check_positive_int("MultiHeadAttention", "d_model", d_model)
        n_heads = check_positive_int("MultiHeadAttention", "n_heads", n_heads)
        if d_model % n_heads:
            raise ValueError(
                f"MultiHeadAttention: d_model={d_model} is not divisible by n_heads={n_heads} "
                "(each head gets d_model / n_heads dimensions)"
            )
        dropout = check_probability("MultiHeadAttention", "dropout", dropout)
        self.d_model, self.n_heads, self.dropout, self.causal = d_model, n_heads, dropout, causal
        self._names = names
        for name in names[:3]:
            setattr(self, name, Linear(d_model, d_model, bias=bias))
        if names[3] is not None:
            setattr(self, names[3], Linear(d_model, d_model, bias=bias))
        self._cache: Any = None
        self._packings: tuple[Any, Any] = (None, None)  # (queries', keys') TokenPacking or None
        self._cross = False
        self._cached_call = False  # the last call was forward_cached: no backward possible

    def _proj(self, i: int) -> Linear:
        return self._modules[self._names[i]]  # type: ignore[return-value]

    def forward(
        self,
        x: Any,
        memory: Any = None,
        key_padding_mask: Any = None,
        attn_mask: Any = None,
        *,
        packing: TokenPacking | None = None,
        memory_packing: TokenPacking | None = None,
    ) -> Any:
        """x: (B, Tq, C) -> (B, Tq, C); with ``packing``, x: (N, C) the real tokens' rows ->
        (N, C) (see the class; the keys' padding is then the packing's)."""
        who = f"MultiHeadAttention(d_model={self.d_model}, n_heads={self.n_heads})"
        like = self._proj(0).weight.data
        if packing is not None or memory_packing is not None:
            b, t_q, t_k = self._check_packed(who, x, memory, key_padding_mask, packing,
                                             memory_packing)
            kv_packing = packing if memory is None else memory_packing
            key_padding_mask = kv_packing.mask  # type: ignore[union-attr]
        else:
            b, t_q, t_k = self._check_padded(who, x, memory)
            kv_packing = None
        kv = x if memory is None else memory
        mask = None
        if key_padding_mask is not None:
            mask = key_padding_to_mask(key_padding_mask, b, t_k, who, like)
        if attn_mask is not None:
            check_array(who, "attn_mask", attn_mask, like)
            if attn_mask.dtype != bool:
                raise TypeError(
                    f"{who}: attn_mask must be a boolean array (True = may attend), "
                    f"got {describe(attn_mask)}"
                )
            full = (b, self.n_heads, t_q, t_k)
            if attn_mask.ndim > 4 or broadcast_shape(tuple(attn_mask.shape), full) != full:
                raise ValueError(
                    f"{who}: attn_mask must broadcast to the scores (B, H, Tq, Tk) = {full}, "
                    f"got shape {tuple(attn_mask.shape)}"
                )
            mask = attn_mask if mask is None else mask & attn_mask
        self._cross = memory is not None
        self._cached_call = False
        self._packings = (packing, kv_packing)
        q = self._to_heads(self._proj(0).forward(x), packing)  # (B, H, Tq, D)
        k = self._to_heads(self._proj(1).forward(kv), kv_packing)  # (B, H, Tk, D)
        v = self._to_heads(self._proj(2).forward(kv), kv_packing)  # (B, H, Tk, D)
        out, self._cache = attention_forward(
            q, k, v, mask=mask, causal=self.causal, dropout_p=self.dropout, training=self.training
        )
        self.save(scores=self._cache.scores, probs=self._cache.probs)
        out = self._from_heads(out, packing)  # (B, Tq, C), or (N, C) packed
        if self._names[3] is not None:
            out = self._proj(3).forward(out)
        return out

    def _to_heads(self, x: Any, packing: TokenPacking | None) -> Any:
        """(B, T, C), or the rows (N, C) of ``packing`` -> (B, H, T, D), zeros at the padding."""
        return split_heads(x if packing is None else unpack_tokens(x, packing), self.n_heads)

    def _from_heads(self, a: Any, packing: TokenPacking | None) -> Any:
        """(B, H, T, D) -> (B, T, C), or the real tokens' rows (N, C) with ``packing``."""
        merged = merge_heads(a)  # (B, T, C)
        return merged if packing is None else pack_tokens(merged, packing)

    def _check_padded(self, who: str, x: Any, memory: Any) -> tuple[int, int, int]:
        """x (B, Tq, C) and memory (B, Tk, C) or None -> (B, Tq, Tk)."""
        like = self._proj(0).weight.data
        layout = f"(batch, length, {self.d_model})"
        check_float_input(who, "x", x, like=like, ndim=3, last_dim=self.d_model, layout=layout)
        if memory is not None:
            check_float_input(
                who, "memory", memory, like=like, ndim=3, last_dim=self.d_model, layout=layout
            )
        kv = x if memory is None else memory
        b, t_q, _ = x.shape
        if kv.shape[0] != b:
            raise ValueError(
                f"{who}: batch sizes differ: queries have {b}, memory has {kv.shape[0]} "
                "(x and memory must have the same batch size)"
            )
        if kv.shape[1] == 0:
            raise ValueError(
                f"{who}: {'memory' if memory is not None else 'x'} must have at least one "
                f"position (the keys attention averages over), got shape {tuple(kv.shape)}"
            )
        return b, t_q, kv.shape[1]

    def _check_packed(
        self,
        who: str,
        x: Any,
        memory: Any,
        key_padding_mask: Any,
        packing: Any,
        memory_packing: Any,
    ) -> tuple[int, int, int]:
        """x (N, C) rows of ``packing``, memory (Ns, C) rows of ``memory_packing`` or None ->
        (B, Tq, Tk), the padded layout attention runs in."""
        if packing is None:
            raise ValueError(f"{who}: memory_packing needs the queries' packing too (packing=)")
        if key_padding_mask is not None:
            raise ValueError(
                f"{who}: with packing the keys' padding is the packing's mask: pass "
                "key_padding_mask=None"
            )
        like = self._proj(0).weight.data
        pairs = [("x", x, packing)]
        if memory is None:
            if memory_packing is not None:
                raise ValueError(f"{who}: memory_packing given without a memory")
        else:
            if memory_packing is None:
                raise ValueError(
                    f"{who}: packed cross-attention needs the memory's packing (memory_packing=)"
                )
            pairs.append(("memory", memory, memory_packing))
        for name, rows, pk in pairs:
            if not isinstance(pk, TokenPacking):
                raise TypeError(
                    f"{who}: the packing of {name} must be a TokenPacking (token_packing(mask)), "
                    f"got {describe(pk)}"
                )
            layout = f"(real tokens, {self.d_model}) = ({pk.n_tokens}, {self.d_model})"
            check_float_input(who, name, rows, like=like, ndim=2, last_dim=self.d_model,
                              layout=layout)
            if rows.shape[0] != pk.n_tokens:
                raise ValueError(f"{who}: {name} must have shape {layout}, got "
                                 f"{tuple(rows.shape)}")
        kv_packing = packing if memory is None else memory_packing
        b, t_q = packing.shape
        if kv_packing.shape[0] != b:
            raise ValueError(
                f"{who}: batch sizes differ: the queries' packing has {b} sequences, the "
                f"memory's {kv_packing.shape[0]}"
            )
        if kv_packing.shape[1] == 0:
            raise ValueError(f"{who}: the keys' packing has no positions (length 0)")
        return b, t_q, kv_packing.shape[1]

    def forward_cached(
        self, x: Any, cache: KVCache, memory: Any = None, key_padding_mask: Any = None
    ) -> Any:
        """Incremental attention for decoding, **inference only**: x (B, Tn, C), the new
        positions only -> (B, Tn, C).

        Self-attention (``memory`` None and ``cache`` not set from a memory): project the new
        positions' q, k, v, append k, v to ``cache`` and attend the new queries to every cached
        key. The causal mask aligns bottom-right (``causal_mask``), so a block of new queries
        sees all earlier keys and the new ones up to itself: the same outputs as ``forward`` on
        the whole sequence, at those positions. Cross-attention: on the first call ``memory``
        (B, S, C) is projected to keys and values once and kept in ``cache``; later calls reuse
        them (``memory`` may then be None; a memory given again is ignored).
        ``key_padding_mask`` (B, Tk) covers *all* keys: the cached and new positions
        (self-attention) or the memory (cross-attention); True = real token.

        Nothing is kept for a backward (no attention cache, no saved scores), dropout is off, and
        ``backward`` after it raises. Needs eval mode (``module.eval()``).
        """
        who = f"MultiHeadAttention(d_model={self.d_model}, n_heads={self.n_heads})"
        if self.training:
            raise RuntimeError(
                f"{who}: forward_cached is inference only (no dropout, no backward): call "
                ".eval() first"
            )
        if not isinstance(cache, KVCache):
            raise TypeError(f"{who}: forward_cached needs a KVCache, got {describe(cache)}")
        like = self._proj(0).weight.data
        layout = f"(batch, length, {self.d_model})"
        check_float_input(who, "x", x, like=like, ndim=3, last_dim=self.d_model, layout=layout)
        h = self.n_heads
        b = x.shape[0]
        q = split_heads(self._proj(0).forward(x), h)  # (B, Tn, C) -> (B, H, Tn, D)
        if cache.static:  # cross-attention: the memory's keys and values, computed once
            k, v = cache.keys, cache.values
        elif memory is not None:
            if cache.keys is not None:
                raise ValueError(f"{who}: memory given to a self-attention cache that holds keys")
            check_float_input(
                who, "memory", memory, like=like, ndim=3, last_dim=self.d_model, layout=layout
            )
            k = split_heads(self._proj(1).forward(memory), h)  # (B, H, S, D)
            v = split_heads(self._proj(2).forward(memory), h)
            cache.set(k, v)
        else:  # self-attention: add the new positions' keys and values
            k_new = split_heads(self._proj(1).forward(x), h)  # (B, H, Tn, D)
            v_new = split_heads(self._proj(2).forward(x), h)
            k, v = cache.append(k_new, v_new)  # (B, H, T_so_far, D)
        if k.shape[0] != b:
            raise ValueError(
                f"{who}: batch sizes differ: queries have {b} rows, the cache {k.shape[0]} "
                "(reorder the cache to the rows being decoded)"
            )
        mask = None
        if key_padding_mask is not None:
            mask = key_padding_to_mask(key_padding_mask, b, k.shape[2], who, like)
        causal = self.causal and not cache.static
        out, _ = attention_forward(q, k, v, mask=mask, causal=causal, training=False)
        self._cache, self._cached_call = None, True  # nothing for a backward
        out = merge_heads(out)  # (B, Tn, C)
        if self._names[3] is not None:
            out = self._proj(3).forward(out)
        return out

    def backward(self, dout: Any) -> AttentionGrads:
        """dout: (B, T, C) -> ``AttentionGrads(dx, dmemory)``, always: the gradient of the queries'
        input x and of the memory; ``dmemory`` is None after a self-attention forward, whose
        keys and values came from x (their gradient is already added into dx)."""
        if self._cached_call:
            raise RuntimeError(
                "MultiHeadAttention: backward after forward_cached: the cached path is inference "
                "only and keeps nothing for a backward; run forward first"
            )
        if self._cache is None:
            raise RuntimeError("MultiHeadAttention: backward needs a forward first")
        if self._names[3] is not None:
            dout = self._proj(3).backward(dout)
        grads: dict[str, Any] = {}  # dL/dprobs and dL/dscores, kept for inspection
        packing, kv_packing = self._packings
        dq, dk, dv = attention_backward(self._to_heads(dout, packing), self._cache, grads)
        self.save_grad(**grads)
        dx = self._proj(0).backward(self._from_heads(dq, packing))
        dkv = self._proj(1).backward(self._from_heads(dk, kv_packing))
        dkv += self._proj(2).backward(self._from_heads(dv, kv_packing))
        if self._cross:
            return AttentionGrads(dx, dkv)
        dx += dkv
        return AttentionGrads(dx, None)

    def _extra_repr(self) -> str:
        return f"d_model={self.d_model}, n_heads={self.n_heads}, causal={self.causal}"
