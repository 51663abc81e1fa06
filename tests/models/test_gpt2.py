"""GPT2Model and GPT2LMHeadModel against Hugging Face ``transformers``, weights copied by name.

Every comparison uses the fake loss ``(out * dout).sum()`` and compares the output, the attention
probabilities and EVERY parameter gradient by its Hugging Face name (normwise relative error,
``max|got - want| / max|want|``, conftest's ``rel_error``).

Tolerances: float32 logits 1e-5, gradients 1e-4; float64 1e-9 for both; whole-model finite
differences (float64, seven-point stencil) 1e-8.

Vanishing by design (conftest's one rule): the key part of ``c_attn.bias`` (columns C..2C) gets
no gradient (a constant added to every score of a row leaves its softmax unchanged), and with a
single token every query sees one key, so the query and key parts of ``c_attn`` (weight and
bias) get none either. Those slices only are compared against the floor that ``grad_floor`` uses
for a key bias: ``terms_size`` of the model's largest parameter gradient.
"""

from __future__ import annotations

import os
from typing import Any

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest
import torch
import transformers

import nanotf
from nanotf.gradcheck import gradcheck_module
from nanotf.models import GPT2LMHeadModel, GPT2Model
from nanotf.nn import Dropout
from tests.conftest import (
    DropoutReplay,
    assert_model_same_on_strict,
    hf_pair,
    padded_ids,
    rel_error,
    terms_size,
)

RTOL_OUT = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-9}
RTOL_GRAD = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-9}
GRADCHECK_RTOL = 1e-8
VOCAB, POSITIONS = 37, 16

CONFIGS = {
    "e12_h3_l2_gelu_new": dict(n_embd=12, n_head=3, n_layer=2, n_inner=None),
    "e20_h5_l3_gelu_inner28_eps1e-3": dict(
        n_embd=20, n_head=5, n_layer=3, n_inner=28, activation_function="gelu",
        layer_norm_epsilon=1e-3,
    ),
    "e12_h3_l1_inner20": dict(n_embd=12, n_head=3, n_layer=1, n_inner=20),
    "e20_h5_l2_layer_idx_scaling": dict(
        n_embd=20, n_head=5, n_layer=2, n_inner=None, scale_attn_by_inverse_layer_idx=True,
        activation_function="gelu_pytorch_tanh",
    ),
}


def hf_config(**overrides) -> transformers.GPT2Config:
    kw = dict(
        vocab_size=VOCAB, n_positions=POSITIONS, n_embd=12, n_layer=2, n_head=3,
        activation_function="gelu_new", initializer_range=0.2, bos_token_id=0, eos_token_id=0,
        attn_implementation="eager",
    )
    return transformers.GPT2Config(**{**kw, **overrides})


def c_attn_slices(name: str, n_embd: int, length: int) -> list[tuple[Any, bool]]:
    """(index, vanishes by design) for the parts of a parameter's gradient."""
    if ".attn.c_attn." not in name:
        return [(Ellipsis, False)]
    cols = [slice(i * n_embd, (i + 1) * n_embd) for i in range(3)]
    col = (lambda s: s) if name.endswith("bias") else (lambda s: (slice(None), s))
    q_zero = length == 1  # one key: dq = dk = 0
    return [(col(cols[0]), q_zero), (col(cols[1]), q_zero or name.endswith("bias")),
            (col(cols[2]), False)]


def assert_grads_match(ours, hf, dtype, tol: float, n_embd: int, length: int) -> float:
    """Every Hugging Face parameter's gradient equals ours by name; the slices that vanish by
    design against the key-bias floor. Returns the worst error."""
    mine = dict(ours._named_parameters_all())
    hf_params = dict(hf.named_parameters())
    assert set(hf_params) <= set(mine)
    floor = max(terms_size(p.grad) for p in hf_params.values())  # grad_floor's rule
    worst = 0.0
    for name, p in hf_params.items():
        got, want = nanotf.to_numpy(mine[name].grad), p.grad.numpy()
        assert got.dtype == dtype, f"{name}.grad has dtype {got.dtype}"
        for index, vanishes in c_attn_slices(name, n_embd, length):
            err = rel_error(got[index], want[index], floor if vanishes else 0.0)
            worst = max(worst, err)
            assert err <= tol, f"grad of {name}[{index}]: relative error {err:.3g}"
    return worst


def hf_state(hf) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy() for k, v in hf.state_dict().items()}


# -- against Hugging Face -----------------------------------------------------------------------


@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "padded"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_lm_head_model_matches_hugging_face(name, padded, model_dtype):
    cfg = hf_config(**CONFIGS[name])
    hf, ours = hf_pair(transformers.GPT2LMHeadModel, GPT2LMHeadModel, cfg, model_dtype)
    ids, mask = padded_ids(VOCAB, 3, 7, seed=1)
    kw = {"attention_mask": torch.from_numpy(mask)} if padded else {}
    out = hf(torch.from_numpy(ids), output_attentions=True, **kw)
    logits = ours.forward(ids, mask if padded else None)
    assert logits.dtype == model_dtype and logits.shape == (3, 7, VOCAB)
    assert rel_error(logits, out.logits) <= RTOL_OUT[model_dtype]
    for i, probs in enumerate(out.attentions):
        got = ours.intermediate(f"transformer.h.{i}.attn.probs")
        assert rel_error(got, probs) <= RTOL_OUT[model_dtype]
    dout = np.random.default_rng(2).standard_normal(logits.shape).astype(model_dtype)
    dout_before = dout.copy()
    (out.logits * torch.from_numpy(dout)).sum().backward()
    assert ours.backward(dout) is None
    np.testing.assert_array_equal(dout, dout_before)
    assert_grads_match(ours, hf, model_dtype, RTOL_GRAD[model_dtype], cfg.n_embd, 7)


def test_length_one_and_the_base_model(model_dtype):
    cfg = hf_config(**CONFIGS["e20_h5_l3_gelu_inner28_eps1e-3"])
    for hf_cls, our_cls in [
        (transformers.GPT2LMHeadModel, GPT2LMHeadModel),
        (transformers.GPT2Model, GPT2Model),
    ]:
        hf, ours = hf_pair(hf_cls, our_cls, cfg, model_dtype)
        for ids in (np.array([[5], [9]]), padded_ids(VOCAB, 3, 4, seed=3)[0]):
            hf.zero_grad()
            ours.zero_grad()
            out = hf(torch.from_numpy(ids))
            want = out.logits if our_cls is GPT2LMHeadModel else out.last_hidden_state
            got = ours.forward(ids)
            assert rel_error(got, want) <= RTOL_OUT[model_dtype]
            dout = np.random.default_rng(4).standard_normal(got.shape).astype(model_dtype)
            (want * torch.from_numpy(dout)).sum().backward()
            ours.backward(dout)
            t = ids.shape[1]
            assert_grads_match(ours, hf, model_dtype, RTOL_GRAD[model_dtype], cfg.n_embd, t)


def test_intermediates_and_their_gradients_are_visible(float64):
    hf, ours = hf_pair(transformers.GPT2LMHeadModel, GPT2LMHeadModel, hf_config(), float64)
    kept = {}

    def keep(_module, _inputs, output):
        output.retain_grad()
        kept["pre"] = output

    hf.transformer.h[1].mlp.c_fc.register_forward_hook(keep)
    ids, mask = padded_ids(VOCAB, 3, 7, seed=1)
    out = hf(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
    logits = ours.forward(ids, mask)
    dout = np.random.default_rng(5).standard_normal(logits.shape)
    (out.logits * torch.from_numpy(dout)).sum().backward()
    ours.backward(dout)
    pre = "transformer.h.1.mlp.pre_activation"
    assert rel_error(ours.intermediate(pre), kept["pre"]) <= 1e-9
    assert rel_error(ours.intermediate_grad(pre), kept["pre"].grad) <= 1e-9
    probs = ours.intermediate("transformer.h.0.attn.probs")
    assert probs.shape == (3, 3, 7, 7)
    assert np.all(np.triu(probs, 1) == 0)  # causal: no query sees a later key
    assert np.all(probs[1, :, :, 5:] == 0)  # padded keys get no attention
    np.testing.assert_allclose(probs.sum(-1), 1, rtol=1e-12)
    assert ours.intermediate_grad("transformer.h.1.attn.scores").shape == (3, 3, 7, 7)
    assert ours.intermediate("transformer.ln_f.xhat").shape == (3, 7, 12)


def test_right_padding_leaves_the_real_tokens_alone(float64):
    """Positions are 0..T-1 for every row (as Hugging Face 5.x without position_ids), so the
    real tokens of a right-padded row get the logits they get alone."""
    model = GPT2LMHeadModel.from_config(hf_config().to_dict())
    model.eval()
    ids, mask = padded_ids(VOCAB, 3, 7, seed=1)
    batch = model.forward(ids, mask)
    alone = model.forward(ids[2:, :3])
    np.testing.assert_allclose(batch[2, :3], alone[0], rtol=1e-12, atol=1e-12)


# -- structure and loading ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["model", "lm"])
def test_state_dict_keys_and_shapes_are_hugging_faces(kind):
    cfg = hf_config(**CONFIGS["e20_h5_l3_gelu_inner28_eps1e-3"])
    hf = (transformers.GPT2Model if kind == "model" else transformers.GPT2LMHeadModel)(cfg)
    ours = (GPT2Model if kind == "model" else GPT2LMHeadModel).from_config(cfg.to_dict())
    want = {k: tuple(v.shape) for k, v in hf.state_dict().items()}
    got = {k: v.shape for k, v in ours.state_dict().items()}
    assert list(got) == list(want)
    assert got == want
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in hf.named_parameters()]
    if kind == "lm":
        assert got["transformer.h.0.attn.c_attn.weight"] == (20, 60)  # Conv1D: (in, out)
        assert got["transformer.h.2.mlp.c_fc.weight"] == (20, 28)


def test_lm_head_is_tied_to_wte_and_untied_ones_are_refused():
    cfg = hf_config()
    lm = GPT2LMHeadModel.from_config(cfg.to_dict())
    assert lm.lm_head.weight is lm.transformer.wte.weight
    assert lm.lm_head.bias is None
    state = hf_state(transformers.GPT2LMHeadModel(cfg))
    lm.load_state_dict(state)
    wte = state["transformer.wte.weight"]
    np.testing.assert_array_equal(lm.state_dict()["lm_head.weight"], wte)
    state["lm_head.weight"] = state["lm_head.weight"] + 1
    with pytest.raises(ValueError, match=r"transformer\.wte\.weight and lm_head\.weight.*tied"):
        lm.load_state_dict(state)
    untied = GPT2LMHeadModel.from_config(hf_config(tie_word_embeddings=False).to_dict())
    assert untied.lm_head.weight is not untied.transformer.wte.weight
    untied.load_state_dict(state)


def test_old_checkpoint_causal_buffers_load_and_are_checked():
    cfg = hf_config(n_layer=1)
    state = hf_state(transformers.GPT2LMHeadModel(cfg))
    tri = np.tril(np.ones((POSITIONS, POSITIONS), dtype=bool))[None, None]
    state["transformer.h.0.attn.bias"] = tri  # as transformers < 4.3x saved them
    state["transformer.h.0.attn.masked_bias"] = np.array(-1e4, dtype=np.float32)
    lm = GPT2LMHeadModel.from_config(cfg.to_dict())
    lm.load_state_dict(state)
    base = GPT2Model.from_config(cfg.to_dict())
    base.load_state_dict(
        {k.removeprefix("transformer."): v for k, v in state.items() if k != "lm_head.weight"}
    )
    state["transformer.h.0.attn.bias"] = np.ones_like(tri)
    with pytest.raises(ValueError, match=r"h\.0\.attn\.bias.*lower-triangular"):
        lm.load_state_dict(state)


def test_initialisation_is_hugging_faces():
    nanotf.manual_seed(0)
    cfg = hf_config(n_embd=64, n_head=4, n_layer=2, initializer_range=0.05, n_positions=64)
    sd = GPT2LMHeadModel.from_config(cfg.to_dict()).state_dict()
    assert abs(sd["transformer.wte.weight"].std() - 0.05) < 0.005
    assert abs(sd["transformer.h.0.attn.c_attn.weight"].std() - 0.05) < 0.005
    assert abs(sd["transformer.h.1.mlp.c_proj.weight"].std() - 0.05 / 2) < 0.003  # 1/√(2·2)
    for name, value in sd.items():
        if ".ln_" in name and name.endswith("weight"):
            assert np.all(value == 1), name
        elif name.endswith(".bias"):
            assert np.all(value == 0), name


# -- finite differences, dropout, the CuPy stand-in -----------------------------------------------

TINY = dict(
    vocab_size=11, n_positions=6, n_embd=6, n_head=2, n_layer=2, n_inner=10,
    resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, initializer_range=0.5,
)


def tiny_inputs():
    return padded_ids(11, 3, 5, seed=6)


@pytest.mark.parametrize("cls", [GPT2LMHeadModel, GPT2Model])
def test_whole_model_gradcheck(cls, float64):
    nanotf.manual_seed(0)
    act = "gelu" if cls is GPT2Model else "gelu_new"
    model = cls.from_config(hf_config(**TINY, activation_function=act).to_dict())
    model.eval()
    errors = gradcheck_module(model, *tiny_inputs(), max_per_tensor=4)
    assert len(errors) == len(list(model.named_parameters()))
    assert max(errors.values()) <= GRADCHECK_RTOL, errors


def test_gradcheck_in_training_mode_uses_the_forward_dropout_masks(float64):
    nanotf.manual_seed(2)
    cfg = hf_config(**{**TINY, "resid_pdrop": 0.2, "embd_pdrop": 0.2, "attn_pdrop": 0.2})
    model = GPT2LMHeadModel.from_config(cfg.to_dict())
    model.train()
    drops = [m for _, m in model.named_modules() if isinstance(m, Dropout)]
    assert len(drops) == 1 + 2 * 2  # drop, and per block attn.resid_dropout and mlp.dropout
    errors = gradcheck_module(DropoutReplay(model, 7), *tiny_inputs(), max_per_tensor=3)
    assert max(errors.values()) <= GRADCHECK_RTOL, errors
    ids, mask = tiny_inputs()
    assert not np.allclose(model.forward(ids, mask), model.forward(ids, mask))
    model.eval()
    np.testing.assert_array_equal(model.forward(ids, mask), model.forward(ids, mask))


def test_runs_unchanged_on_the_cupy_stand_in():
    """No silent NumPy conversion anywhere (as CuPy would refuse), bit-identical results."""
    model = GPT2LMHeadModel.from_config(hf_config(**CONFIGS["e12_h3_l2_gelu_new"]).to_dict())
    model.eval()
    ids, mask = padded_ids(VOCAB, 3, 7, seed=1)
    shape = (*ids.shape, model.config.vocab_size)
    dout = np.random.default_rng(8).standard_normal(shape).astype(np.float32)
    assert_model_same_on_strict(model, [ids, mask], [dout])


# -- bad input ----------------------------------------------------------------------------------


def test_config_errors():
    good = hf_config().to_dict()
    with pytest.raises(ValueError, match="activation_function='swish'"):
        GPT2LMHeadModel.from_config({**good, "activation_function": "swish"})
    with pytest.raises(ValueError, match="not divisible"):
        GPT2Model.from_config({**good, "n_head": 5})
    with pytest.raises(ValueError, match="add_cross_attention"):
        GPT2Model.from_config({**good, "add_cross_attention": True})
    with pytest.raises(ValueError, match="attn_pdrop"):
        GPT2Model.from_config({**good, "attn_pdrop": 1.5})
    with pytest.raises(ValueError, match="n_inner"):
        GPT2Model.from_config({**good, "n_inner": 0})
    missing = dict(good)
    del missing["n_positions"]
    with pytest.raises(KeyError, match="n_positions"):
        GPT2Model.from_config(missing)


def test_input_errors():
    model = GPT2LMHeadModel.from_config(hf_config().to_dict())
    ids, mask = padded_ids(VOCAB, 3, 7, seed=1)
    with pytest.raises(ValueError, match=r"17 is longer than the position table.*n_positions=16"):
        model.forward(np.ones((2, 17), dtype=np.int64))
    with pytest.raises(IndexError, match=r"input_ids.*\[0, 37\)"):
        model.forward(np.where(ids == ids.max(), VOCAB, ids))
    with pytest.raises(IndexError, match=r"input_ids.*-1"):
        model.forward(ids - 1)
    with pytest.raises(ValueError, match=r"attention_mask.*\(3, 7\).*\(3, 6\)"):
        model.forward(ids, mask[:, :6])
    with pytest.raises(ValueError, match="batch, length"):
        model.forward(ids[0])
    with pytest.raises(TypeError, match="input_ids"):
        model.forward(ids.astype(np.float32))
    with pytest.raises(ValueError, match="at least one token"):
        model.forward(ids[:, :0])

