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

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from ..backend import get_array_module
from ..functional._checks import check_int_ids
from ..nn import (
    Activation,
    Dropout,
    Embedding,
    LayerNorm,
    Linear,
    Module,
    ModuleList,
    MultiHeadAttention,
    Parameter,
)
from ..nn import init as nn_init
from ..nn._checks import check_array, check_mask, describe, is_array
from ..nn.layers import ACTIVATIONS

__all__ = ["BertConfig", "BertForMaskedLM", "BertModel"]


# -- configuration ----------------------------------------------------------------------------


def config_value(cfg: dict[str, Any], key: str, model: str) -> Any:
    """``cfg[key]``, or a KeyError that names the missing key and the model."""
    if key not in cfg:
        raise KeyError(f"{model} config is missing the key {key!r}")
    return cfg[key]


def check_activation(name: Any, key: str, model: str) -> str:
    if name not in ACTIVATIONS:
        raise ValueError(
            f"{model} config {key}={name!r} is not supported: expected one of "
            f"{', '.join(ACTIVATIONS)}"
        )
    return name


def check_positive(value: Any, key: str, model: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{model} config {key} must be a positive integer, got {value!r}")
    return value


def check_probability(value: Any, key: str, model: str) -> float:
    if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{model} config {key} must be a probability in [0, 1], got {value!r}")
    return float(value)


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
        pad = values["pad_token_id"]
        if pad is not None and not 0 <= pad < values["vocab_size"]:
            raise ValueError(
                f"{m} config pad_token_id={pad} must lie in [0, vocab_size={values['vocab_size']})"
            )
        return cls(**values)


# -- shared helpers (DistilBERT uses them too) -------------------------------------------------


def check_model_inputs(
    model: str,
    input_ids: Any,
    attention_mask: Any,
    vocab_size: int,
    max_positions: int,
    like: Any = None,
) -> tuple[int, int]:
    """input_ids: (B, T) integers in [0, vocab_size), 1 <= T <= max_positions; attention_mask
    None or a boolean / 0-1 array of shape (B, T); both of ``like``'s array module (the
    model's parameters)."""
    if not is_array(input_ids):
        raise TypeError(
            f"{model}: input_ids must be an integer array of shape (batch, length), "
            f"got {describe(input_ids)}"
        )
    check_array(model, "input_ids", input_ids, like)
    shape = tuple(input_ids.shape)
    if len(shape) != 2:
        raise ValueError(f"{model}: input_ids must have shape (batch, length), got {shape}")
    b, t = shape
    if t > max_positions:
        raise ValueError(
            f"{model}: sequence length {t} exceeds max_position_embeddings={max_positions}"
        )
    if t == 0:
        raise ValueError(
            f"{model}: input_ids must hold at least one token per sequence, got shape {shape}"
        )
    check_int_ids(f"{model}: input_ids", input_ids, vocab_size)
    if attention_mask is not None:
        check_mask(
            model,
            "attention_mask",
            attention_mask,
            (b, t),
            "the shape of input_ids (batch, length)",
            like,
        )
    return b, t


def init_like_hf(model: Module, std: float) -> None:
    """Hugging Face's ``_init_weights``: Linear and Embedding weights N(0, std²), biases 0,
    LayerNorm weight 1 and bias 0, the padding row of an embedding 0. Embeddings are drawn last,
    so a decoder weight tied to the word embeddings ends up as the embedding (padding row 0)."""
    for _, m in model.named_modules():
        if isinstance(m, Linear):
            nn_init.normal_(m.weight, std)
            if m.bias is not None:
                m.bias.data[...] = 0
        elif isinstance(m, LayerNorm):
            m.weight.data[...] = 1
            m.bias.data[...] = 0
    for _, m in model.named_modules():
        if isinstance(m, Embedding):
            nn_init.normal_(m.weight, std)
            if m.padding_idx is not None:
                m.weight.data[m.padding_idx] = 0


def drop_hf_buffers(state: dict[str, Any], prefix: str, names: tuple[str, ...]) -> dict[str, Any]:
    """Older Hugging Face checkpoints save the buffers ``embeddings.position_ids`` (0..P-1) and
    ``embeddings.token_type_ids`` (zeros). nanotf computes both on the fly: accept them when they
    hold those default values, refuse anything else."""
    if not isinstance(state, Mapping):
        raise TypeError(
            f"load_state_dict: expected a dict of name -> array, got {type(state).__name__}"
        )
    state = dict(state)
    for name in names:
        key = f"{prefix}embeddings.{name}"
        if key not in state:
            continue
        value = state.pop(key)
        arr = value.numpy() if hasattr(value, "numpy") else value
        xp = get_array_module(arr)
        flat = xp.asarray(arr).reshape(-1)
        want = xp.arange(flat.size) if name == "position_ids" else xp.zeros(flat.size)
        if not bool((flat == want).all()):
            raise ValueError(
                f"load_state_dict: {key} holds non-default values; nanotf uses positions "
                "0..T-1 and token type 0 by default"
            )
    return state


# -- the modules, in Hugging Face's tree --------------------------------------------------------


class BertEmbeddings(Module):
    """``LayerNorm(word[ids] + token_type[types] + position[0..T-1])`` then dropout."""

    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = Embedding(c.vocab_size, c.hidden_size, padding_idx=c.pad_token_id)
        self.position_embeddings = Embedding(c.max_position_embeddings, c.hidden_size)
        self.token_type_embeddings = Embedding(c.type_vocab_size, c.hidden_size)
        self.LayerNorm = LayerNorm(c.hidden_size, c.layer_norm_eps)
        self.dropout = Dropout(c.hidden_dropout_prob)

    def forward(self, input_ids: Any, token_type_ids: Any) -> Any:
        """input_ids, token_type_ids: (B, T) -> (B, T, H)."""
        t = input_ids.shape[1]
        xp = get_array_module(self.position_embeddings.weight.data)
        e = self.word_embeddings.forward(input_ids)  # (B, T, H)
        e = e + self.token_type_embeddings.forward(token_type_ids)  # (B, T, H)
        e += self.position_embeddings.forward(xp.arange(t))  # (T, H), broadcast over B
        return self.dropout.forward(self.LayerNorm.forward(e))

    def backward(self, dout: Any) -> None:
        d = self.LayerNorm.backward(self.dropout.backward(dout))  # (B, T, H)
        self.word_embeddings.backward(d)
        self.token_type_embeddings.backward(d)
        self.position_embeddings.backward(d.sum(axis=0))  # every sequence used rows 0..T-1


class BertSelfOutput(Module):
    """After attention: ``dense`` and dropout, then the residual (and, post-LN, the LayerNorm).

    post-LN: ``LayerNorm(residual + drop(dense(h)))``; pre-LN: ``residual + drop(dense(h))``
    (the LayerNorm then normalises the attention's input, see ``BertAttention``).
    ``BertOutput`` (after the feed-forward) has the same shape of computation.
    """

    def __init__(self, d_in: int, c: BertConfig) -> None:
        super().__init__()
        self.norm_first = c.norm_first
        self.dense = Linear(d_in, c.hidden_size)
        self.LayerNorm = LayerNorm(c.hidden_size, c.layer_norm_eps)
        self.dropout = Dropout(c.hidden_dropout_prob)

    def forward(self, h: Any, residual: Any) -> Any:
        y = self.dropout.forward(self.dense.forward(h))  # (B, T, H)
        if self.norm_first:
            return residual + y
        return self.LayerNorm.forward(y + residual)

    def backward(self, dout: Any) -> tuple[Any, Any]:
        """Returns ``(dh, dresidual)``."""
        d = dout if self.norm_first else self.LayerNorm.backward(dout)
        return self.dense.backward(self.dropout.backward(d)), d


class BertOutput(BertSelfOutput):
    """After the feed-forward: ``dense`` (d_ff -> H), dropout, residual, LayerNorm (post-LN)."""


class BertAttention(Module):
    """``self`` (multi-head attention without its output projection) and ``output``.

    post-LN: ``output(self(x), x)``;  pre-LN: ``output(self(output.LayerNorm(x)), x)``.
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
        h = self.output.LayerNorm.forward(x) if self.norm_first else x
        a = self.self.forward(h, key_padding_mask=attention_mask)  # (B, T, H), heads merged
        return self.output.forward(a, x)

    def backward(self, dout: Any) -> Any:
        da, dres = self.output.backward(dout)
        dh = self.self.backward(da)
        if self.norm_first:
            dh = self.output.LayerNorm.backward(dh)
        return dh + dres


class BertIntermediate(Module):
    """``act(dense(x))``: H -> d_ff. Saves ``pre_activation`` (the output of ``dense``)."""

    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.dense = Linear(c.hidden_size, c.intermediate_size)
        self.intermediate_act_fn = Activation(c.hidden_act)

    def forward(self, x: Any) -> Any:
        pre = self.dense.forward(x)  # (B, T, d_ff)
        self.save(pre_activation=pre)
        return self.intermediate_act_fn.forward(pre)

    def backward(self, dout: Any) -> Any:
        dpre = self.intermediate_act_fn.backward(dout)
        self.save_grad(pre_activation=dpre)
        return self.dense.backward(dpre)


class BertLayer(Module):
    """One encoder layer: ``attention``, then ``intermediate`` and ``output`` (the FFN)."""

    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.norm_first = c.norm_first
        self.attention = BertAttention(c)
        self.intermediate = BertIntermediate(c)
        self.output = BertOutput(c.intermediate_size, c)

    def forward(self, x: Any, attention_mask: Any = None) -> Any:
        a = self.attention.forward(x, attention_mask)  # (B, T, H)
        h = self.output.LayerNorm.forward(a) if self.norm_first else a
        return self.output.forward(self.intermediate.forward(h), a)

    def backward(self, dout: Any) -> Any:
        di, da = self.output.backward(dout)
        dh = self.intermediate.backward(di)
        if self.norm_first:
            dh = self.output.LayerNorm.backward(dh)
        return self.attention.backward(da + dh)


class LayerStack(Module):
    """Layers ``layer.0 .. layer.N-1`` applied in order, and in reverse order in the backward.

    The shape of Hugging Face's ``BertEncoder`` (and DistilBERT's ``Transformer``).
    """

    def __init__(self, layers: list[Module]) -> None:
        super().__init__()
        self.layer = ModuleList(layers)

    def forward(self, x: Any, attention_mask: Any = None) -> Any:
        for layer in self.layer:
            x = layer.forward(x, attention_mask)  # (B, T, H)
        return x

    def backward(self, dout: Any) -> Any:
        for layer in reversed(self.layer):
            dout = layer.backward(dout)
        return dout


class BertEncoder(LayerStack):
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
        c = self.config
        like = self.embeddings.word_embeddings.weight.data
        check_model_inputs(
            "BERT", input_ids, attention_mask, c.vocab_size, c.max_position_embeddings, like
        )
        if token_type_ids is None:
            token_type_ids = get_array_module(input_ids).zeros(input_ids.shape, dtype=int)
        elif not is_array(token_type_ids):
            raise TypeError(
                f"BERT: token_type_ids must be an integer array of the shape of input_ids "
                f"{tuple(input_ids.shape)}, got {describe(token_type_ids)}"
            )
        else:
            check_array("BERT", "token_type_ids", token_type_ids, like)
        if tuple(token_type_ids.shape) != tuple(input_ids.shape):
            raise ValueError(
                f"BERT: token_type_ids must have the shape of input_ids {tuple(input_ids.shape)}, "
                f"got {tuple(token_type_ids.shape)}"
            )
        check_int_ids("BERT: token_type_ids", token_type_ids, c.type_vocab_size)
        h = self.embeddings.forward(input_ids, token_type_ids)  # (B, T, H)
        h = self.encoder.forward(h, attention_mask)  # (B, T, H)
        self.pooler_output = None if self.pooler is None else self.pooler.forward(h)  # (B, H)
        return h

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
