"""DistilBertModel against Hugging Face ``transformers.DistilBertModel``, weights copied by name.

Fake loss ``(out * dout).sum()``; the output, the attention probabilities and EVERY parameter
gradient are compared by name, normwise relative (``max|got - want| / max|want|``).
Tolerances as in test_bert.py: float32 outputs 1e-5 and gradients 1e-4, float64 1e-9, finite
differences on the whole model (float64) 1e-8. The key bias (``k_lin.bias``) has no gradient in
exact arithmetic and is checked to be zero relative to the largest gradient.
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
from nanotf.models import DistilBertModel
from nanotf.nn import Dropout
from tests.conftest import (
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
    vocab_size=100, dim=48, n_layers=2, n_heads=3, hidden_dim=64, max_position_embeddings=32
)


def hf_config(**overrides) -> transformers.DistilBertConfig:
    kw = {**SMALL, "activation": "gelu_new", "attn_implementation": "eager", **overrides}
    return transformers.DistilBertConfig(**kw)


def build_pair(dtype, **overrides):
    return hf_pair(transformers.DistilBertModel, DistilBertModel, hf_config(**overrides), dtype)


def test_state_dict_keys_and_shapes_are_hugging_faces():
    cfg = hf_config()
    hf = transformers.DistilBertModel(cfg)
    ours = DistilBertModel.from_config(cfg.to_dict())
    want = {k: tuple(v.shape) for k, v in hf.state_dict().items()}
    got = {k: v.shape for k, v in ours.state_dict().items()}
    assert list(got) == list(want)
    assert got == want
    assert ours.embeddings.LayerNorm.eps == 1e-12
    assert ours.transformer.layer[1].output_layer_norm.eps == 1e-12


@pytest.mark.parametrize("act", ["gelu", "gelu_new", "relu"])
def test_matches_hugging_face(act, model_dtype):
    hf, ours = build_pair(model_dtype, activation=act)
    ids, mask = padded_ids()
    out = hf(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), output_attentions=True)
    h = ours.forward(ids, mask)
    assert h.dtype == model_dtype and h.shape == (3, 7, 48)
    assert rel_error(h, out.last_hidden_state.detach().numpy()) <= RTOL_OUT[model_dtype]
    for i, probs in enumerate(out.attentions):
        got = ours.intermediate(f"transformer.layer.{i}.attention.probs")
        assert rel_error(got, probs.detach().numpy()) <= RTOL_OUT[model_dtype]
    dout = np.random.default_rng(1).standard_normal(h.shape).astype(model_dtype)
    (out.last_hidden_state * torch.from_numpy(dout)).sum().backward()
    assert ours.backward(dout) is None
    assert set(dict(ours.named_parameters())) == set(dict(hf.named_parameters()))
    # every gradient by name; k_lin.bias (zero in exact arithmetic) against the largest one
    assert_hf_grads_match(ours, hf, model_dtype, RTOL_GRAD[model_dtype])


def test_sinusoidal_position_table_is_hugging_faces():
    cfg = hf_config(sinusoidal_pos_embds=True)
    hf = transformers.DistilBertModel(cfg)
    ours = DistilBertModel.from_config(cfg.to_dict())
    table = ours.embeddings.position_embeddings.weight.data
    want = hf.embeddings.position_embeddings.weight.detach().numpy()
    np.testing.assert_allclose(table, want, rtol=0, atol=1e-6)
    assert table[0, 0] == 0 and table[0, 1] == 1  # sin(0), cos(0)
    ours.eval()
    ids, mask = padded_ids()
    ours.backward(np.ones(ours.forward(ids, mask).shape, np.float32))
    assert ours.embeddings.position_embeddings.weight.grad[:7].any()  # trained, as in HF 5


def test_intermediates_and_their_gradients_are_visible(float64):
    hf, ours = build_pair(float64)
    ids, mask = padded_ids()
    kept = {}

    def keep(_module, _inputs, output):
        output.retain_grad()
        kept["pre"] = output

    hf.transformer.layer[0].ffn.lin1.register_forward_hook(keep)
    out = hf(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
    h = ours.forward(ids, mask)
    dout = np.random.default_rng(2).standard_normal(h.shape)
    (out.last_hidden_state * torch.from_numpy(dout)).sum().backward()
    ours.backward(dout)
    name = "transformer.layer.0.ffn.pre_activation"
    assert rel_error(ours.intermediate(name), kept["pre"].detach().numpy()) <= 1e-9
    assert rel_error(ours.intermediate_grad(name), kept["pre"].grad.numpy()) <= 1e-9
    assert ours.intermediate_grad("transformer.layer.1.attention.scores").shape == (3, 3, 7, 7)
    xhat = ours.intermediate("transformer.layer.1.sa_layer_norm.xhat")
    np.testing.assert_allclose(xhat.mean(-1), 0, atol=1e-12)


def test_dropout_instances_and_modes():
    model = DistilBertModel.from_config(hf_config(dropout=0.3, attention_dropout=0.3).to_dict())
    drops = [m for _, m in model.named_modules() if isinstance(m, Dropout)]
    assert len(set(map(id, drops))) == len(drops) == 1 + 2  # embeddings, ffn per layer
    ids, mask = padded_ids()
    model.train()
    assert not np.allclose(model.forward(ids, mask), model.forward(ids, mask))
    model.eval()
    np.testing.assert_array_equal(model.forward(ids, mask), model.forward(ids, mask))


def test_runs_unchanged_on_the_cupy_stand_in():
    """No silent NumPy conversion anywhere (as CuPy would refuse), bit-identical results."""
    model = DistilBertModel.from_config(hf_config(sinusoidal_pos_embds=True).to_dict())
    model.eval()
    ids, mask = padded_ids()
    shape = (*ids.shape, model.config.dim)
    dout = np.random.default_rng(4).standard_normal(shape).astype(np.float32)
    assert_model_same_on_strict(model, [ids, mask], [dout])


@pytest.mark.parametrize("act", ["gelu", "gelu_new"])
def test_whole_model_gradcheck(act, float64):
    nanotf.manual_seed(0)
    cfg = hf_config(
        vocab_size=20,
        dim=8,
        n_layers=2,
        n_heads=2,
        hidden_dim=12,
        max_position_embeddings=8,
        dropout=0.0,
        attention_dropout=0.0,
        activation=act,
        initializer_range=0.5,
    )
    model = DistilBertModel.from_config(cfg.to_dict())
    model.eval()
    ids, mask = padded_ids(vocab=20, length=5, seed=3)
    errors = gradcheck_module(model, ids, mask, max_per_tensor=4)
    assert len(errors) == len(list(model.named_parameters()))
    assert max(errors.values()) <= GRADCHECK_RTOL, errors


def test_errors():
    good = hf_config().to_dict()
    with pytest.raises(ValueError, match="activation='swish'"):
        DistilBertModel.from_config({**good, "activation": "swish"})
    missing = dict(good)
    del missing["hidden_dim"]
    with pytest.raises(KeyError, match="hidden_dim"):
        DistilBertModel.from_config(missing)
    with pytest.raises(ValueError, match="not divisible"):
        DistilBertModel.from_config({**good, "n_heads": 5})
    model = DistilBertModel.from_config(good)
    ids, mask = padded_ids()
    with pytest.raises(ValueError, match=r"40.*max_position_embeddings=32"):
        model.forward(np.ones((1, 40), dtype=np.int64))
    with pytest.raises(ValueError, match=r"attention_mask.*\(3, 7\)"):
        model.forward(ids, mask.T)
    with pytest.raises(IndexError, match=r"input_ids.*\[0, 100\)"):
        model.forward(ids + 100)
    state = {
        k: v.detach().numpy()
        for k, v in transformers.DistilBertModel(hf_config()).state_dict().items()
    }
    state["embeddings.position_ids"] = np.arange(32)[None]  # saved by older versions: accepted
    model.load_state_dict(state)
    bad = dict(state)
    bad["transformer.layer.1.ffn.lin2.weight"] = np.zeros((64, 48), np.float32)
    with pytest.raises(ValueError, match=r"transformer\.layer\.1\.ffn\.lin2\.weight"):
        model.load_state_dict(bad)
    bad = dict(state)
    del bad["transformer.layer.0.sa_layer_norm.bias"]
    with pytest.raises(KeyError, match=r"transformer\.layer\.0\.sa_layer_norm\.bias"):
        model.load_state_dict(bad)
