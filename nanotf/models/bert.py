"""BERT: ``BertModel`` (encoder + pooler) and ``BertForMaskedLM``, with Hugging Face's names.

The module tree and every parameter name are exactly those of ``transformers.BertModel``, so a
Hugging Face state dict loads as is and gradients compare by name::

    model = BertModel.from_config(hf_model.config.to_dict())
    model.load_state_dict({k: v.numpy() for k, v in hf_model.state_dict().items()})

One encoder layer (``encoder.layer.N``), post-LN as released ("Add & Norm")::

    a   = attention.output.LayerNorm(x + drop(attention.output.dense(attention.self(x))))
    out = output.LayerNorm(a + drop(output.dense(act(intermediate.dense(a)))))

With ``"norm_first": True`` in the config, the pre-LN layout drawn in the BERT diagram: the same
two LayerNorms (same names, same state-dict keys) move in front of their sublayers::

    a   = x + drop(attention.output.dense(attention.self(attention.output.LayerNorm(x))))
    out = a + drop(output.dense(act(intermediate.dense(output.LayerNorm(a)))))

There is no final LayerNorm after the last pre-LN layer (it would add a key Hugging Face does
not have), so the pre-LN ``last_hidden_state`` is not normalised.

Every gradient visible, after a forward and a backward::

    model.intermediate("encoder.layer.0.attention.self.probs")          # (B, H, T, T)
    model.intermediate_grad("encoder.layer.0.intermediate.pre_activation")  # (B, T, d_ff)
    model.intermediate("encoder.layer.1.output.LayerNorm.xhat")

(Attribute note: a ``BertLayer`` has a sub-module called ``intermediate``, as in Hugging Face,
which hides the ``Module.intermediate`` method on that layer object; call it on the model.)
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from ..backend import get_array_module
from ..nn import (
    Activation,
    Dropout,
    LayerNorm,
    LayerStack,
    Linear,
    Module,
    MultiHeadAttention,
    Parameter,
    TokenEmbeddings,
    residual_backward,
    residual_forward,
)
from ..nn import init as nn_init
from ..nn.layers import linear_activation_backward, linear_activation_forward
from .bert_unpadded import forward_unpadded as _forward_unpadded
from .huggingface import (  # re-exported: they were defined here before
    check_activation,
    check_model_inputs,
    check_pad_token_id,
    check_positive,
    check_probability,
    config_value,
    drop_hf_buffers,
    init_like_hf,
    token_types_or_zeros,
)

__all__ = ["BertConfig", "BertForMaskedLM", "BertModel"]


@dataclass(frozen=True)
class BertConfig:
    """The hyper-parameters nanotf reads from a ``transformers.BertConfig(...).to_dict()``."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    hidden_act: str
    hidden_dropout_prob: float
    attention_probs_dropout_prob: float
    max_position_embeddings: int
    type_vocab_size: int
    layer_norm_eps: float
    pad_token_id: int | None
    initializer_range: float
    norm_first: bool = False  # nanotf's switch: pre-LN layout (not a Hugging Face key)
    tie_word_embeddings: bool = True

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> BertConfig:
        """Read and check the keys; unsupported Hugging Face options are a clear error."""
        if not isinstance(cfg, dict):
            raise TypeError(f"BERT config must be a dict (BertConfig.to_dict()), got {type(cfg)}")
        m = "BERT"
        optional = {"norm_first", "tie_word_embeddings"}
        values = {
            f.name: config_value(cfg, f.name, m) for f in fields(cls) if f.name not in optional
        }
        for key in optional:
            if key in cfg:
                values[key] = bool(cfg[key])
        unsupported = {
            "position_embedding_type": ("absolute", None),  # relative_key(_query): not here
            "is_decoder": (False, None),
            "add_cross_attention": (False, None),
        }
        for key, allowed in unsupported.items():
            if key in cfg and cfg[key] not in allowed:
                raise ValueError(
                    f"{m} config {key}={cfg[key]!r} is not supported (nanotf's BERT is an encoder "
                    f"with absolute position embeddings; expected {allowed[0]!r})"
                )
        for key in (
            "vocab_size",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "max_position_embeddings",
            "type_vocab_size",
        ):
            check_positive(values[key], key, m)
        if values["hidden_size"] % values["num_attention_heads"]:
            raise ValueError(
                f"{m} config hidden_size={values['hidden_size']} is not divisible by "
                f"num_attention_heads={values['num_attention_heads']}"
            )
        check_activation(values["hidden_act"], "hidden_act", m)
        for key in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            values[key] = check_probability(values[key], key, m)
        check_pad_token_id(values["pad_token_id"], values["vocab_size"], m)
        return cls(**values)


# -- the modules, in Hugging Face's tree --------------------------------------------------------


class BertEmbeddings(TokenEmbeddings):
    """``LayerNorm(word[ids] + token_type[types] + position[0..T-1])`` then dropout."""

    def __init__(self, c: BertConfig) -> None:
        super().__init__(
            c.vocab_size,
            c.hidden_size,
            c.max_position_embeddings,
            c.pad_token_id,
            c.layer_norm_eps,
            c.hidden_dropout_prob,
            type_vocab_size=c.type_vocab_size,
        )


class BertSelfOutput(Module):
    """The end of a residual sublayer: ``dense``, ``dropout`` and ``LayerNorm``.

    Wired by its parent (``residual_forward``): post-LN ``LayerNorm(x + dropout(dense(h)))``,
    pre-LN ``x + dropout(dense(h))`` with the LayerNorm on the sublayer's input.
    ``BertOutput`` (after the feed-forward) holds the same three.
    """

    def __init__(self, d_in: int, c: BertConfig) -> None:
        super().__init__()
        self.dense = Linear(d_in, c.hidden_size)
        self.LayerNorm = LayerNorm(c.hidden_size, c.layer_norm_eps)
        self.dropout = Dropout(c.hidden_dropout_prob)


class BertOutput(BertSelfOutput):
    """After the feed-forward: ``dense`` (d_ff -> H), dropout, residual, LayerNorm (post-LN)."""


class BertAttention(Module):
    """``self`` (multi-head attention without its output projection) and ``output``.

    post-LN: ``output.LayerNorm(x + drop(output.dense(self(x))))``;
    pre-LN: ``x + drop(output.dense(self(output.LayerNorm(x))))``.
    """

    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.norm_first = c.norm_first
        self.self = MultiHeadAttention(
            c.hidden_size,
            c.num_attention_heads,
            dropout=c.attention_probs_dropout_prob,
            names=("query", "key", "value", None),
        )
        self.output = BertSelfOutput(c.hidden_size, c)

    def forward(self, x: Any, attention_mask: Any = None) -> Any:
        """x: (B, T, H) -> (B, T, H)."""
        out = self.output

        def attention(h: Any) -> Any:
            a = self.self.forward(h, key_padding_mask=attention_mask)  # (B, T, H), heads merged
            return out.dense.forward(a)

        return residual_forward(x, attention, out.LayerNorm, out.dropout, self.norm_first)

    def backward(self, dout: Any) -> Any:
        out = self.output

        def attention_backward(d: Any) -> Any:
            return self.self.backward(out.dense.backward(d)).dx

        return residual_backward(
            dout, attention_backward, out.LayerNorm, out.dropout, self.norm_first
        )


class BertIntermediate(Module):
    """``act(dense(x))``: H -> d_ff. Saves ``pre_activation`` (the output of ``dense``)."""

    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.dense = Linear(c.hidden_size, c.intermediate_size)
        self.intermediate_act_fn = Activation(c.hidden_act)
        self._state: Any = None  # what linear_activation_backward needs

    def forward(self, x: Any) -> Any:
        # the bias added by the activation's op (one pass fewer; see linear_activation_forward)
        pre, hidden, self._state = linear_activation_forward(
            self.dense, self.intermediate_act_fn, x
        )  # pre, hidden: (B, T, d_ff)
        self.save(pre_activation=pre)
        return hidden

    def backward(self, dout: Any) -> Any:
        dpre, dx = linear_activation_backward(self.dense, dout, self._state)
        self.save_grad(pre_activation=dpre)
        return dx


class BertLayer(Module):
    """One encoder layer: ``attention``, then ``intermediate`` and ``output`` (the FFN, in a
    residual around ``output.LayerNorm``)."""

    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.norm_first = c.norm_first
        self.attention = BertAttention(c)
        self.intermediate = BertIntermediate(c)
        self.output = BertOutput(c.intermediate_size, c)

    def forward(self, x: Any, attention_mask: Any = None) -> Any:
        """x: (B, T, H) -> (B, T, H)."""
        a = self.attention.forward(x, attention_mask)  # (B, T, H)
        out = self.output

        def feed_forward(h: Any) -> Any:
            return out.dense.forward(self.intermediate.forward(h))

        return residual_forward(a, feed_forward, out.LayerNorm, out.dropout, self.norm_first)

    def backward(self, dout: Any) -> Any:
        out = self.output

        def feed_forward_backward(d: Any) -> Any:
            return self.intermediate.backward(out.dense.backward(d))

        da = residual_backward(
            dout, feed_forward_backward, out.LayerNorm, out.dropout, self.norm_first
        )
        return self.attention.backward(da)


class BertEncoder(LayerStack):
    """``layer.0 .. layer.N-1`` (Hugging Face's ``BertEncoder``)."""

    def __init__(self, c: BertConfig) -> None:
        super().__init__([BertLayer(c) for _ in range(c.num_hidden_layers)])


class BertPooler(Module):
    """``tanh(dense(h[:, 0]))``: the [CLS] state through a dense layer and tanh. (B, H)."""

    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.dense = Linear(c.hidden_size, c.hidden_size)
        self._out: Any = None

    def forward(self, h: Any) -> Any:
        xp = get_array_module(h)
        self._out = xp.tanh(self.dense.forward(h[:, 0]))  # (B, H)
        return self._out

    def backward(self, dout: Any) -> Any:
        """d tanh(z)/dz = 1 - tanh(z)²; returns the gradient of h[:, 0], (B, H)."""
        return self.dense.backward(dout * (1.0 - self._out * self._out))


class BertModel(Module):
    """BERT's encoder: ``embeddings``, ``encoder.layer.N``, ``pooler`` (unless left out).

    ``forward(input_ids, attention_mask=None, token_type_ids=None)`` -> last_hidden_state
    (B, T, H); positions are 0..T-1, ``attention_mask`` (B, T) is 1/True for real tokens,
    ``token_type_ids`` default to zeros. The pooled output is kept as ``self.pooler_output``.
    ``backward(d_last_hidden, d_pooler_output=None)`` adds into every ``Parameter.grad``.
    """

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True) -> None:
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None
        self.pooler_output: Any = None
        init_like_hf(self, config.initializer_range)

    @classmethod
    def from_config(cls, cfg: dict[str, Any], add_pooling_layer: bool = True) -> BertModel:
        """Build from ``transformers.BertConfig(...).to_dict()`` (plus nanotf's ``norm_first``)."""
        return cls(BertConfig.from_dict(cfg), add_pooling_layer)

    def forward(
        self, input_ids: Any, attention_mask: Any = None, token_type_ids: Any = None
    ) -> Any:
        h = self._embed(input_ids, attention_mask, token_type_ids)  # (B, T, H)
        h = self.encoder.forward(h, attention_mask)  # (B, T, H)
        self.pooler_output = None if self.pooler is None else self.pooler.forward(h)  # (B, H)
        return h

    def _embed(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
        """The inputs checked and embedded, (B, T) -> (B, T, H): how both forwards begin."""
        c = self.config
        like = self.embeddings.word_embeddings.weight.data
        check_model_inputs(
            "BERT", input_ids, attention_mask, c.vocab_size, c.max_position_embeddings, like
        )
        token_type_ids = token_types_or_zeros(token_type_ids, input_ids, c.type_vocab_size, like)
        return self.embeddings.forward(input_ids, token_type_ids)

    def forward_unpadded(
        self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None
    ) -> Any:
        """``forward`` for evaluation with the padding left out: (B, T) -> (B, T, H).

        Every step that works token by token (the linear layers, LayerNorms, GELU and the
        residual sums) runs on the N real tokens alone, as rows ``(N, H)``; only attention puts
        them back in the padded layout ``(B, heads, T, D)``, where the mask keeps the padding out.
        So padding costs attention alone. A real token's state is ``forward``'s (the same
        products on the same rows); the padded positions come back as zeros, where
        ``forward`` fills them with states that nothing should read (the pooled output is
        ``forward``'s where position 0, the [CLS] token, is real). Dropout is not applied: call
        ``eval()`` first. Nothing is kept for ``intermediate()``, and there is no backward.
        """
        return _forward_unpadded(self, input_ids, attention_mask, token_type_ids)

    def backward(self, d_last_hidden: Any, d_pooler_output: Any = None) -> None:
        if d_pooler_output is not None:
            if self.pooler is None:
                raise ValueError("this BertModel has no pooler, so d_pooler_output must be None")
            d_last_hidden = d_last_hidden.copy()  # the caller's array stays as it was
            d_last_hidden[:, 0] += self.pooler.backward(d_pooler_output)
        self.embeddings.backward(self.encoder.backward(d_last_hidden))
        return None

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> dict[str, list[str]]:
        """As ``Module.load_state_dict``; Hugging Face's ``embeddings.position_ids`` and
        ``embeddings.token_type_ids`` buffers (saved by older versions) are checked and skipped."""
        state = drop_hf_buffers(state, "", ("position_ids", "token_type_ids"))
        return super().load_state_dict(state, strict)

    def _extra_repr(self) -> str:
        return "norm_first=True" if self.config.norm_first else ""


class BertPredictionHeadTransform(Module):
    """``LayerNorm(act(dense(h)))`` before the vocabulary projection."""

    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.dense = Linear(c.hidden_size, c.hidden_size)
        self.transform_act_fn = Activation(c.hidden_act)
        self.LayerNorm = LayerNorm(c.hidden_size, c.layer_norm_eps)

    def forward(self, h: Any) -> Any:
        pre = self.dense.forward(h)
        self.save(pre_activation=pre)
        return self.LayerNorm.forward(self.transform_act_fn.forward(pre))

    def backward(self, dout: Any) -> Any:
        dpre = self.transform_act_fn.backward(self.LayerNorm.backward(dout))
        self.save_grad(pre_activation=dpre)
        return self.dense.backward(dpre)


class BertLMPredictionHead(Module):
    """``decoder(transform(h))``: logits over the vocabulary, (B, T, V).

    ``decoder.weight`` is the word-embedding table (the same Parameter: its gradient collects
    the input and the output use) and ``decoder.bias`` is ``bias`` (Hugging Face saves both
    names, ``cls.predictions.bias`` and ``cls.predictions.decoder.bias``, for one tensor).
    """

    def __init__(self, c: BertConfig, word_embeddings: Parameter | None) -> None:
        super().__init__()
        self.transform = BertPredictionHeadTransform(c)
        self.decoder = Linear(c.hidden_size, c.vocab_size, bias=False)
        if word_embeddings is not None:
            self.decoder.weight = word_embeddings
        self.decoder.bias = Parameter(nn_init.zeros((c.vocab_size,)))  # after the weight, as HF
        self.bias = self.decoder.bias

    def forward(self, h: Any) -> Any:
        return self.decoder.forward(self.transform.forward(h))

    def backward(self, dout: Any) -> Any:
        return self.transform.backward(self.decoder.backward(dout))


class BertOnlyMLMHead(Module):
    def __init__(self, c: BertConfig, word_embeddings: Parameter | None) -> None:
        super().__init__()
        self.predictions = BertLMPredictionHead(c, word_embeddings)

    def forward(self, h: Any) -> Any:
        return self.predictions.forward(h)

    def backward(self, dout: Any) -> Any:
        return self.predictions.backward(dout)


class BertForMaskedLM(Module):
    """``bert`` (a BertModel without pooler) and the masked-LM head ``cls.predictions``.

    ``forward(input_ids, attention_mask=None, token_type_ids=None)`` -> logits (B, T, V);
    ``backward(dlogits)``. The output projection is tied to the word embeddings unless the
    config says ``tie_word_embeddings: False``.
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.bert = BertModel(config, add_pooling_layer=False)
        tied = self.bert.embeddings.word_embeddings.weight if config.tie_word_embeddings else None
        self.cls = BertOnlyMLMHead(config, tied)
        init_like_hf(self, config.initializer_range)

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> BertForMaskedLM:
        return cls(BertConfig.from_dict(cfg))

    def forward(
        self, input_ids: Any, attention_mask: Any = None, token_type_ids: Any = None
    ) -> Any:
        h = self.bert.forward(input_ids, attention_mask, token_type_ids)  # (B, T, H)
        return self.cls.forward(h)  # (B, T, V)

    def backward(self, dlogits: Any) -> None:
        self.bert.backward(self.cls.backward(dlogits))
        return None

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> dict[str, list[str]]:
        """As ``Module.load_state_dict``, skipping Hugging Face's default buffers (see
        ``BertModel.load_state_dict``). The tied names (``cls.predictions.decoder.weight`` and
        ``bert.embeddings.word_embeddings.weight``; ``cls.predictions.bias`` and
        ``cls.predictions.decoder.bias``) must hold equal arrays, as in every model; a checkpoint
        with untied ones needs ``tie_word_embeddings=False``."""
        state = drop_hf_buffers(state, "bert.", ("position_ids", "token_type_ids"))
        return super().load_state_dict(state, strict)
