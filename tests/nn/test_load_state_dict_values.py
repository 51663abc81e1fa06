"""``Module.load_state_dict`` reads arrays only: a torch tensor, a Python list, a number, None, an
array of another array module, or a mapping that is not one, is refused with a TypeError naming
the key (and how to convert it); a complex or integer array with a ValueError naming its dtype.
A refused load writes nothing."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import transformers

import nanotf
from nanotf.models import BertForMaskedLM, BertModel, DistilBertModel
from nanotf.nn import Embedding, LayerNorm, Linear, Module
from nanotf.testing import strict


class Small(Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = Embedding(5, 3)
        self.norm = LayerNorm(3)
        self.head = Linear(3, 4)


def good_state(model: Module) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    return {k: rng.standard_normal(v.shape).astype(v.dtype) for k, v in model.state_dict().items()}


def bits(model: Module) -> dict[str, bytes]:
    return {name: a.tobytes() for name, a in model.state_dict().items()}


@pytest.mark.parametrize(
    "value, error, message",
    [
        (
            lambda a: torch.from_numpy(a),
            TypeError,
            r"head\.weight must be an array, got a torch\.Tensor of shape \(4, 3\) "
            r"\(convert it with \.detach\(\)\.cpu\(\)\.numpy\(\)",
        ),
        (lambda a: a.tolist(), TypeError, r"head\.weight must be an array, got a Python list"),
        (lambda a: tuple(a.tolist()), TypeError, r"head\.weight .* got a Python tuple"),
        (lambda a: None, TypeError, r"head\.weight must be an array, got a NoneType"),
        (lambda a: "weights", TypeError, r"head\.weight must be an array, got a str"),
        (
            lambda a: strict.asarray(a),
            TypeError,
            r"head\.weight must be a numpy\.ndarray like the parameters, got a "
            r"nanotf\.testing\.strict\.StrictArray; move it with",
        ),
        (
            lambda a: a.astype(np.complex64),
            ValueError,
            r"head\.weight: expected dtype float32, got complex64",
        ),
        (
            lambda a: a.astype(np.int64),
            ValueError,
            r"head\.weight: expected dtype float32, got int64",
        ),
        (lambda a: a > 0, ValueError, r"head\.weight: expected dtype float32, got bool"),
        (
            lambda a: a.astype(object),
            ValueError,
            r"head\.weight: expected dtype float32, got object",
        ),
        (lambda a: 0.5, ValueError, r"head\.weight: expected shape \(4, 3\), got \(\)"),
        (lambda a: a[None], ValueError, r"head\.weight: expected shape \(4, 3\), got \(1, 4, 3\)"),
    ],
    ids=[
        "torch",
        "list",
        "tuple",
        "none",
        "str",
        "device",
        "complex",
        "int",
        "bool",
        "object",
        "number",
        "shape",
    ],
)
def test_values_that_are_not_the_parameters_arrays_are_refused(value, error, message):
    nanotf.manual_seed(0)
    model = Small()
    state = good_state(model)
    state["head.weight"] = value(state["head.weight"])
    before = bits(model)
    with pytest.raises(error, match=r"load_state_dict into Small: .*" + message):
        model.load_state_dict(state)
    assert bits(model) == before


@pytest.mark.parametrize("state", [[("head.weight", np.zeros((4, 3)))], "state", None, 3])
def test_a_state_that_is_not_a_mapping_is_a_type_error(state):
    with pytest.raises(TypeError, match=r"load_state_dict into Small: expected a dict of name"):
        Small().load_state_dict(state)


def test_every_bad_key_is_named_at_once():
    model = Small()
    state = good_state(model)
    state["embed.weight"] = torch.zeros(5, 3)
    state["norm.bias"] = [0.0, 0.0, 0.0]
    with pytest.raises(TypeError) as err:
        model.load_state_dict(state)
    assert "embed.weight must be an array, got a torch.Tensor" in str(err.value)
    assert "norm.bias must be an array, got a Python list" in str(err.value)


def test_device_model_reads_host_and_device_arrays():
    """On the (stand-in) device, host arrays are copied over, device arrays taken as they are;
    the parameters stay the same arrays (optimizers keep their references)."""
    model = Small()
    for p in model.parameters():
        p.data, p.grad = strict.asarray(p.data), strict.asarray(p.grad)
    live = [p.data for p in model.parameters()]
    host = good_state(model)
    model.load_state_dict(host)
    model.load_state_dict({k: strict.asarray(v) for k, v in host.items()})
    for p, a, (name, v) in zip(model.parameters(), live, host.items(), strict=True):
        assert p.data is a
        np.testing.assert_array_equal(p.data.get(), v, err_msg=name)


BERT_CFG = dict(
    vocab_size=20,
    hidden_size=8,
    num_hidden_layers=1,
    num_attention_heads=2,
    intermediate_size=16,
    max_position_embeddings=8,
)


@pytest.mark.parametrize("kind", ["bert", "mlm", "distilbert"])
def test_a_hugging_face_state_dict_of_tensors_names_the_fix(kind):
    """The common slip: ``hf_model.state_dict()`` passed without ``.numpy()``."""
    if kind == "distilbert":
        cfg = transformers.DistilBertConfig(
            vocab_size=20, dim=8, n_layers=1, n_heads=2, hidden_dim=16, max_position_embeddings=8
        )
        hf: Any = transformers.DistilBertModel(cfg)
        ours: Module = DistilBertModel.from_config(cfg.to_dict())
    else:
        cfg = transformers.BertConfig(**BERT_CFG)
        hf_cls, our_cls = (
            (transformers.BertModel, BertModel)
            if kind == "bert"
            else (transformers.BertForMaskedLM, BertForMaskedLM)
        )
        hf, ours = hf_cls(cfg), our_cls.from_config(cfg.to_dict())
    before = bits(ours)
    with pytest.raises(TypeError, match=r"got a torch\.Tensor .*\.detach\(\)\.cpu\(\)\.numpy\(\)"):
        ours.load_state_dict(hf.state_dict())
    assert bits(ours) == before
    ours.load_state_dict({k: v.detach().numpy() for k, v in hf.state_dict().items()})
