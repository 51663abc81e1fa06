"""The seq2seq Transformer's encoder and decoder stacks: TransformerEncoder, TransformerDecoder."""

from __future__ import annotations

from typing import Any

from ..nn import DecoderCache, DecoderLayer, EncoderLayer, LayerNorm, LayerStack, Module

__all__ = ["TransformerDecoder", "TransformerEncoder"]


class _TransformerStack(LayerStack):
    """``n_layers`` layers of type ``layer_type`` under ``layers.0``, ``layers.1``, ..., plus a
    final LayerNorm ``norm`` in the pre-LN layout (None in the post-LN one, whose layers end
    normalised)."""

    layer_type: type[Module]

    def __init__(
        self,
        n_layers: int,
        d_model: int,
        n_heads: int,
        d_ff: int,
        dropout: float,
        activation: str,
        norm_first: bool,
        layer_norm_eps: float,
    ) -> None:
        args = (d_model, n_heads, d_ff, dropout, activation, norm_first, layer_norm_eps)
        layers = [self.layer_type(*args) for _ in range(n_layers)]
        super().__init__(
            layers, "layers", LayerNorm(d_model, layer_norm_eps) if norm_first else None
        )


class TransformerEncoder(_TransformerStack):
    """A stack of ``EncoderLayer``s.

    ``forward(x, key_padding_mask=None)``: x (B, S, C) embedded source, key_padding_mask (B, S)
    True for real tokens -> memory (B, S, C). ``backward(dmemory)`` -> the gradient of the
    embedded source, (B, S, C).
    """

    layer_type = EncoderLayer


class TransformerDecoder(_TransformerStack):
    """A stack of ``DecoderLayer``s, each attending to the same encoder ``memory``.

    ``forward(x, memory, tgt_key_padding_mask=None, memory_key_padding_mask=None)``: x (B, T, C)
    embedded target, memory (B, S, C), masks True for real tokens -> (B, T, C).
    """

    layer_type = DecoderLayer

    def decode_step(
        self,
        x: Any,
        memory: Any,
        cache: DecoderCache,
        tgt_key_padding_mask: Any = None,
        memory_key_padding_mask: Any = None,
    ) -> Any:
        """The stack on the new target positions only (inference only; see
        ``DecoderLayer.decode_step``): x (B, Tn, C) -> (B, Tn, C). ``cache`` holds every
        layer's keys and values; ``memory`` is read on the first step only;
        ``tgt_key_padding_mask`` (B, T_so_far + Tn) covers all target positions so far."""
        for layer, (self_cache, cross_cache) in zip(
            self.stack, cache.layers(len(self.stack)), strict=True
        ):
            x = layer.decode_step(
                x, memory, self_cache, cross_cache, tgt_key_padding_mask, memory_key_padding_mask
            )
        if self.norm is not None:
            x = self.norm.forward(x)
        return x

    def backward(self, dout: Any) -> tuple[Any, Any]:
        """dout: (B, T, C) -> ``(dx, dmemory)``.

        Every layer read the same memory, so its gradient is the sum over the layers.
        """
        if self.norm is not None:
            dout = self.norm.backward(dout)
        dmemory = None
        for layer in reversed(self.stack):
            dout, dmem = layer.backward(dout)  # (B, T, C), (B, S, C)
            dmemory = dmem if dmemory is None else dmemory + dmem
        return dout, dmemory
