"""Tied weights in every model: one Parameter under several state-dict names must be given the
same array (bitwise) under all of them, else ``load_state_dict`` refuses, naming both keys, and
writes nothing. One rule, in ``Module.load_state_dict``, for every model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import nanotf
from nanotf.models import BertForMaskedLM, DistilBertModel, Transformer
from nanotf.nn import Embedding, Linear, Module
from tests.conftest import tiny_bert_config, tiny_distilbert_config

BERT = tiny_bert_config()
DISTILBERT = tiny_distilbert_config()


class TiedHead(Module):
    """The smallest model with a tie: an embedding table that is also the output weight."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = Embedding(6, 4)
        self.head = Linear(4, 6)
        self.head.weight = self.embed.weight


def seq2seq(**kw: Any) -> Callable[[], Module]:
    return lambda: Transformer(
        9, 9, d_model=8, n_heads=2, n_encoder_layers=1, n_decoder_layers=1, d_ff=16, **kw
    )


MODELS: dict[str, Callable[[], Module]] = {
    "module": TiedHead,
    "transformer-shared": seq2seq(share_embeddings=True),
    "transformer-tied-output": seq2seq(tie_output=True),
    "transformer-shared-and-tied": seq2seq(share_embeddings=True, tie_output=True),
    "bert-mlm": lambda: BertForMaskedLM.from_config(BERT),
}
TIES = {  # the groups of names that hold one Parameter, as each model's state dict lists them
    "module": [["embed.weight", "head.weight"]],
    "transformer-shared": [["src_embed.weight", "tgt_embed.weight"]],
    "transformer-tied-output": [["tgt_embed.weight", "out_proj.weight"]],
    "transformer-shared-and-tied": [["src_embed.weight", "tgt_embed.weight", "out_proj.weight"]],
    "bert-mlm": [
        ["bert.embeddings.word_embeddings.weight", "cls.predictions.decoder.weight"],
        ["cls.predictions.bias", "cls.predictions.decoder.bias"],
    ],
}


def tie_groups(model: Module) -> list[list[str]]:
    groups: dict[int, list[str]] = {}
    for name, p in model._named_parameters_all():
        groups.setdefault(id(p), []).append(name)
    return [names for names in groups.values() if len(names) > 1]


def fresh_state(model: Module, seed: int = 1) -> dict[str, np.ndarray]:
    """New values for every parameter; tied names get equal but separate arrays (as a state
    read from a file has: safetensors and npz give one array per name)."""
    rng = np.random.default_rng(seed)
    values: dict[int, np.ndarray] = {}
    state = {}
    for name, p in model._named_parameters_all():
        if id(p) not in values:
            values[id(p)] = rng.standard_normal(p.shape).astype(p.dtype)
        state[name] = values[id(p)].copy()
    return state


def bits(model: Module) -> dict[str, bytes]:
    return {name: a.tobytes() for name, a in model.state_dict().items()}


@pytest.fixture(params=list(MODELS))
def kind(request: pytest.FixtureRequest) -> str:
    nanotf.manual_seed(0)
    return request.param


def test_the_ties_are_the_ones_listed(kind):
    assert tie_groups(MODELS[kind]()) == TIES[kind]


def test_equal_arrays_under_tied_names_load(kind):
    model = MODELS[kind]()
    state = fresh_state(model)
    model.load_state_dict(state)
    for name, array in model.state_dict().items():
        np.testing.assert_array_equal(array, state[name], err_msg=name)


@pytest.mark.parametrize("change", ["value", "negative-zero"])
def test_different_arrays_under_tied_names_are_refused(kind, change):
    """Each later name of each tie group given a different array: a ValueError naming the
    group's first name and this one; no parameter written (not even the untied ones)."""
    model = MODELS[kind]()
    for group in TIES[kind]:
        for other in group[1:]:
            state = fresh_state(model)
            if change == "value":
                state[other].flat[-1] += 1.0
            else:  # 0.0 == -0.0, but the bits differ: which one would the parameter hold?
                for name in group:
                    state[name].flat[0] = 0.0
                state[other].flat[0] = -0.0
            before = bits(model)
            with pytest.raises(ValueError) as err:
                model.load_state_dict(state)
            message = str(err.value)
            assert f"{group[0]} and {other} are one tied parameter" in message, message
            assert bits(model) == before


def test_the_same_nan_is_the_same_array(kind):
    """Bitwise, not ==: a NaN given under both names is the same value (NaN != NaN)."""
    model = MODELS[kind]()
    state = fresh_state(model)
    for group in TIES[kind]:
        for name in group:
            state[name].flat[0] = np.nan
    model.load_state_dict(state)
    assert np.isnan(model.state_dict()[TIES[kind][0][0]].flat[0])


def test_one_name_of_a_tie_is_enough_without_strict(kind):
    model = MODELS[kind]()
    state = fresh_state(model)
    for group in TIES[kind]:
        for other in group[1:]:
            del state[other]
    result = model.load_state_dict(state, strict=False)
    assert sorted(result["missing_keys"]) == sorted(n for g in TIES[kind] for n in g[1:])
    for group in TIES[kind]:
        for name in group:
            np.testing.assert_array_equal(model.state_dict()[name], state[group[0]])


def test_distilbert_has_no_ties():
    """DistilBertModel (no LM head) has no parameter under two names: nothing for the rule to
    check, and its state dict round-trips."""
    model = DistilBertModel.from_config(DISTILBERT)
    assert tie_groups(model) == []
    model.load_state_dict(fresh_state(model))
