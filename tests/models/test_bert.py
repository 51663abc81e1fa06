"""BertModel and BertForMaskedLM against Hugging Face ``transformers``, weights copied by name.

Every comparison uses the fake loss ``(out * dout).sum()`` (plus ``(pooler * dpool).sum()`` for
BertModel) and compares the output, the attention probabilities and EVERY parameter gradient by
its Hugging Face name. Errors are normwise relative: ``max|got - want| / max|want|``.

Tolerances:

* float32: outputs 1e-5, gradients 1e-4 (float32 rounds at 6e-8; two layers of GEMMs with
  sums over <= 64 terms, LayerNorm and softmax backward cancellations stay ~1e-6).
* float64: 1e-9 for both (honest agreement is ~1e-15).
* finite differences on the whole model (float64, seven-point stencil): 1e-8.

The key bias gets no gradient in exact arithmetic (adding a constant to every score of a row
leaves the softmax unchanged), so both sides hold round-off there: it is checked to be zero
relative to the model's largest gradient instead of against Hugging Face's round-off.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest
import torch
import transformers

import nanotf
from nanotf.gradcheck import gradcheck_module
from nanotf.models import BertForMaskedLM, BertModel
from nanotf.nn import Dropout, Module
from tests.conftest import (
    DropoutReplay,
    assert_hf_grads_match,
    assert_model_same_on_strict,
    hf_pair,
    padded_ids,
    rel_error,
)

RTOL_OUT = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-9}
RTOL_GRAD = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-9}
GRADCHECK_RTOL = 1e-8

SMALL = dict(
    vocab_size=100,
    hidden_size=48,
    num_hidden_layers=2,
    num_attention_heads=3,
    intermediate_size=64,
    max_position_embeddings=32,
)
TINY = dict(
    vocab_size=20,
    hidden_size=8,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=12,
    max_position_embeddings=8,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
)


# -- helpers ------------------------------------------------------------------------------------


def hf_config(**overrides) -> transformers.BertConfig:
    kw = {**SMALL, "hidden_act": "gelu_new", "attn_implementation": "eager", **overrides}
    return transformers.BertConfig(**kw)


def make_inputs(vocab: int = 100, batch: int = 3, length: int = 7, seed: int = 0):
    """ids with padding (pad id 0) at the end of two rows, and token types 0 then 1."""
    ids, mask = padded_ids(vocab, batch, length, seed)
    types = np.zeros((batch, length), dtype=np.int64)
    types[:, length // 2 + 1 :] = 1
    types[2, :] = 0  # a row with one segment only
    types[0, 1] = 1
    return ids, mask, types


def build_pair(hf_cls, our_cls, dtype, **overrides):
    """A Hugging Face model (eval, float32 or .double()) and nanotf's, weights copied."""
    return hf_pair(hf_cls, our_cls, hf_config(**overrides), dtype)


def hf_forward(hf, ids, mask, types):
    return hf(
        torch.from_numpy(ids),
        attention_mask=torch.from_numpy(mask),
        token_type_ids=torch.from_numpy(types),
        output_attentions=True,
    )


# -- structure and loading ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["model", "mlm"])
def test_state_dict_keys_and_shapes_are_hugging_faces(kind):
    cfg = hf_config(num_hidden_layers=1)
    hf = (transformers.BertModel if kind == "model" else transformers.BertForMaskedLM)(cfg)
    ours = (BertModel if kind == "model" else BertForMaskedLM).from_config(cfg.to_dict())
    want = {k: tuple(v.shape) for k, v in hf.state_dict().items()}
    got = {k: v.shape for k, v in ours.state_dict().items()}
    assert list(got) == list(want)  # same names, same order
    assert got == want
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in hf.named_parameters()]


def test_mlm_decoder_is_tied_to_the_word_embeddings():
    mlm = BertForMaskedLM.from_config(hf_config().to_dict())
    pred = mlm.cls.predictions
    assert pred.decoder.weight is mlm.bert.embeddings.word_embeddings.weight
    assert pred.decoder.bias is pred.bias
    assert mlm.bert.pooler is None
    untied = BertForMaskedLM.from_config(hf_config(tie_word_embeddings=False).to_dict())
    assert (
        untied.cls.predictions.decoder.weight is not untied.bert.embeddings.word_embeddings.weight
    )


def test_initialisation_is_hugging_faces():
    nanotf.manual_seed(0)
    model = BertModel.from_config(hf_config(initializer_range=0.05, pad_token_id=3).to_dict())
    sd = model.state_dict()
    word = sd["embeddings.word_embeddings.weight"]
    assert np.all(word[3] == 0)  # padding row
    assert abs(np.delete(word, 3, axis=0).std() - 0.05) < 0.005
    assert abs(sd["encoder.layer.0.intermediate.dense.weight"].std() - 0.05) < 0.005
    assert abs(sd["pooler.dense.weight"].std() - 0.05) < 0.005
    for name, value in sd.items():
        if name.endswith("LayerNorm.weight"):
            assert np.all(value == 1), name
        elif name.endswith(".bias"):
            assert np.all(value == 0), name
    mlm = BertForMaskedLM.from_config(hf_config().to_dict())
    assert np.all(mlm.state_dict()["cls.predictions.bias"] == 0)
    assert np.all(mlm.state_dict()["bert.embeddings.word_embeddings.weight"][0] == 0)


def test_old_checkpoint_buffers_load_and_are_checked():
    cfg = hf_config(num_hidden_layers=1)
    hf = transformers.BertForMaskedLM(cfg)
    state = {k: v.detach().numpy() for k, v in hf.state_dict().items()}
    state["bert.embeddings.position_ids"] = np.arange(32)[None, :]  # as older versions saved
    state["bert.embeddings.token_type_ids"] = np.zeros((1, 32), dtype=np.int64)
    mlm = BertForMaskedLM.from_config(cfg.to_dict())
    mlm.load_state_dict(state)
    np.testing.assert_array_equal(
        mlm.state_dict()["cls.predictions.transform.dense.weight"],
        state["cls.predictions.transform.dense.weight"],
    )
    state["bert.embeddings.position_ids"] = np.arange(32)[None, ::-1].copy()
    with pytest.raises(ValueError, match="position_ids"):
        mlm.load_state_dict(state)


# -- against Hugging Face -----------------------------------------------------------------------


@pytest.mark.parametrize("act", ["gelu", "gelu_new", "relu"])
def test_bert_model_matches_hugging_face(act, model_dtype):
    hf, ours = build_pair(transformers.BertModel, BertModel, model_dtype, hidden_act=act)
    ids, mask, types = make_inputs()
    out = hf_forward(hf, ids, mask, types)
    h = ours.forward(ids, mask, types)
    assert h.dtype == model_dtype and h.shape == (3, 7, 48)
    assert rel_error(h, out.last_hidden_state.detach().numpy()) <= RTOL_OUT[model_dtype]
    pooled = ours.pooler_output
    assert rel_error(pooled, out.pooler_output.detach().numpy()) <= RTOL_OUT[model_dtype]
    for i, probs in enumerate(out.attentions):
        got = ours.intermediate(f"encoder.layer.{i}.attention.self.probs")
        assert rel_error(got, probs.detach().numpy()) <= RTOL_OUT[model_dtype]
    rng = np.random.default_rng(1)
    dout = rng.standard_normal(h.shape).astype(model_dtype)
    dpool = rng.standard_normal(pooled.shape).astype(model_dtype)
    dout_before = dout.copy()
    loss = (out.last_hidden_state * torch.from_numpy(dout)).sum()
    (loss + (out.pooler_output * torch.from_numpy(dpool)).sum()).backward()
    assert ours.backward(dout, dpool) is None
    np.testing.assert_array_equal(dout, dout_before)  # the caller's gradient is left alone
    assert_hf_grads_match(ours, hf, model_dtype, RTOL_GRAD[model_dtype])


@pytest.mark.parametrize("act", ["gelu", "gelu_new"])
def test_masked_lm_matches_hugging_face(act, model_dtype):
    hf, ours = build_pair(
        transformers.BertForMaskedLM, BertForMaskedLM, model_dtype, hidden_act=act
    )
    ids, mask, types = make_inputs()
    out = hf_forward(hf, ids, mask, types)
    logits = ours.forward(ids, mask, types)
    assert logits.shape == (3, 7, 100)
    assert rel_error(logits, out.logits.detach().numpy()) <= RTOL_OUT[model_dtype]
    dout = np.random.default_rng(2).standard_normal(logits.shape).astype(model_dtype)
    (out.logits * torch.from_numpy(dout)).sum().backward()
    ours.backward(dout)
    # the tied word-embedding gradient sums both uses
    assert_hf_grads_match(ours, hf, model_dtype, RTOL_GRAD[model_dtype])


def test_gradients_accumulate_over_backward_calls(float64):
    hf, ours = build_pair(transformers.BertModel, BertModel, float64, hidden_act="relu")
    ids, mask, types = make_inputs()
    dout = np.random.default_rng(3).standard_normal((3, 7, 48))
    ours.forward(ids, mask, types)
    ours.backward(dout)
    once = {n: p.grad.copy() for n, p in ours.named_parameters()}
    ours.forward(ids, mask, types)
    ours.backward(dout)
    for n, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad, 2 * once[n], rtol=1e-12, atol=1e-300)
    ours.zero_grad()
    assert all(not p.grad.any() for p in ours.parameters())


def test_default_token_types_and_mask(float64):
    hf, ours = build_pair(transformers.BertModel, BertModel, float64, hidden_act="gelu_new")
    ids, _, _ = make_inputs()
    want = hf(torch.from_numpy(ids)).last_hidden_state.detach().numpy()
    assert rel_error(ours.forward(ids), want) <= RTOL_OUT[float64]
    bool_mask = np.ones(ids.shape, dtype=bool)
    assert rel_error(ours.forward(ids, bool_mask), want) <= RTOL_OUT[float64]


def test_intermediates_and_their_gradients_are_visible(float64):
    """FFN pre-activation and its gradient against HF's (hooked), attention, LayerNorm x̂."""
    hf, ours = build_pair(transformers.BertModel, BertModel, float64, hidden_act="gelu_new")
    ids, mask, types = make_inputs()
    kept = {}

    def keep(_module, _inputs, output):
        output.retain_grad()
        kept["pre"] = output

    hf.encoder.layer[1].intermediate.dense.register_forward_hook(keep)
    out = hf_forward(hf, ids, mask, types)
    h = ours.forward(ids, mask, types)
    dout = np.random.default_rng(4).standard_normal(h.shape)
    (out.last_hidden_state * torch.from_numpy(dout)).sum().backward()
    ours.backward(dout)

    pre = "encoder.layer.1.intermediate.pre_activation"
    assert rel_error(ours.intermediate(pre), kept["pre"].detach().numpy()) <= 1e-9
    assert rel_error(ours.intermediate_grad(pre), kept["pre"].grad.numpy()) <= 1e-9
    names = dict(ours.named_intermediates())
    for layer in range(2):
        for what in ("scores", "probs"):
            name = f"encoder.layer.{layer}.attention.self.{what}"
            assert name in names
            assert ours.intermediate_grad(name).shape == (3, 3, 7, 7)
        xhat = ours.intermediate(f"encoder.layer.{layer}.output.LayerNorm.xhat")
        np.testing.assert_allclose(xhat.mean(-1), 0, atol=1e-12)
    probs = ours.intermediate("encoder.layer.0.attention.self.probs")
    assert np.all(probs[1, :, :, 5:] == 0)  # padded keys get no attention
    np.testing.assert_allclose(probs.sum(-1), 1, rtol=1e-12)


def test_dropout_follows_train_and_eval(float64):
    model = BertModel.from_config(
        hf_config(hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.3).to_dict()
    )
    ids, mask, types = make_inputs()
    drops = [name for name, m in model.named_modules() if isinstance(m, Dropout)]
    assert len(drops) == 1 + 2 * 2  # embeddings, and per layer attention.output and output
    assert len(set(id(m) for _, m in model.named_modules() if isinstance(m, Dropout))) == 5
    model.train()
    a, b = model.forward(ids, mask, types), model.forward(ids, mask, types)
    assert not np.allclose(a, b)
    model.eval()
    np.testing.assert_array_equal(model.forward(ids, mask, types), model.forward(ids, mask, types))


class _WithPooler(Module):
    """Last hidden state and pooled output, flattened into one vector, for gradcheck_module."""

    def __init__(self, model: BertModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, *args):
        h = self.model.forward(*args)
        self._shape = h.shape
        return np.concatenate([h.reshape(-1), self.model.pooler_output.reshape(-1)])

    def backward(self, dout):
        n = int(np.prod(self._shape))
        self.model.backward(dout[:n].reshape(self._shape), dout[n:].reshape(self._shape[0], -1))


def tiny(**overrides) -> dict:
    return hf_config(**{**TINY, "hidden_act": "gelu_new", **overrides}).to_dict()


def tiny_inputs():
    ids, mask, types = make_inputs(vocab=20, batch=3, length=5, seed=5)
    return ids, mask, types


@pytest.mark.parametrize("norm_first", [False, True], ids=["post_ln", "pre_ln"])
def test_whole_model_gradcheck(norm_first, float64):
    nanotf.manual_seed(0)
    model = BertModel.from_config(tiny(norm_first=norm_first, initializer_range=0.5))
    model.eval()
    errors = gradcheck_module(_WithPooler(model), *tiny_inputs(), max_per_tensor=4)
    assert len(errors) == len(list(model.named_parameters()))
    assert max(errors.values()) <= GRADCHECK_RTOL, errors


def test_masked_lm_gradcheck_with_tied_weights(float64):
    nanotf.manual_seed(1)
    model = BertForMaskedLM.from_config(tiny(hidden_act="gelu", initializer_range=0.5))
    model.eval()
    errors = gradcheck_module(model, *tiny_inputs(), max_per_tensor=4)
    assert "bert.embeddings.word_embeddings.weight" in errors  # input and output use, summed
    assert max(errors.values()) <= GRADCHECK_RTOL, errors


def test_gradcheck_in_training_mode_uses_the_forward_dropout_masks(float64):
    nanotf.manual_seed(2)
    cfg = tiny(hidden_dropout_prob=0.2, attention_probs_dropout_prob=0.2, initializer_range=0.5)
    model = BertModel.from_config(cfg)
    model.train()
    errors = gradcheck_module(DropoutReplay(model, 7), *tiny_inputs(), max_per_tensor=3)
    assert max(errors.values()) <= GRADCHECK_RTOL, errors


@pytest.mark.parametrize("kind", ["model_pre_ln", "mlm"])
def test_runs_unchanged_on_the_cupy_stand_in(kind):
    """No silent NumPy conversion anywhere (as CuPy would refuse), bit-identical results."""
    if kind == "mlm":
        model = BertForMaskedLM.from_config(hf_config(hidden_act="relu").to_dict())
    else:
        model = BertModel.from_config(hf_config(norm_first=True).to_dict())
    model.eval()
    ids, mask, types = make_inputs()
    want = model.forward(ids, mask, types)  # for the shapes of the douts
    douts = [np.ones(want.shape, np.float32)]
    if kind != "mlm":
        douts.append(np.ones(model.pooler_output.shape, np.float32))
    assert_model_same_on_strict(model, [ids, mask, types], douts)


# -- the pre-LN switch --------------------------------------------------------------------------


def test_pre_ln_has_the_same_keys_and_a_different_output(float64):
    post = BertModel.from_config(hf_config(initializer_range=0.3).to_dict())
    pre = BertModel.from_config(hf_config(initializer_range=0.3, norm_first=True).to_dict())
    assert list(pre.state_dict()) == list(post.state_dict())
    pre.load_state_dict(post.state_dict())
    for m in (pre, post):
        m.eval()
    ids, mask, types = make_inputs()
    a, b = post.forward(ids, mask, types), pre.forward(ids, mask, types)
    assert rel_error(b, a) > 0.1
    assert "norm_first=True" in repr(pre)


def test_pre_ln_layer_matches_torch_transformer_encoder_layer(model_dtype):
    cfg = hf_config(num_hidden_layers=1, hidden_act="gelu", norm_first=True, layer_norm_eps=1e-6)
    nanotf.manual_seed(3)
    model = BertModel.from_config({**cfg.to_dict(), "initializer_range": 0.2})
    layer = model.encoder.layer[0]
    layer.eval()
    for _, m in layer.named_modules():  # non-trivial LayerNorm parameters
        if type(m).__name__ == "LayerNorm":
            m.weight.data[...] = 1 + 0.3 * nanotf.rng().standard_normal(48)
            m.bias.data[...] = 0.3 * nanotf.rng().standard_normal(48)
    ref = torch.nn.TransformerEncoderLayer(
        48,
        3,
        dim_feedforward=64,
        dropout=0.0,
        activation="gelu",
        layer_norm_eps=1e-6,
        batch_first=True,
        norm_first=True,
        dtype=torch.float64 if model_dtype == np.float64 else None,
    )
    sd = layer.state_dict()
    t = {k: torch.from_numpy(v.copy()) for k, v in sd.items()}
    attn = "attention.self."
    mapping = {
        "self_attn.in_proj_weight": torch.cat(
            [t[f"{attn}{p}.weight"] for p in ("query", "key", "value")]
        ),
        "self_attn.in_proj_bias": torch.cat(
            [t[f"{attn}{p}.bias"] for p in ("query", "key", "value")]
        ),
        "self_attn.out_proj.weight": t["attention.output.dense.weight"],
        "self_attn.out_proj.bias": t["attention.output.dense.bias"],
        "norm1.weight": t["attention.output.LayerNorm.weight"],
        "norm1.bias": t["attention.output.LayerNorm.bias"],
        "linear1.weight": t["intermediate.dense.weight"],
        "linear1.bias": t["intermediate.dense.bias"],
        "linear2.weight": t["output.dense.weight"],
        "linear2.bias": t["output.dense.bias"],
        "norm2.weight": t["output.LayerNorm.weight"],
        "norm2.bias": t["output.LayerNorm.bias"],
    }
    ref.load_state_dict(mapping)
    ref.eval()
    _, mask, _ = make_inputs()
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 7, 48)).astype(model_dtype)
    dout = rng.standard_normal((3, 7, 48)).astype(model_dtype)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    want = ref(xt, src_key_padding_mask=torch.from_numpy(mask == 0))
    (want * torch.from_numpy(dout)).sum().backward()
    got = layer.forward(x, mask)
    assert rel_error(got, want.detach().numpy()) <= RTOL_OUT[model_dtype]
    assert rel_error(layer.backward(dout), xt.grad.numpy()) <= RTOL_GRAD[model_dtype]
    params = dict(layer.named_parameters())
    grads = {k: v.grad for k, v in ref.named_parameters()}
    qkv_w = np.concatenate([params[f"{attn}{p}.weight"].grad for p in ("query", "key", "value")])
    assert rel_error(qkv_w, grads["self_attn.in_proj_weight"].numpy()) <= RTOL_GRAD[model_dtype]
    for ref_name, ours in [
        ("self_attn.out_proj.weight", "attention.output.dense.weight"),
        ("norm1.weight", "attention.output.LayerNorm.weight"),
        ("norm1.bias", "attention.output.LayerNorm.bias"),
        ("linear1.weight", "intermediate.dense.weight"),
        ("linear2.bias", "output.dense.bias"),
        ("norm2.weight", "output.LayerNorm.weight"),
    ]:
        err = rel_error(params[ours].grad, grads[ref_name].numpy())
        assert err <= RTOL_GRAD[model_dtype], f"{ours} vs torch {ref_name}: {err:.3g}"


# -- bad input ----------------------------------------------------------------------------------


def test_config_errors():
    good = hf_config().to_dict()
    with pytest.raises(ValueError, match="hidden_act='swish'"):
        BertModel.from_config({**good, "hidden_act": "swish"})
    with pytest.raises(ValueError, match="hidden_act='nonsense'"):
        BertForMaskedLM.from_config({**good, "hidden_act": "nonsense"})
    missing = dict(good)
    del missing["intermediate_size"]
    with pytest.raises(KeyError, match="intermediate_size"):
        BertModel.from_config(missing)
    with pytest.raises(ValueError, match="position_embedding_type='relative_key'"):
        BertModel.from_config({**good, "position_embedding_type": "relative_key"})
    BertModel.from_config({**good, "position_embedding_type": "absolute"})
    with pytest.raises(ValueError, match="is_decoder"):
        BertModel.from_config({**good, "is_decoder": True})
    with pytest.raises(ValueError, match="not divisible"):
        BertModel.from_config({**good, "num_attention_heads": 5})
    with pytest.raises(ValueError, match="hidden_dropout_prob"):
        BertModel.from_config({**good, "hidden_dropout_prob": 1.5})


def test_input_errors():
    model = BertModel.from_config(hf_config().to_dict())
    ids, mask, types = make_inputs()
    long_ids = np.ones((2, 33), dtype=np.int64)
    with pytest.raises(ValueError, match=r"33.*max_position_embeddings=32"):
        model.forward(long_ids)
    with pytest.raises(ValueError, match=r"attention_mask.*\(3, 7\).*\(3, 6\)"):
        model.forward(ids, mask[:, :6])
    with pytest.raises(ValueError, match=r"attention_mask"):
        model.forward(ids, mask[:, :, None])
    with pytest.raises(IndexError, match=r"input_ids.*\[0, 100\).*100"):
        model.forward(np.where(ids == ids.max(), 100, ids))
    with pytest.raises(IndexError, match=r"input_ids.*-1"):
        model.forward(ids - 1)
    with pytest.raises(IndexError, match=r"token_type_ids.*\[0, 2\)"):
        model.forward(ids, mask, types + 1)
    with pytest.raises(ValueError, match="token_type_ids"):
        model.forward(ids, mask, types[:2])
    with pytest.raises(ValueError, match="batch, length"):
        model.forward(ids[0])
    with pytest.raises(TypeError, match="input_ids"):
        model.forward(ids.astype(np.float32))
    mlm = BertForMaskedLM.from_config(hf_config().to_dict())
    mlm.forward(ids)
    with pytest.raises(ValueError, match="no pooler"):
        mlm.bert.backward(np.zeros((3, 7, 48), np.float32), np.zeros((3, 48), np.float32))


def test_state_dict_errors_name_the_key():
    cfg = hf_config(num_hidden_layers=1)
    model = BertModel.from_config(cfg.to_dict())
    state = {k: v.detach().numpy() for k, v in transformers.BertModel(cfg).state_dict().items()}
    bad = dict(state)
    bad["encoder.layer.0.intermediate.dense.weight"] = np.zeros((48, 64), np.float32)
    with pytest.raises(ValueError, match=r"encoder\.layer\.0\.intermediate\.dense\.weight"):
        model.load_state_dict(bad)
    bad = dict(state)
    del bad["pooler.dense.bias"]
    with pytest.raises(KeyError, match=r"pooler\.dense\.bias"):
        model.load_state_dict(bad)
    mlm = BertForMaskedLM.from_config(cfg.to_dict())
    mstate = {
        k: v.detach().numpy() for k, v in transformers.BertForMaskedLM(cfg).state_dict().items()
    }
    mstate["cls.predictions.decoder.bias"] = mstate["cls.predictions.decoder.bias"] + 1
    with pytest.raises(ValueError, match=r"cls\.predictions\.bias.*tied"):
        mlm.load_state_dict(mstate)
