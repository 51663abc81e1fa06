"""``BertModel.forward_unpadded``, the evaluation path that skips the padding, against the
reference ``forward`` (nanotf's own) and against Hugging Face's ``BertModel``, weights by name.

What must hold: on every real token the state is the reference's; padded positions are zeros;
the pooled output is the reference's. The token-wise steps multiply the same rows by the same
weights in both paths, so the two agree to round-off of the GEMMs blocked over a different
number of rows: the tolerances are the model tests' (normwise relative, float64 1e-10, float32
1e-5); against Hugging Face those of tests/models/test_bert.py (1e-9, 1e-5).
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest
import torch
import transformers
from hypothesis import given, settings
from hypothesis import strategies as st

import nanotf
from nanotf.models import BertModel
from nanotf.testing import strict as strict_mod
from tests.conftest import hf_pair, padded_ids, rel_error, to_strict
from tests.models.test_bert import SMALL as BERT_SMALL

RTOL_SELF = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-10}
RTOL_HF = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-9}

SMALL = {**BERT_SMALL, "attn_implementation": "eager"}  # test_bert's model, eager attention


def model_of(dtype, **overrides) -> tuple[transformers.BertModel, BertModel]:
    return hf_pair(transformers.BertModel, BertModel,
                   transformers.BertConfig(**{**SMALL, **overrides}), dtype)


def inputs(batch: int = 3, length: int = 7, seed: int = 0):
    ids, mask = padded_ids(100, batch, length, seed)  # rows 1 and 2 end in padding
    types = np.zeros_like(ids)
    types[:, length // 2 + 1 :] = 1
    return ids, mask, types


def assert_same_on_real_tokens(got, want, mask, tol) -> None:
    real = mask.astype(bool)
    assert got.shape == want.shape and got.dtype == want.dtype
    assert rel_error(got[real], want[real]) <= tol
    np.testing.assert_array_equal(got[~real], 0.0)  # padded positions are zeros


@pytest.mark.parametrize("act", ["gelu", "gelu_new", "relu"])
@pytest.mark.parametrize("norm_first", [False, True])
def test_equals_forward_on_real_tokens(act, norm_first, model_dtype):
    _, ours = model_of(model_dtype, hidden_act=act)
    if norm_first:
        cfg = transformers.BertConfig(**{**SMALL, "hidden_act": act}).to_dict()
        nanotf.manual_seed(1)
        ours = BertModel.from_config({**cfg, "norm_first": True}).eval()
    ids, mask, types = inputs()
    want = ours.forward(ids, mask, types)
    want_pooled = ours.pooler_output
    got = ours.forward_unpadded(ids, mask, types)
    assert_same_on_real_tokens(got, want, mask, RTOL_SELF[model_dtype])
    assert rel_error(ours.pooler_output, want_pooled) <= RTOL_SELF[model_dtype]


@pytest.mark.parametrize("act", ["gelu", "gelu_new"])
def test_equals_hugging_face_on_real_tokens(act, model_dtype):
    hf, ours = model_of(model_dtype, hidden_act=act)
    ids, mask, types = inputs()
    out = hf(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
             token_type_ids=torch.from_numpy(types))
    want = out.last_hidden_state.detach().numpy()
    got = ours.forward_unpadded(ids, mask, types)
    real = mask.astype(bool)
    assert rel_error(got[real], want[real]) <= RTOL_HF[model_dtype]
    assert rel_error(ours.pooler_output, out.pooler_output.detach().numpy()) <= RTOL_HF[model_dtype]


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_any_padding_pattern(data):
    """Masks of every kind: none padded, left and right padding, holes, a row of padding alone
    (no real token: zeros, where the reference attends uniformly over nothing)."""
    batch = data.draw(st.integers(1, 4), label="batch")
    length = data.draw(st.integers(1, 9), label="length")
    flat = data.draw(st.lists(st.booleans(), min_size=batch * length, max_size=batch * length))
    mask = np.array(flat, dtype=np.int64).reshape(batch, length)
    nanotf.set_default_dtype("float64")
    try:
        nanotf.manual_seed(0)
        ours = BertModel.from_config(transformers.BertConfig(**SMALL).to_dict()).eval()
    finally:
        nanotf.set_default_dtype("float32")
    ids = np.random.default_rng(batch * 10 + length).integers(1, 100, (batch, length))
    want = ours.forward(ids, mask)
    got = ours.forward_unpadded(ids, mask)
    assert_same_on_real_tokens(got, want, mask, RTOL_SELF[np.dtype(np.float64)])


def test_refuses_training_mode_and_a_missing_mask():
    _, ours = model_of(np.float32)
    ids, mask, types = inputs()
    with pytest.raises(ValueError, match="needs the attention_mask"):
        ours.forward_unpadded(ids, None)
    ours.train()
    with pytest.raises(RuntimeError, match=r"evaluation only.*model\.eval\(\)"):
        ours.forward_unpadded(ids, mask, types)
    ours.eval()
    with pytest.raises(ValueError, match="attention_mask"):
        ours.forward_unpadded(ids, mask[:, :-1], types)  # the checks of forward apply


def test_same_bits_on_the_strict_device_stand_in():
    """No host conversion on the way (CuPy would refuse one): the stand-in gives the same bits."""
    _, ours = model_of(np.float32)
    ids, mask, types = inputs()
    want = ours.forward_unpadded(ids, mask, types)
    to_strict(ours)
    got = ours.forward_unpadded(*(strict_mod.asarray(a) for a in (ids, mask, types)))
    np.testing.assert_array_equal(nanotf.to_numpy(got), want)
