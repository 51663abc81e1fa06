"""What the Transformer models share: the residual wiring of a sublayer, learned embeddings, and a
stack of layers.

The residual wiring, post-LN ("Add & Norm", the paper, Hugging Face BERT and DistilBERT) or pre-LN
(``norm_first``, the BERT sketch, GPT-2)::

    post-LN:  out = LN(x + Dropout(Sublayer(x)))
    pre-LN:   out = x + Dropout(Sublayer(LN(x)))

is written once, as a pair of functions (``residual_forward`` / ``residual_backward``) rather than
a module: the LayerNorm and the dropout stay sub-modules of the layer that owns them, so their
names (``norm1``, ``attention.output.LayerNorm``, ``sa_layer_norm``, ...) are the state-dict keys
and intermediate names that PyTorch and Hugging Face use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..backend import get_array_module
from .layers import Dropout, Embedding, LayerNorm
from .module import Module, ModuleList

__all__ = ["LayerStack", "TokenEmbeddings", "residual_backward", "residual_forward"]


# -- the residual wiring ------------------------------------------------------------------------


def residual_forward(
    x: Any,
    sublayer: Callable[[Any], Any],
    norm: LayerNorm,
    dropout: Dropout | None,
    norm_first: bool,
) -> Any:
    """One sublayer with its residual and LayerNorm: x (B, T, C) -> (B, T, C).

    post-LN: ``norm(x + dropout(sublayer(x)))``; pre-LN: ``x + dropout(sublayer(norm(x)))``.
    ``dropout`` None leaves it out (DistilBERT's attention output has none).
    """
    y = sublayer(norm.forward(x) if norm_first else x)
    if dropout is not None:
        y = dropout.forward(y)
    return x + y if norm_first else norm.forward(x + y)


def residual_backward(
    dout: Any,
    sublayer_backward: Callable[[Any], Any],
    norm: LayerNorm,
    dropout: Dropout | None,
    norm_first: bool,
) -> Any:
    """The gradient of ``residual_forward``'s input: the residual path plus the sublayer's.

    post-LN: ``d = norm'(dout)``, ``dx = d + sublayer'(dropout'(d))``;
    pre-LN: ``dx = dout + norm'(sublayer'(dropout'(dout)))``.
    """
    d = dout if norm_first else norm.backward(dout)
    dy = d if dropout is None else dropout.backward(d)
    dsub = sublayer_backward(dy)
    return d + (norm.backward(dsub) if norm_first else dsub)


# -- learned embeddings (BERT, DistilBERT) ------------------------------------------------------


class TokenEmbeddings(Module):
    """``dropout(LayerNorm(word[ids] + token_type[types] + position[0..T-1]))``: (B, T, C).

    Learned position embeddings, as BERT and DistilBERT have them; ``type_vocab_size=None``
    leaves the token-type table out (DistilBERT). Sub-modules, in Hugging Face's names:
    ``word_embeddings``, ``position_embeddings``, ``token_type_embeddings``, ``LayerNorm``,
    ``dropout``.
    """

    def __init__(
        self,
        vocab_size: int,
        dim: int,
        max_positions: int,
        pad_token_id: int | None,
        layer_norm_eps: float,
        dropout: float,
        type_vocab_size: int | None = None,
    ) -> None:
        super().__init__()
        self.word_embeddings = Embedding(vocab_size, dim, padding_idx=pad_token_id)
        self.position_embeddings = Embedding(max_positions, dim)
        self.token_type_embeddings = (
            None if type_vocab_size is None else Embedding(type_vocab_size, dim)
        )
        self.LayerNorm = LayerNorm(dim, layer_norm_eps)
        self.dropout = Dropout(dropout)

    def forward(self, input_ids: Any, token_type_ids: Any = None) -> Any:
        """input_ids (and token_type_ids, with a token-type table): (B, T) -> (B, T, C)."""
        t = input_ids.shape[1]
        xp = get_array_module(self.position_embeddings.weight.data)
        e = self.word_embeddings.forward(input_ids)  # (B, T, C)
        if self.token_type_embeddings is not None:
            e = e + self.token_type_embeddings.forward(token_type_ids)  # (B, T, C)
        e = e + self.position_embeddings.forward(xp.arange(t))  # (T, C), broadcast over B
        return self.dropout.forward(self.LayerNorm.forward(e))

    def backward(self, dout: Any) -> None:
        """Adds into the three tables' gradients; token ids have none, so this returns None."""
        d = self.LayerNorm.backward(self.dropout.backward(dout))  # (B, T, C)
        self.word_embeddings.backward(d)
        if self.token_type_embeddings is not None:
            self.token_type_embeddings.backward(d)
        self.position_embeddings.backward(d.sum(axis=0))  # every sequence used rows 0..T-1
        return None


# -- a stack of layers --------------------------------------------------------------------------


class LayerStack(Module):
    """Layers applied in order, and in reverse order in the backward, optionally followed by one
    final LayerNorm.

    ``forward(x, *context)`` gives every layer ``x`` and the same ``context`` (masks, an
    encoder memory). ``name`` is the attribute that holds the list, so the dotted names match
    the checkpoint: ``"layer"`` (Hugging Face: ``encoder.layer.0``) or ``"layers"`` (PyTorch:
    ``encoder.layers.0``). ``norm`` (a LayerNorm or None) runs after the last layer: the
    pre-LN stacks end with one, since their residual stream is never normalised.
    """

    def __init__(
        self, layers: list[Module], name: str = "layer", norm: Module | None = None
    ) -> None:
        super().__init__()
        self._list_name = name
        setattr(self, name, ModuleList(layers))
        self.norm = norm

    @property
    def stack(self) -> ModuleList:
        """The layers, first to last (``self.layer`` or ``self.layers``, by the stack's name)."""
        return self._modules[self._list_name]  # type: ignore[return-value]

    def forward(self, x: Any, *context: Any) -> Any:
        """x: (B, T, C) -> (B, T, C)."""
        for layer in self.stack:
            x = layer.forward(x, *context)  # (B, T, C)
        if self.norm is not None:
            x = self.norm.forward(x)
        return x

    def backward(self, dout: Any) -> Any:
        """dout: (B, T, C) -> the gradient of the stack's input, (B, T, C)."""
        if self.norm is not None:
            dout = self.norm.backward(dout)
        for layer in reversed(self.stack):
            dout = layer.backward(dout)  # (B, T, C)
        return dout
