"""The Transformer's blocks: FeedForward, EncoderLayer and DecoderLayer, post-LN or pre-LN.

Post-LN ("Add & Norm", the paper and BERT):   x = LN(x + Dropout(Sublayer(x)))
Pre-LN  (``norm_first=True``, the BERT sketch): x = x + Dropout(Sublayer(LN(x)))

The wiring itself is ``residual_forward`` / ``residual_backward`` in ``nn/blocks.py``, shared
with BERT and DistilBERT.
"""

from __future__ import annotations

from typing import Any

from ..functional.packing import TokenPacking
from .attention import MultiHeadAttention
from .blocks import residual_backward, residual_forward
from .checks import check_float_input
from .kv_cache import KVCache
from .layers import (
    Activation,
    Dropout,
    LayerNorm,
    Linear,
    linear_activation_backward,
    linear_activation_forward,
)
from .module import Module


class FeedForward(Module):
    """``linear2(dropout(act(linear1(x))))``: d_model -> d_ff -> d_model.

    ``names`` are the attribute names of the two linear layers (``("lin1", "lin2")`` for
    DistilBERT); ``dropout_last=True`` moves the dropout after the second layer,
    ``dropout(linear2(act(linear1(x))))``, as DistilBERT has it. Saves ``pre_activation`` (the
    output of linear1) and ``hidden`` (after the activation), and their gradients.

    Where linear1 has a bias, its bias goes into the activation's op
    (``linear_activation_forward``: one pass fewer over the (..., d_ff) activations, and a fused
    kernel where there is one); the same ``pre_activation = x W1ᵀ + b1``, the same gradients.
    """

    def __init__(
        self,
        d_model: int,
        d_ff: int,
        activation: str = "relu",
        dropout: float = 0.0,
        names: tuple[str, str] = ("linear1", "linear2"),
        dropout_last: bool = False,
    ) -> None:
        super().__init__()
        self._names = names
        self.dropout_last = dropout_last
        setattr(self, names[0], Linear(d_model, d_ff))
        self.activation = Activation(activation)
        if not dropout_last:
            self.dropout = Dropout(dropout)
        setattr(self, names[1], Linear(d_ff, d_model))
        if dropout_last:
            self.dropout = Dropout(dropout)
        self.d_model, self.d_ff = d_model, d_ff
        self._folded: Any = None  # (LinearCache, BiasReluCache | BiasGeluCache) of the forward

    def forward(self, x: Any) -> Any:
        """x: (..., d_model) -> (..., d_model)."""
        first, second = self._modules[self._names[0]], self._modules[self._names[1]]
        check_float_input(
            f"FeedForward({self.d_model} -> {self.d_ff} -> {self.d_model})",
            "input",
            x,
            like=first.weight.data,
            min_ndim=1,
            last_dim=self.d_model,
            layout=f"(..., {self.d_model})",
        )
        if first.bias is None:  # linear1 then the activation, each its own module
            self._folded = None
            pre = first.forward(x)  # (B, T, d_ff)
            hidden = self.activation.forward(pre)
        else:
            pre, hidden, self._folded = linear_activation_forward(first, self.activation, x)
        self.save(pre_activation=pre, hidden=hidden)
        if self.dropout_last:
            return self.dropout.forward(second.forward(hidden))
        return second.forward(self.dropout.forward(hidden))

    def backward(self, dout: Any) -> Any:
        """dout: (..., d_model) -> dx (..., d_model)."""
        first, second = self._modules[self._names[0]], self._modules[self._names[1]]
        if self.dropout_last:
            dhidden = second.backward(self.dropout.backward(dout))
        else:
            dhidden = self.dropout.backward(second.backward(dout))
        if self._folded is None:
            dpre = self.activation.backward(dhidden)
            self.save_grad(hidden=dhidden, pre_activation=dpre)
            return first.backward(dpre)
        dpre, dx = linear_activation_backward(first, dhidden, self._folded)
        self.save_grad(hidden=dhidden, pre_activation=dpre)
        return dx


class _ResidualLayer(Module):
    """What EncoderLayer and DecoderLayer share: their construction (the sub-modules, in
    PyTorch's names and order) and the ``norm_first`` switch. A subclass sets ``causal`` (the
    self-attention's look-ahead mask) and ``cross_attention`` (a second attention, to memory)."""

    causal = False
    cross_attention = False
    norm1: LayerNorm
    norm2: LayerNorm
    dropout1: Dropout
    dropout2: Dropout

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        dropout: float = 0.1,
        activation: str = "relu",
        norm_first: bool = False,
        layer_norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout=dropout, causal=self.causal)
        if self.cross_attention:
            self.cross_attn = MultiHeadAttention(d_model, n_heads, dropout=dropout)
        self.ff = FeedForward(d_model, d_ff, activation, dropout)
        self.d_model = self.self_attn.d_model
        n_sublayers = 3 if self.cross_attention else 2
        for i in range(1, n_sublayers + 1):  # norm1, norm2[, norm3]: one per sublayer
            setattr(self, f"norm{i}", LayerNorm(d_model, layer_norm_eps))
        for i in range(1, n_sublayers + 1):  # dropout1, dropout2[, dropout3]
            setattr(self, f"dropout{i}", Dropout(dropout))

    def _check_rows(self, who: str, name: str, x: Any, packing: Any) -> None:
        """x: (B, T, C), or the rows (N, C) of ``packing``."""
        if packing is None:
            layout, ndim = f"(batch, length, {self.d_model})", 3
        else:
            layout, ndim = f"(real tokens, {self.d_model})", 2
        like = self.norm1.weight.data
        check_float_input(who, name, x, like=like, ndim=ndim, last_dim=self.d_model,
                          layout=layout)

    def _self_attention_backward(self, dout: Any) -> Any:
        """The self-attention's dx (its keys and values come from x: no memory gradient)."""
        return self.self_attn.backward(dout).dx


class EncoderLayer(_ResidualLayer):
    """Self-attention and feed-forward, each wrapped in a residual and a LayerNorm
    (``residual_forward``: post-LN, or pre-LN with ``norm_first=True``).

    ``EncoderLayer(d_model, n_heads, d_ff, dropout=0.1, activation="relu", norm_first=False,
    layer_norm_eps=1e-5)``. Names follow ``torch.nn.TransformerEncoderLayer`` where they can
    (norm1, norm2, dropout1, dropout2); the attention projections are
    ``self_attn.{q,k,v,out}_proj`` and the feed-forward is ``ff.linear1`` / ``ff.linear2``.
    ``backward(dout)`` returns ``dx``.
    """

    def forward(
        self, x: Any, key_padding_mask: Any = None, packing: TokenPacking | None = None
    ) -> Any:
        """x: (B, T, C); key_padding_mask: (B, T), True for real tokens. Packed (``packing``, a
        ``TokenPacking`` of the batch): x (N, C), the real tokens' rows -> (N, C); the padding is
        then the packing's, and only attention sees the padded layout."""
        self._check_rows(f"EncoderLayer(d_model={self.d_model})", "x", x, packing)
        nf = self.norm_first

        def self_attention(h: Any) -> Any:
            return self.self_attn.forward(h, key_padding_mask=key_padding_mask, packing=packing)

        x = residual_forward(x, self_attention, self.norm1, self.dropout1, nf)
        return residual_forward(x, self.ff.forward, self.norm2, self.dropout2, nf)

    def backward(self, dout: Any) -> Any:
        """dout: (B, T, C) -> dx (B, T, C)."""
        nf = self.norm_first
        dh = residual_backward(dout, self.ff.backward, self.norm2, self.dropout2, nf)
        return residual_backward(dh, self._self_attention_backward, self.norm1, self.dropout1, nf)


class DecoderLayer(_ResidualLayer):
    """Masked self-attention, cross-attention to the encoder output, and feed-forward, each in
    a residual and a LayerNorm (norm1..3, dropout1..3, as ``torch.nn.TransformerDecoderLayer``).

    Queries of the cross-attention come from the decoder, keys and values from the encoder
    ``memory``. ``backward(dout)`` always returns the pair ``(dx, dmemory)``.
    """

    causal = True
    cross_attention = True
    norm3: LayerNorm
    dropout3: Dropout
    _cached_call = False  # the last call was decode_step: no backward possible

    def forward(
        self,
        x: Any,
        memory: Any,
        tgt_key_padding_mask: Any = None,
        memory_key_padding_mask: Any = None,
        packing: TokenPacking | None = None,
        memory_packing: TokenPacking | None = None,
    ) -> Any:
        """x: (B, T, C) decoder input, memory: (B, S, C) encoder output; masks True = real token.
        Packed (``packing`` and ``memory_packing``, the two batches' ``TokenPacking``s): x (N, C)
        and memory (Ns, C), the real tokens' rows -> (N, C), the masks then the packings'."""
        who = f"DecoderLayer(d_model={self.d_model})"
        if (packing is None) != (memory_packing is None):
            raise ValueError(
                f"{who}: a packed decoder layer needs both packings, packing= (the target's) and "
                f"memory_packing= (the source's), got only "
                f"{'packing' if memory_packing is None else 'memory_packing'}"
            )
        self._check_rows(who, "x", x, packing)
        self._check_rows(who, "memory", memory, memory_packing)
        if packing is None and memory.shape[0] != x.shape[0]:
            raise ValueError(
                f"{who}: decoder input {tuple(x.shape)} and encoder memory "
                f"{tuple(memory.shape)} must be (batch, length, width) with the same batch size"
            )
        nf = self.norm_first

        def self_attention(h: Any) -> Any:
            return self.self_attn.forward(h, key_padding_mask=tgt_key_padding_mask,
                                          packing=packing)

        def cross_attention(h: Any) -> Any:
            return self.cross_attn.forward(h, memory, key_padding_mask=memory_key_padding_mask,
                                           packing=packing, memory_packing=memory_packing)

        self._cached_call = False
        x = residual_forward(x, self_attention, self.norm1, self.dropout1, nf)
        x = residual_forward(x, cross_attention, self.norm2, self.dropout2, nf)
        return residual_forward(x, self.ff.forward, self.norm3, self.dropout3, nf)

    def decode_step(
        self,
        x: Any,
        memory: Any,
        self_cache: KVCache,
        cross_cache: KVCache,
        tgt_key_padding_mask: Any = None,
        memory_key_padding_mask: Any = None,
    ) -> Any:
        """The layer on the new target positions only, **inference only** (eval mode, no
        backward): x (B, Tn, C) -> (B, Tn, C), the rows ``forward`` would give at those
        positions of the whole sequence.

        ``self_cache`` holds the keys and values of the earlier positions (the new ones are
        appended); ``cross_cache`` the memory's, computed from ``memory`` (B, S, C) on the first
        step (later steps may pass None). ``tgt_key_padding_mask`` (B, T_so_far + Tn) covers
        every target position read so far, new ones included; ``memory_key_padding_mask``
        (B, S). Both True = real token.
        """
        if self.training:
            raise RuntimeError(
                f"DecoderLayer(d_model={self.d_model}): decode_step is inference only: call "
                ".eval() first"
            )
        nf = self.norm_first

        def self_attention(h: Any) -> Any:
            return self.self_attn.forward_cached(
                h, self_cache, key_padding_mask=tgt_key_padding_mask
            )

        def cross_attention(h: Any) -> Any:
            return self.cross_attn.forward_cached(
                h, cross_cache, memory, key_padding_mask=memory_key_padding_mask
            )

        self._cached_call = True
        x = residual_forward(x, self_attention, self.norm1, self.dropout1, nf)
        x = residual_forward(x, cross_attention, self.norm2, self.dropout2, nf)
        return residual_forward(x, self.ff.forward, self.norm3, self.dropout3, nf)

    def backward(self, dout: Any) -> tuple[Any, Any]:
        """dout: (B, T, C) -> ``(dx, dmemory)``, (B, T, C) and (B, S, C)."""
        if self._cached_call:
            raise RuntimeError(
                "DecoderLayer: backward after decode_step: the cached path is inference only and "
                "keeps nothing for a backward; run forward first"
            )
        nf = self.norm_first
        dmemory = None

        def cross_attention_backward(d: Any) -> Any:
            nonlocal dmemory
            dq, dmemory = self.cross_attn.backward(d)  # cross-attention: (dqueries, dmemory)
            return dq

        dz = residual_backward(dout, self.ff.backward, self.norm3, self.dropout3, nf)
        dy = residual_backward(dz, cross_attention_backward, self.norm2, self.dropout2, nf)
        dx = residual_backward(dy, self._self_attention_backward, self.norm1, self.dropout1, nf)
        return dx, dmemory
