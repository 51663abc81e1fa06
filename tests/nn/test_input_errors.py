"""Bad input to every public module and model: a correct result, or a TypeError / ValueError /
IndexError that names the module, what it expected and what it was given.

Never an AttributeError, never a bare NumPy message ("operands could not be broadcast", "zero-size
array to reduction operation", "Cannot interpret 'torch.float32' as a data type"): the property
tests below throw random shapes (right, a little off, random, empty axes, 0-d), dtypes (floats,
ints, bool, complex, object, str) and containers (NumPy, Python lists and numbers, torch tensors,
arrays of another array module) at each of them and accept only those two outcomes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import nanotf
from nanotf.models import BertForMaskedLM, BertModel, DistilBertModel, Transformer
from nanotf.nn import (
    Activation,
    DecoderLayer,
    Dropout,
    Embedding,
    EncoderLayer,
    FeedForward,
    LayerNorm,
    Linear,
    MultiHeadAttention,
    PositionalEncoding,
)
from nanotf.testing import strict
from tests.conftest import tiny_bert_config, tiny_distilbert_config

FAST = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

DTYPES = ["float32", "float64", "float16", "int64", "int32", "bool", "complex64", "object", "str"]
FORMS = ["numpy", "numpy", "numpy", "numpy", "list", "torch", "strict", "scalar", "none"]


def make_array(shape: tuple[int, ...], dtype: str, seed: int, low: int, high: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype.startswith("float"):
        return rng.standard_normal(shape).astype(dtype)
    if dtype.startswith("int"):
        return rng.integers(low, high, size=shape).astype(dtype)
    if dtype == "bool":
        return rng.random(shape) < 0.8
    if dtype == "complex64":
        return (rng.standard_normal(shape) + 1j).astype(dtype)
    if dtype == "object":
        return np.full(shape, 1.0, dtype=object)
    return np.full(shape, "a")


def as_form(a: np.ndarray, form: str) -> Any:
    """The same values as a NumPy array, a Python list or number, a torch tensor, a device array
    (the strict CuPy stand-in, for modules on the host), or None."""
    if form == "list":
        return a.tolist()
    if form == "torch" and a.dtype.kind in "fiub" and a.dtype != np.float16:
        return torch.from_numpy(np.ascontiguousarray(a))
    if form == "strict" and a.dtype.kind in "fiub":
        return strict.asarray(a)
    if form == "scalar":
        v = a.reshape(-1)[0] if a.size else 3.0
        return v.item() if isinstance(v, np.generic) else v
    if form == "none":
        return None
    return a


@st.composite
def values(
    draw: st.DrawFn, good: tuple[int, ...], good_dtype: str, low: int = -2, high: int = 14
) -> Any:
    """Something near what a module takes: its shape or one a little off (a size changed, a
    dimension added or dropped, empty axes), or a random shape; mostly its dtype, else any."""
    shape = draw(
        st.one_of(
            st.just(good),
            st.tuples(st.integers(0, max(len(good) - 1, 0)), st.integers(0, 6)).map(
                lambda ij: tuple(ij[1] if k == ij[0] else n for k, n in enumerate(good))
            ),
            st.just(good[1:]),
            st.just((*good, 2)),
            st.just(()),
            hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5),
        )
    )
    dtype = draw(st.one_of(st.just(good_dtype), st.sampled_from(DTYPES)))
    form = draw(st.sampled_from(FORMS))
    seed = draw(st.integers(0, 2**16))
    return as_form(make_array(shape, dtype, seed, low, high), form)


def outcome(who: str, call: Callable[[], Any]) -> Any:
    """Run ``call``; return its result, or None after an error of ours. Anything else fails."""
    try:
        return call()
    except (TypeError, ValueError, IndexError) as err:
        message = str(err)
        assert re.match(who, message), (
            f"{type(err).__name__} that does not name {who!r} (a bare or lower-level message): "
            f"{message!r}"
        )
        assert "expected" in message or "must" in message, f"says nothing expected: {message}"
        return None


def is_float_array(x: Any, dtype: Any = np.float32) -> bool:
    return isinstance(x, np.ndarray) and x.dtype == dtype


def same_kind_of_array(x: Any, out: Any) -> bool:
    """A module without parameters runs on the arrays it is given, host or (stand-in) device."""
    kinds = (np.ndarray, strict.StrictArray)
    if isinstance(x, np.ndarray) and x.ndim == 0 and isinstance(out, np.generic):
        return x.dtype.kind == "f"  # NumPy arithmetic on a 0-d array gives a NumPy scalar
    return isinstance(x, kinds) and type(out) is type(x) and x.dtype.kind == "f"


# -- the layers ---------------------------------------------------------------------------------


@FAST
@given(x=values((2, 3, 4), "float32"))
def test_linear(x):
    lin = Linear(4, 3)
    out = outcome(r"Linear\(4 -> 3\): input ", lambda: lin.forward(x))
    if out is not None:
        assert is_float_array(x) and out.shape == (*x.shape[:-1], 3)


@FAST
@given(ids=values((2, 5), "int64", low=-2, high=14))
def test_embedding(ids):
    emb = Embedding(12, 4, padding_idx=0)
    out = outcome(r"Embedding\(12, 4\): token ids ", lambda: emb.forward(ids))
    if out is not None:
        assert isinstance(ids, np.ndarray) and out.shape == (*ids.shape, 4)
        assert ids.size == 0 or (ids.min() >= 0 and ids.max() < 12)


@FAST
@given(x=values((2, 3, 4), "float32"))
def test_layernorm(x):
    ln = LayerNorm(4)
    out = outcome(r"LayerNorm\(4\): input ", lambda: ln.forward(x))
    if out is not None:
        assert is_float_array(x) and out.shape == x.shape and np.isfinite(out).all()


@FAST
@given(x=values((2, 3, 4), "float32"), training=st.booleans())
def test_dropout(x, training):
    drop = Dropout(0.5).train(training)
    out = outcome(r"Dropout\(p=0\.5\): input ", lambda: drop.forward(x))
    if out is not None:
        assert same_kind_of_array(x, out) and out.shape == x.shape


@FAST
@given(x=values((2, 3, 4), "float32"), name=st.sampled_from(["relu", "gelu", "gelu_new"]))
def test_activation(x, name):
    act = Activation(name)
    out = outcome(rf"Activation\('{name}'\): input ", lambda: act.forward(x))
    if out is not None:
        assert same_kind_of_array(x, out) and out.shape == x.shape and out.dtype == x.dtype


@FAST
@given(x=values((2, 3, 4), "float32"))
def test_positional_encoding(x):
    pe = PositionalEncoding(4, max_len=6)
    out = outcome(r"PositionalEncoding\(d_model=4, max_len=6\): ", lambda: pe.forward(x))
    if out is not None:
        assert same_kind_of_array(x, out) and out.shape == x.shape and x.shape[1] <= 6


MHA = r"MultiHeadAttention\(d_model=8, n_heads=2\): "


@FAST
@given(
    x=values((2, 3, 8), "float32"),
    mask=st.one_of(st.none(), values((2, 3), "bool", low=0, high=2)),
    attn_mask=st.one_of(st.none(), values((3, 3), "bool", low=0, high=2)),
)
def test_self_attention(x, mask, attn_mask):
    mha = MultiHeadAttention(8, 2)
    out = outcome(MHA, lambda: mha.forward(x, key_padding_mask=mask, attn_mask=attn_mask))
    if out is not None:
        assert is_float_array(x) and out.shape == x.shape and np.isfinite(out).all()


@FAST
@given(
    x=values((2, 3, 8), "float32"),
    memory=values((2, 4, 8), "float32"),
    mask=st.one_of(st.none(), values((2, 4), "bool", low=0, high=2)),
)
def test_cross_attention(x, memory, mask):
    mha = MultiHeadAttention(8, 2)
    out = outcome(MHA, lambda: mha.forward(x, memory, key_padding_mask=mask))
    if out is not None:
        assert is_float_array(x) and out.shape == x.shape
        assert memory is None or is_float_array(memory)  # None: self-attention


@FAST
@given(x=values((2, 3, 8), "float32"))
def test_feed_forward(x):
    ff = FeedForward(8, 16, "gelu")
    out = outcome(r"FeedForward\(8 -> 16 -> 8\): input ", lambda: ff.forward(x))
    if out is not None:
        assert is_float_array(x) and out.shape == x.shape


@FAST
@given(
    x=values((2, 3, 8), "float32"),
    mask=st.one_of(st.none(), values((2, 3), "bool", low=0, high=2)),
    norm_first=st.booleans(),
)
def test_encoder_layer(x, mask, norm_first):
    layer = EncoderLayer(8, 2, 16, dropout=0.1, norm_first=norm_first)
    out = outcome(rf"(EncoderLayer\(d_model=8\)|{MHA})", lambda: layer.forward(x, mask))
    if out is not None:
        assert is_float_array(x) and out.shape == x.shape


@FAST
@given(
    x=values((2, 3, 8), "float32"),
    memory=values((2, 4, 8), "float32"),
    tgt_mask=st.one_of(st.none(), values((2, 3), "bool", low=0, high=2)),
    mem_mask=st.one_of(st.none(), values((2, 4), "int64", low=0, high=2)),
)
def test_decoder_layer(x, memory, tgt_mask, mem_mask):
    layer = DecoderLayer(8, 2, 16, dropout=0.1)
    out = outcome(
        rf"(DecoderLayer\(d_model=8\)|{MHA})", lambda: layer.forward(x, memory, tgt_mask, mem_mask)
    )
    if out is not None:
        assert is_float_array(x) and out.shape == x.shape


# -- the models ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seq2seq() -> Transformer:
    nanotf.manual_seed(0)
    return Transformer(
        12, 13, d_model=8, n_heads=2, n_encoder_layers=1, n_decoder_layers=1, d_ff=16, max_len=6
    )


@FAST
@given(
    src=values((2, 5), "int64", low=0, high=12),
    tgt=values((2, 4), "int64", low=0, high=13),
    src_mask=st.one_of(st.none(), values((2, 5), "bool", low=0, high=2)),
    tgt_mask=st.one_of(st.none(), values((2, 4), "bool", low=0, high=2)),
)
def test_transformer(seq2seq, src, tgt, src_mask, tgt_mask):
    out = outcome(r"Transformer: ", lambda: seq2seq.forward(src, tgt, src_mask, tgt_mask))
    if out is not None:
        assert out.shape == (*tgt.shape, 13) and np.isfinite(out).all()


@FAST
@given(memory=values((2, 5, 8), "float32"), tgt=values((2, 4), "int64", low=0, high=13))
def test_transformer_decode(seq2seq, memory, tgt):
    out = outcome(r"Transformer: ", lambda: seq2seq.decode(tgt, memory))
    if out is not None:
        assert out.shape == (*tgt.shape, 13)


BERT_CONFIG = tiny_bert_config(vocab_size=12, hidden_dropout_prob=0.1,
                               attention_probs_dropout_prob=0.1, max_position_embeddings=6)
DISTILBERT_CONFIG = tiny_distilbert_config(vocab_size=12, dropout=0.1, attention_dropout=0.1,
                                           max_position_embeddings=6)


@pytest.fixture(scope="module")
def berts() -> dict[str, Any]:
    return {
        "bert": BertModel.from_config(BERT_CONFIG),
        "mlm": BertForMaskedLM.from_config(BERT_CONFIG),
        "distilbert": DistilBertModel.from_config(DISTILBERT_CONFIG),
    }


@FAST
@given(
    kind=st.sampled_from(["bert", "mlm", "distilbert"]),
    ids=values((2, 5), "int64", low=0, high=12),
    mask=st.one_of(st.none(), values((2, 5), "int64", low=0, high=2)),
    types=st.one_of(st.none(), values((2, 5), "int64", low=0, high=2)),
)
def test_bert_models(berts, kind, ids, mask, types):
    model = berts[kind]
    if kind == "distilbert":
        out = outcome(r"DistilBERT: ", lambda: model.forward(ids, mask))
    else:
        out = outcome(r"BERT: ", lambda: model.forward(ids, mask, types))
    if out is not None:
        width = 12 if kind == "mlm" else 8
        assert out.shape == (*ids.shape, width) and np.isfinite(out).all()


# -- state dicts ----------------------------------------------------------------------------------


@FAST
@given(weight=values((3, 4), "float32"), bias=values((3,), "float32"))
def test_load_state_dict(weight, bias):
    lin = Linear(4, 3)
    before = {k: v.copy() for k, v in lin.state_dict().items()}
    state = {"weight": weight, "bias": bias}
    result = outcome(r"load_state_dict into Linear: ", lambda: lin.load_state_dict(state))
    if result is None:  # refused: nothing written
        for k, v in lin.state_dict().items():
            np.testing.assert_array_equal(v, before[k])
    else:
        assert is_float_array(weight) and is_float_array(bias)
        np.testing.assert_array_equal(lin.weight.data, weight)


# -- constructors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build, error, message",
    [
        (lambda: Linear(0, 3), ValueError, r"Linear: in_features must be an integer >= 1, got 0"),
        (lambda: Linear(3, 0), ValueError, r"Linear: out_features must be an integer >= 1, got 0"),
        (lambda: Linear(-1, 3), ValueError, r"Linear: in_features .* got -1"),
        (lambda: Linear(4.0, 3), TypeError, r"Linear: in_features must be an integer .* 4\.0"),
        (lambda: Linear(True, 3), TypeError, r"Linear: in_features must be an integer"),
        (lambda: Linear("4", 3), TypeError, r"Linear: in_features must be an integer"),
        (lambda: Embedding(0, 4), ValueError, r"Embedding: num_embeddings .* got 0"),
        (lambda: Embedding(5, 0), ValueError, r"Embedding: embedding_dim .* got 0"),
        (lambda: Embedding(5, 3, padding_idx=5), ValueError, r"padding_idx must lie in \[-5, 5\)"),
        (lambda: Embedding(5, 3, padding_idx=-6), ValueError, r"padding_idx must lie in"),
        (lambda: Embedding(5, 3, padding_idx=1.0), TypeError, r"padding_idx must be an integer"),
        (lambda: LayerNorm(0), ValueError, r"LayerNorm: normalized_shape .* got 0"),
        (lambda: LayerNorm((4,)), TypeError, r"LayerNorm: normalized_shape must be an integer"),
        (lambda: LayerNorm(4, eps=0.0), ValueError, r"LayerNorm: eps must be a positive"),
        (lambda: LayerNorm(4, eps=math.nan), ValueError, r"LayerNorm: eps must be a positive"),
        (lambda: LayerNorm(4, eps="1e-5"), TypeError, r"LayerNorm: eps must be a positive"),
        (lambda: Dropout(-0.1), ValueError, r"Dropout: dropout probability must be in \[0, 1\]"),
        (lambda: Dropout(math.nan), ValueError, r"Dropout: dropout probability must be in"),
        (lambda: Dropout("0.1"), TypeError, r"Dropout: dropout probability must be a real"),
        (lambda: Dropout(None), TypeError, r"Dropout: dropout probability must be a real"),
        (lambda: Activation(None), ValueError, r"unknown activation None: expected one of relu"),
        (lambda: Activation(["relu"]), ValueError, r"unknown activation \['relu'\]"),
        (lambda: MultiHeadAttention(8, 0), ValueError, r"MultiHeadAttention: n_heads .* got 0"),
        (lambda: MultiHeadAttention(0, 2), ValueError, r"MultiHeadAttention: d_model .* got 0"),
        (lambda: MultiHeadAttention(8.0, 2), TypeError, r"MultiHeadAttention: d_model must be"),
        (lambda: MultiHeadAttention(8, 2, dropout=2), ValueError, r"dropout must be in \[0, 1\]"),
        (lambda: FeedForward(8, 0), ValueError, r"Linear: out_features .* got 0"),
        (lambda: FeedForward(8, 16, "tanh"), ValueError, r"unknown activation 'tanh'"),
        (lambda: FeedForward(8, 16, dropout=-1), ValueError, r"dropout probability must be in"),
        (lambda: EncoderLayer(10, 4, 16), ValueError, r"d_model=10 is not divisible by n_heads=4"),
        (lambda: EncoderLayer(8, 2, 16, layer_norm_eps=0), ValueError, r"eps must be a positive"),
        (lambda: DecoderLayer(8, 2, 16, dropout=1.5), ValueError, r"must be in \[0, 1\]"),
        (lambda: PositionalEncoding(0), ValueError, r"PositionalEncoding: d_model .* got 0"),
        (lambda: PositionalEncoding(4, max_len=0), ValueError, r"max_len .* got 0"),
        (lambda: Transformer(0, 5), ValueError, r"Transformer: src_vocab_size .* got 0"),
        (lambda: Transformer(5, 5, d_model=0), ValueError, r"Transformer: d_model .* got 0"),
        (lambda: Transformer(5, 5, d_model="8"), TypeError, r"Transformer: d_model must be an"),
        (lambda: Transformer(5, 5, n_heads=0), ValueError, r"Transformer: n_heads .* got 0"),
        (lambda: Transformer(5, 5, d_ff=0), ValueError, r"Transformer: d_ff .* got 0"),
        (lambda: Transformer(5, 5, n_encoder_layers=-1), ValueError, r"n_encoder_layers .* -1"),
        (lambda: Transformer(5, 5, n_decoder_layers=1.5), TypeError, r"n_decoder_layers must be"),
        (lambda: Transformer(5, 5, max_len=0), ValueError, r"Transformer: max_len .* got 0"),
        (lambda: Transformer(5, 5, pad_id=0.5), TypeError, r"Transformer: pad_id must be an int"),
        (
            lambda: Transformer(5, 5, d_model=8, n_heads=2, dropout=2.0),
            ValueError,
            r"Transformer: dropout must be in \[0, 1\], got 2\.0",
        ),
        (
            lambda: Transformer(5, 5, d_model=8, n_heads=2, layer_norm_eps=-1e-5),
            ValueError,
            r"Transformer: layer_norm_eps must be a positive real number, got -1e-05",
        ),
    ],
)
def test_bad_constructor_arguments(build, error, message):
    with pytest.raises(error, match=message):
        build()


def test_messages_say_what_was_expected_and_what_was_given():
    """A few messages in full, as a reader meets them."""
    lin = Linear(4, 3)
    cases = [
        (
            lambda: lin.forward(np.ones((2, 5), np.float32)),
            ValueError,
            "Linear(4 -> 3): input must have last dimension 4 (..., 4), got shape (2, 5)",
        ),
        (
            lambda: lin.forward([[1.0, 2.0, 3.0, 4.0]]),
            TypeError,
            "Linear(4 -> 3): input must be an array, got a Python list (convert it with "
            "numpy.asarray)",
        ),
        (
            lambda: lin.forward(np.float32(1.0)),
            TypeError,
            "Linear(4 -> 3): input must be an array, got the scalar",
        ),
        (
            lambda: lin.forward(np.ones((), np.float32)),
            ValueError,
            "Linear(4 -> 3): input must have at least 1 dimension (..., 4), got shape ()",
        ),
        (
            lambda: lin.forward(torch.ones(2, 4)),
            TypeError,
            "Linear(4 -> 3): input must be an array, got a torch.Tensor of shape (2, 4) "
            "(convert it with .detach().cpu().numpy()",
        ),
        (
            lambda: lin.forward(np.ones((2, 4))),
            TypeError,
            "Linear(4 -> 3): input must have the parameters' dtype float32, got a float64 array",
        ),
        (
            lambda: lin.forward(strict.asarray(np.ones((2, 4), np.float32))),
            TypeError,
            "Linear(4 -> 3): input must be a numpy.ndarray like the parameters, got a "
            "nanotf.testing.strict.StrictArray; move it with nanotf.asarray",
        ),
        (
            lambda: MultiHeadAttention(8, 2).forward(np.ones((2, 0, 8), np.float32)),
            ValueError,
            "MultiHeadAttention(d_model=8, n_heads=2): x must have at least one position (the "
            "keys attention averages over), got shape (2, 0, 8)",
        ),
    ]
    for call, error, text in cases:
        with pytest.raises(error) as err:
            call()
        assert str(err.value).startswith(text), str(err.value)
