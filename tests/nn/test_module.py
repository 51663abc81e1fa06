"""The Module API: parameters by name (tied ones once), state dicts (tied ones under every
name), strict in-place loading, train/eval, zero_grad, and the saved intermediates."""

from __future__ import annotations

import numpy as np
import pytest

import nanotf
from nanotf.nn import (
    Dropout,
    Embedding,
    EncoderLayer,
    LayerNorm,
    Linear,
    Module,
    ModuleList,
    Parameter,
)


class TiedLM(Module):
    """embed -> blocks -> norm -> head, with the head's weight tied to the embedding table."""

    def __init__(self, vocab: int = 5, width: int = 3) -> None:
        super().__init__()
        self.embed = Embedding(vocab, width)
        self.blocks = ModuleList([Linear(width, width), Dropout(0.5), Linear(width, width)])
        self.norm = LayerNorm(width)
        self.head = Linear(width, vocab)
        self.head.weight = self.embed.weight

    def forward(self, ids):
        x = self.embed.forward(ids)
        for block in self.blocks:
            x = block.forward(x)
        return self.head.forward(self.norm.forward(x))

    def backward(self, dout):
        d = self.norm.backward(self.head.backward(dout))
        for block in reversed(self.blocks):
            d = block.backward(d)
        self.embed.backward(d)


NAMES = [
    "embed.weight",
    "blocks.0.weight",
    "blocks.0.bias",
    "blocks.2.weight",
    "blocks.2.bias",
    "norm.weight",
    "norm.bias",
    "head.bias",
]


@pytest.fixture
def model() -> TiedLM:
    nanotf.manual_seed(0)
    return TiedLM()


def fresh_state(model: Module, seed: int = 1) -> dict[str, np.ndarray]:
    """A full state dict of new values (tied names share one array)."""
    g = np.random.default_rng(seed)
    new: dict[int, np.ndarray] = {}
    state = {}
    for name, p in model._named_parameters_all():
        if id(p) not in new:
            new[id(p)] = g.standard_normal(p.shape).astype(p.dtype)
        state[name] = new[id(p)]
    return state


# -- names -----------------------------------------------------------------------------------------


def test_named_parameters_lists_a_tied_parameter_once(model):
    names = [n for n, _ in model.named_parameters()]
    assert names == NAMES
    assert len(model.parameters()) == len(NAMES)
    assert model.num_parameters() == 5 * 3 + 2 * (9 + 3) + 3 + 3 + 5
    assert model.head.weight is model.embed.weight


def test_state_dict_has_a_tied_parameter_under_both_names(model):
    state = model.state_dict()
    assert set(state) == {*NAMES, "head.weight"}
    assert state["head.weight"] is state["embed.weight"] is model.embed.weight.data  # live
    assert [n for n, _ in model.named_modules()][:4] == ["", "embed", "blocks", "blocks.0"]


def test_reassigning_an_attribute_unregisters_it(model):
    model.norm = None
    assert "norm.weight" not in model.state_dict() and model.norm is None
    model.blocks = Linear(3, 3)  # a module replaced by another
    assert "blocks.0.weight" not in model.state_dict() and "blocks.weight" in model.state_dict()


def test_modulelist_indexing(model):
    assert len(model.blocks) == 3
    assert model.blocks[-1] is model.blocks[2] and isinstance(model.blocks[1], Dropout)
    assert [type(m).__name__ for m in model.blocks] == ["Linear", "Dropout", "Linear"]
    assert list(reversed(model.blocks)) == list(model.blocks)[::-1]  # a backward's order
    assert "(blocks): ModuleList" in repr(model) and "(0): Linear(3, 3, bias=True)" in repr(model)


def test_setattr_before_init_and_abstract_methods():
    class Forgot(Module):
        def __init__(self):
            self.w = Linear(2, 2)

    with pytest.raises(RuntimeError, match=r"call Module.__init__\(\) in Forgot"):
        Forgot()
    with pytest.raises(NotImplementedError, match="Module has no forward"):
        Module().forward(1)
    with pytest.raises(NotImplementedError, match="Module has no backward"):
        Module().backward(1)
    with pytest.raises(TypeError, match=r"floating-point array, got dtype int64"):
        Parameter(np.arange(3))


# -- load_state_dict -------------------------------------------------------------------------------


def test_load_state_dict_copies_in_place(model):
    before = {n: a for n, a in model.state_dict().items()}
    state = fresh_state(model)
    result = model.load_state_dict(state)
    assert result == {"missing_keys": [], "unexpected_keys": []}
    for name, array in model.state_dict().items():
        assert array is before[name], f"{name} is a new array: optimizers would lose it"
        np.testing.assert_array_equal(array, state[name])
        assert array is not state[name]  # copied, not aliased to the caller's array


def test_load_state_dict_round_trip_between_models(model):
    nanotf.manual_seed(7)
    other = TiedLM()
    other.load_state_dict(model.state_dict())
    ids = np.array([[1, 2, 4]])
    model.eval(), other.eval()
    np.testing.assert_array_equal(other.forward(ids), model.forward(ids))


def unchanged(model: Module, snapshot: dict[str, np.ndarray]) -> bool:
    return all(np.array_equal(a, snapshot[n]) for n, a in model.state_dict().items())


def test_load_state_dict_missing_and_unexpected_keys(model):
    snapshot = {n: a.copy() for n, a in model.state_dict().items()}
    state = fresh_state(model)
    del state["norm.bias"], state["head.weight"]
    state["norm.gamma"] = np.ones(3, dtype=np.float32)
    with pytest.raises(KeyError) as err:
        model.load_state_dict(state)
    msg = str(err.value)
    assert "missing keys: norm.bias, head.weight" in msg
    assert "unexpected keys: norm.gamma" in msg
    assert unchanged(model, snapshot)  # nothing written

    result = model.load_state_dict(state, strict=False)
    assert result == {
        "missing_keys": ["norm.bias", "head.weight"],
        "unexpected_keys": ["norm.gamma"],
    }
    np.testing.assert_array_equal(model.norm.weight.data, state["norm.weight"])
    np.testing.assert_array_equal(model.norm.bias.data, snapshot["norm.bias"])
    # the tied table was written through its other name
    np.testing.assert_array_equal(model.head.weight.data, state["embed.weight"])


def test_load_state_dict_only_missing_or_only_unexpected(model):
    state = fresh_state(model)
    with pytest.raises(KeyError, match=r"missing keys: blocks.0.bias\b") as err:
        model.load_state_dict({k: v for k, v in state.items() if k != "blocks.0.bias"})
    assert "unexpected" not in str(err.value)
    with pytest.raises(KeyError, match=r"unexpected keys: extra\b") as err:
        model.load_state_dict({**state, "extra": np.zeros(1, np.float32)})
    assert "missing" not in str(err.value)


def test_load_state_dict_wrong_shape_and_dtype(model):
    snapshot = {n: a.copy() for n, a in model.state_dict().items()}
    state = fresh_state(model)
    state["blocks.2.weight"] = np.zeros((3, 4), dtype=np.float32)
    state["norm.bias"] = np.zeros(3, dtype=np.float64)
    with pytest.raises(ValueError) as err:
        model.load_state_dict(state)
    msg = str(err.value)
    assert "blocks.2.weight: expected shape (3, 3), got (3, 4)" in msg
    assert "norm.bias: expected dtype float32, got float64" in msg
    assert unchanged(model, snapshot)  # the good keys were not written either
    with pytest.raises(ValueError, match=r"blocks.0.bias: expected shape \(3,\), got \(\)"):
        model.load_state_dict({**fresh_state(model), "blocks.0.bias": 0.5}, strict=False)


# -- train / eval / zero_grad ----------------------------------------------------------------------


def test_train_and_eval_propagate(model):
    assert all(m.training for _, m in model.named_modules())
    assert model.eval() is model
    assert not any(m.training for _, m in model.named_modules())
    ids = np.array([[0, 1, 2, 3]])
    np.testing.assert_array_equal(model.forward(ids), model.forward(ids))  # no dropout
    assert model.train() is model
    assert all(m.training for _, m in model.named_modules())
    assert not np.array_equal(model.forward(ids), model.forward(ids))  # dropout 0.5 is on
    model.blocks.train(False)
    assert model.training and not model.blocks[1].training


def test_zero_grad_in_place_and_tied_gradients_add(model):
    model.eval()
    ids = np.array([[0, 1, 2, 1]])
    model.forward(ids)
    model.backward(np.ones((1, 4, 5), dtype=np.float32))
    grads = {n: p.grad for n, p in model.named_parameters()}
    # the tied table: the head's gradient (hᵀ dout) plus the lookups' (rows 0, 1, 2)
    h = model.intermediate("norm.xhat") * model.norm.weight.data + model.norm.bias.data
    head_part = np.ones((4, 5), np.float32).T @ h.reshape(4, 3)  # (V, C)
    np.testing.assert_allclose(model.embed.weight.grad[3:], head_part[3:], rtol=1e-6)
    assert not np.allclose(model.embed.weight.grad[:3], head_part[:3])
    assert any(np.abs(g).max() > 0 for g in grads.values())
    model.zero_grad()
    for name, p in model.named_parameters():
        assert p.grad is grads[name], f"{name}: zero_grad must reset in place"
        assert (p.grad == 0).all()


# -- intermediates -------------------------------------------------------------------------------


@pytest.fixture
def layer() -> EncoderLayer:
    nanotf.manual_seed(0)
    return EncoderLayer(8, 2, 16, dropout=0.0)


def test_intermediates_by_dotted_name(layer):
    x = np.random.default_rng(0).standard_normal((2, 3, 8)).astype(np.float32)
    out = layer.forward(x, key_padding_mask=np.array([[1, 1, 1], [1, 1, 0]], dtype=bool))
    names = dict(layer.named_intermediates())
    assert {
        "self_attn.scores",
        "self_attn.probs",
        "norm1.xhat",
        "norm1.rstd",
        "norm2.xhat",
        "ff.pre_activation",
        "ff.hidden",
    } <= set(names)
    assert layer.intermediate("self_attn.probs") is names["self_attn.probs"]
    assert layer.intermediate("self_attn.probs").shape == (2, 2, 3, 3)
    np.testing.assert_allclose(layer.intermediate("self_attn.probs").sum(-1), 1, rtol=1e-6)
    assert (layer.intermediate("self_attn.probs")[1, :, :, 2] == 0).all()  # the padded key
    pre = layer.intermediate("ff.pre_activation")
    np.testing.assert_allclose(layer.intermediate("ff.hidden"), np.maximum(pre, 0))
    xhat = layer.intermediate("norm2.xhat")
    np.testing.assert_allclose(xhat * layer.norm2.weight.data + layer.norm2.bias.data, out)

    dout = np.ones_like(out)
    layer.backward(dout)
    dhidden = layer.intermediate_grad("ff.hidden")
    np.testing.assert_allclose(layer.intermediate_grad("ff.pre_activation"), dhidden * (pre > 0))
    assert layer.intermediate_grad("self_attn.probs").shape == (2, 2, 3, 3)


def test_intermediate_key_errors_are_helpful(layer):
    with pytest.raises(KeyError, match=r"saved nothing \(run a forward first\)"):
        layer.intermediate("norm1.xhat")
    with pytest.raises(KeyError, match=r"has gradients of nothing \(run a backward first\)"):
        layer.intermediate_grad("self_attn.probs")
    with pytest.raises(KeyError, match=r"EncoderLayer has no sub-module 'attn' \(has: self_attn"):
        layer.intermediate("attn.probs")
    with pytest.raises(KeyError, match=r"'self_attn.foo.probs': self_attn has no sub-module 'foo'"):
        layer.intermediate("self_attn.foo.probs")
    layer.forward(np.zeros((1, 2, 8), dtype=np.float32))
    with pytest.raises(KeyError, match=r"'self_attn.prob': MultiHeadAttention saved scores, probs"):
        layer.intermediate("self_attn.prob")
