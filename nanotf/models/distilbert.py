"""DistilBERT: ``DistilBertModel`` with Hugging Face's names, so its state dict loads as is.

    embeddings  = dropout(LayerNorm(word_embeddings[ids] + position_embeddings[0..T-1]))
    per block (transformer.layer.N), post-LN:
        a   = sa_layer_norm(x + attention(x))                 # q_lin, k_lin, v_lin, out_lin
        out = output_layer_norm(a + dropout(lin2(act(lin1(a)))))   # ffn

DistilBERT has no token types and no pooler; its LayerNorms use eps 1e-12, and its dropouts sit
on the attention probabilities, after the embeddings and after ``ffn.lin2`` (not after the
attention's output projection). With ``sinusoidal_pos_embds`` the position table starts as
Hugging Face's sinusoids, PE[p, 2i] = sin(p / 10000^(2i/dim)), PE[p, 2i+1] = cos(...), and is
trained like any parameter (as in ``transformers`` 5).

Every gradient visible: ``model.intermediate("transformer.layer.0.attention.probs")``,
``model.intermediate_grad("transformer.layer.0.ffn.pre_activation")``, ...
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from ..backend import get_array_module
from ..functional import sinusoidal_encoding
from ..nn import (
    FeedForward,
    LayerNorm,
    LayerStack,
    Module,
    MultiHeadAttention,
    TokenEmbeddings,
    residual_backward,
    residual_forward,
)
from .huggingface import (
    check_activation,
    check_model_inputs,
    check_pad_token_id,
    check_positive,
    check_probability,
    config_value,
    drop_hf_buffers,
    init_like_hf,
)

__all__ = ["DistilBertConfig", "DistilBertModel", "DistilBertTransformer"]

LAYER_NORM_EPS = 1e-12  # fixed in Hugging Face's DistilBERT, not a config key


@dataclass(frozen=True)
class DistilBertConfig:
    """The hyper-parameters nanotf reads from a ``transformers.DistilBertConfig(...).to_dict()``."""

    vocab_size: int
    dim: int
    n_layers: int
    n_heads: int
    hidden_dim: int
    activation: str
    dropout: float
    attention_dropout: float
    max_position_embeddings: int
    sinusoidal_pos_embds: bool
    pad_token_id: int | None
    initializer_range: float

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> DistilBertConfig:
        if not isinstance(cfg, dict):
            raise TypeError(
                f"DistilBERT config must be a dict (DistilBertConfig.to_dict()), got {type(cfg)}"
            )
        m = "DistilBERT"
        values = {f.name: config_value(cfg, f.name, m) for f in fields(cls)}
        for key in ("vocab_size", "dim", "n_layers", "n_heads", "hidden_dim"):
            check_positive(values[key], key, m)
        check_positive(values["max_position_embeddings"], "max_position_embeddings", m)
        if values["dim"] % values["n_heads"]:
            raise ValueError(
                f"{m} config dim={values['dim']} is not divisible by n_heads={values['n_heads']}"
            )
        check_activation(values["activation"], "activation", m)
        for key in ("dropout", "attention_dropout"):
            values[key] = check_probability(values[key], key, m)
        values["sinusoidal_pos_embds"] = bool(values["sinusoidal_pos_embds"])
        check_pad_token_id(values["pad_token_id"], values["vocab_size"], m)
        return cls(**values)


class Embeddings(TokenEmbeddings):
    """``dropout(LayerNorm(word[ids] + position[0..T-1]))``, (B, T) -> (B, T, dim)."""

    def __init__(self, c: DistilBertConfig) -> None:
        super().__init__(
            c.vocab_size,
            c.dim,
            c.max_position_embeddings,
            c.pad_token_id,
            LAYER_NORM_EPS,
            c.dropout,
        )


class FFN(FeedForward):
    """``dropout(lin2(act(lin1(x))))``: dim -> hidden_dim -> dim. Saves ``pre_activation``."""

    def __init__(self, c: DistilBertConfig) -> None:
        super().__init__(
            c.dim, c.hidden_dim, c.activation, c.dropout, names=("lin1", "lin2"), dropout_last=True
        )


class TransformerBlock(Module):
    """``a = sa_layer_norm(x + attention(x))``; ``out = output_layer_norm(a + ffn(a))``.

    Post-LN, with no dropout on the attention's output (``ffn`` ends with its own).
    """

    def __init__(self, c: DistilBertConfig) -> None:
        super().__init__()
        self.attention = MultiHeadAttention(
            c.dim,
            c.n_heads,
            dropout=c.attention_dropout,
            names=("q_lin", "k_lin", "v_lin", "out_lin"),
        )
        self.sa_layer_norm = LayerNorm(c.dim, LAYER_NORM_EPS)
        self.ffn = FFN(c)
        self.output_layer_norm = LayerNorm(c.dim, LAYER_NORM_EPS)

    def forward(self, x: Any, attention_mask: Any = None) -> Any:
        """x: (B, T, dim) -> (B, T, dim)."""

        def attention(h: Any) -> Any:
            return self.attention.forward(h, key_padding_mask=attention_mask)

        a = residual_forward(x, attention, self.sa_layer_norm, None, norm_first=False)
        return residual_forward(a, self.ffn.forward, self.output_layer_norm, None, norm_first=False)

    def backward(self, dout: Any) -> Any:
        """dout: (B, T, dim) -> dx (B, T, dim)."""
        da = residual_backward(dout, self.ffn.backward, self.output_layer_norm, None, False)
        return residual_backward(
            da, lambda d: self.attention.backward(d).dx, self.sa_layer_norm, None, False
        )


class DistilBertTransformer(LayerStack):
    """``layer.0 .. layer.N-1`` (Hugging Face's DistilBERT ``Transformer``; renamed here so
    that it does not shadow ``nanotf.models.Transformer``, the encoder-decoder)."""

    def __init__(self, c: DistilBertConfig) -> None:
        super().__init__([TransformerBlock(c) for _ in range(c.n_layers)])


class DistilBertModel(Module):
    """``embeddings`` and ``transformer.layer.N``.

    ``forward(input_ids, attention_mask=None)`` -> last hidden state (B, T, dim), positions
    0..T-1, ``attention_mask`` (B, T) 1/True for real tokens. ``backward(d)`` adds into every
    ``Parameter.grad`` and returns None.
    """

    def __init__(self, config: DistilBertConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.transformer = DistilBertTransformer(config)
        init_like_hf(self, config.initializer_range)
        if config.sinusoidal_pos_embds:
            w = self.embeddings.position_embeddings.weight
            xp = get_array_module(w.data)
            w.data[...] = sinusoidal_encoding(
                config.max_position_embeddings, config.dim, dtype=w.dtype, xp=xp
            )

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> DistilBertModel:
        """Build from ``transformers.DistilBertConfig(...).to_dict()``."""
        return cls(DistilBertConfig.from_dict(cfg))

    def forward(self, input_ids: Any, attention_mask: Any = None) -> Any:
        c = self.config
        check_model_inputs(
            "DistilBERT",
            input_ids,
            attention_mask,
            c.vocab_size,
            c.max_position_embeddings,
            self.embeddings.word_embeddings.weight.data,
        )
        h = self.embeddings.forward(input_ids)  # (B, T, dim)
        return self.transformer.forward(h, attention_mask)

    def backward(self, dout: Any) -> None:
        self.embeddings.backward(self.transformer.backward(dout))
        return None

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> dict[str, list[str]]:
        """As ``Module.load_state_dict``; the ``embeddings.position_ids`` buffer that older
        Hugging Face checkpoints save is checked (0..P-1) and skipped."""
        return super().load_state_dict(drop_hf_buffers(state, "", ("position_ids",)), strict)
