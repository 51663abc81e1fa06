"""The Transformer's blocks: FeedForward, EncoderLayer and DecoderLayer, post-LN or pre-LN.

Post-LN ("Add & Norm", the paper and BERT):   x = LN(x + Dropout(Sublayer(x)))
Pre-LN  (``norm_first=True``, the BERT sketch): x = x + Dropout(Sublayer(LN(x)))
"""

from __future__ import annotations

from typing import Any

from ._checks import check_float_input
from .attention import MultiHeadAttention
from .layers import Activation, Dropout, LayerNorm, Linear
from .module import Module


class FeedForward(Module):
    """``linear2(dropout(act(linear1(x))))``: d_model -> d_ff -> d_model.

    Saves ``pre_activation`` (the output of linear1) and ``hidden`` (after the activation).
    """

    def __init__(
        self,
        d_model: int,
        d_ff: int,
        activation: str = "relu",
        dropout: float = 0.0,
        names: tuple[str, str] = ("linear1", "linear2"),
    ) -> None:
        super().__init__()
        self._names = names
        setattr(self, names[0], Linear(d_model, d_ff))
        self.activation = Activation(activation)
        self.dropout = Dropout(dropout)
        setattr(self, names[1], Linear(d_ff, d_model))
        self.d_model, self.d_ff = d_model, d_ff

    def forward(self, x: Any) -> Any:
        """x: (..., d_model) -> (..., d_model)."""
        first = self._modules[self._names[0]]
        check_float_input(
            f"FeedForward({self.d_model} -> {self.d_ff} -> {self.d_model})",
            "input",
            x,
            like=first.weight.data,
            min_ndim=1,
            last_dim=self.d_model,
            layout=f"(..., {self.d_model})",
        )
        pre = first.forward(x)  # (B, T, d_ff)
        hidden = self.activation.forward(pre)
        self.save(pre_activation=pre, hidden=hidden)
        return self._modules[self._names[1]].forward(self.dropout.forward(hidden))

    def backward(self, dout: Any) -> Any:
        dhidden = self.dropout.backward(self._modules[self._names[1]].backward(dout))
        dpre = self.activation.backward(dhidden)
        self.save_grad(hidden=dhidden, pre_activation=dpre)
        return self._modules[self._names[0]].backward(dpre)


class EncoderLayer(Module):
    """Self-attention and feed-forward, each wrapped in a residual and a LayerNorm.

    Names follow ``torch.nn.TransformerEncoderLayer`` where they can (norm1, norm2, dropout1,
    dropout2); the attention projections are ``self_attn.{q,k,v,out}_proj`` and the
    feed-forward is ``ff.linear1`` / ``ff.linear2``.
    """

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
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout=dropout)
        self.ff = FeedForward(d_model, d_ff, activation, dropout)
        self.d_model = self.self_attn.d_model
        self.norm1 = LayerNorm(d_model, layer_norm_eps)
        self.norm2 = LayerNorm(d_model, layer_norm_eps)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)

    def forward(self, x: Any, key_padding_mask: Any = None) -> Any:
        """x: (B, T, C); key_padding_mask: (B, T), True for real tokens."""
        check_float_input(
            f"EncoderLayer(d_model={self.d_model})",
            "x",
            x,
            like=self.norm1.weight.data,
            ndim=3,
            last_dim=self.d_model,
            layout=f"(batch, length, {self.d_model})",
        )
        if self.norm_first:
            a = self.self_attn.forward(self.norm1.forward(x), key_padding_mask=key_padding_mask)
            x = x + self.dropout1.forward(a)
            return x + self.dropout2.forward(self.ff.forward(self.norm2.forward(x)))
        a = self.self_attn.forward(x, key_padding_mask=key_padding_mask)
        x = self.norm1.forward(x + self.dropout1.forward(a))
        return self.norm2.forward(x + self.dropout2.forward(self.ff.forward(x)))

    def backward(self, dout: Any) -> Any:
        if self.norm_first:
            # out = y + drop2(ff(norm2(y))),  y = x + drop1(attn(norm1(x)))
            dy = dout + self.norm2.backward(self.ff.backward(self.dropout2.backward(dout)))
            return dy + self.norm1.backward(self.self_attn.backward(self.dropout1.backward(dy)))
        # out = norm2(h + drop2(ff(h))),  h = norm1(x + drop1(attn(x)))
        d = self.norm2.backward(dout)
        dh = d + self.ff.backward(self.dropout2.backward(d))
        d = self.norm1.backward(dh)
        return d + self.self_attn.backward(self.dropout1.backward(d))


class DecoderLayer(Module):
    """Masked self-attention, cross-attention to the encoder output, and feed-forward.

    Queries of the cross-attention come from the decoder, keys and values from the encoder
    ``memory``. ``backward`` returns ``(dx, dmemory)``.
    """

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
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout=dropout, causal=True)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, dropout=dropout)
        self.ff = FeedForward(d_model, d_ff, activation, dropout)
        self.d_model = self.self_attn.d_model
        self.norm1 = LayerNorm(d_model, layer_norm_eps)
        self.norm2 = LayerNorm(d_model, layer_norm_eps)
        self.norm3 = LayerNorm(d_model, layer_norm_eps)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.dropout3 = Dropout(dropout)

    def forward(
        self,
        x: Any,
        memory: Any,
        tgt_key_padding_mask: Any = None,
        memory_key_padding_mask: Any = None,
    ) -> Any:
        """x: (B, T, C) decoder input, memory: (B, S, C) encoder output; masks True = real token."""
        who = f"DecoderLayer(d_model={self.d_model})"
        layout = f"(batch, length, {self.d_model})"
        like = self.norm1.weight.data
        check_float_input(who, "x", x, like=like, ndim=3, last_dim=self.d_model, layout=layout)
        check_float_input(
            who, "memory", memory, like=like, ndim=3, last_dim=self.d_model, layout=layout
        )
        if memory.shape[0] != x.shape[0]:
            raise ValueError(
                f"{who}: decoder input {tuple(x.shape)} and encoder memory "
                f"{tuple(memory.shape)} must be (batch, length, width) with the same batch size"
            )
        sa, ca = self.self_attn, self.cross_attn
        tgt_mask, mem_mask = tgt_key_padding_mask, memory_key_padding_mask
        if self.norm_first:
            s = sa.forward(self.norm1.forward(x), key_padding_mask=tgt_mask)
            x = x + self.dropout1.forward(s)
            c = ca.forward(self.norm2.forward(x), memory, key_padding_mask=mem_mask)
            x = x + self.dropout2.forward(c)
            return x + self.dropout3.forward(self.ff.forward(self.norm3.forward(x)))
        x = self.norm1.forward(x + self.dropout1.forward(sa.forward(x, key_padding_mask=tgt_mask)))
        c = ca.forward(x, memory, key_padding_mask=mem_mask)
        x = self.norm2.forward(x + self.dropout2.forward(c))
        return self.norm3.forward(x + self.dropout3.forward(self.ff.forward(x)))

    def backward(self, dout: Any) -> tuple[Any, Any]:
        if self.norm_first:
            # out = z + drop3(ff(norm3(z))),  z = y + drop2(ca(norm2(y), mem)),
            # y = x + drop1(sa(norm1(x)))
            dz = dout + self.norm3.backward(self.ff.backward(self.dropout3.backward(dout)))
            dq, dmem = self.cross_attn.backward(self.dropout2.backward(dz))
            dy = dz + self.norm2.backward(dq)
            dx = dy + self.norm1.backward(self.self_attn.backward(self.dropout1.backward(dy)))
            return dx, dmem
        # out = norm3(z + drop3(ff(z))),  z = norm2(y + drop2(ca(y, mem))),
        # y = norm1(x + drop1(sa(x)))
        d = self.norm3.backward(dout)
        dz = d + self.ff.backward(self.dropout3.backward(d))
        d = self.norm2.backward(dz)
        dq, dmem = self.cross_attn.backward(self.dropout2.backward(d))
        dy = d + dq
        d = self.norm1.backward(dy)
        return d + self.self_attn.backward(self.dropout1.backward(d)), dmem
