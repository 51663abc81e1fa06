"""Generation for GPT-2 (``nanotf.generation.generate`` / ``GPT2LMHeadModel.generate``) against
Hugging Face: greedy tokens exactly as ``transformers.GPT2LMHeadModel.generate(do_sample=False)``
(float32 and float64, with and without an EOS token), the filters exactly as Hugging Face's
``TopKLogitsWarper`` / ``TopPLogitsWarper``, sampling reproducible from the seed, and one clear
error for each bad input."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest
import torch
import transformers
from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

import nanotf
from nanotf.functional.sampling import next_token, sample, top_k_filter, top_p_filter
from nanotf.generation import generate
from nanotf.models import GPT2LMHeadModel
from tests.conftest import hf_pair

VOCAB, POSITIONS = 37, 16

CONFIGS = {
    "e12_h3_l2_gelu_new": dict(n_embd=12, n_head=3, n_layer=2),
    "e20_h5_l3_gelu_inner28": dict(
        n_embd=20, n_head=5, n_layer=3, n_inner=28, activation_function="gelu"
    ),
}


def hf_config(**overrides) -> transformers.GPT2Config:
    kw = dict(
        vocab_size=VOCAB, n_positions=POSITIONS, n_embd=12, n_layer=2, n_head=3,
        activation_function="gelu_new", initializer_range=0.2, bos_token_id=None,
        eos_token_id=None, pad_token_id=None, attn_implementation="eager",
    )
    return transformers.GPT2Config(**{**kw, **overrides})


def hf_greedy(hf, ids: np.ndarray, new: int, eos=None, pad=None) -> np.ndarray:
    config = transformers.GenerationConfig(
        do_sample=False, max_new_tokens=new, eos_token_id=eos, pad_token_id=pad,
        bos_token_id=None,
    )
    t = torch.from_numpy(ids)
    with torch.no_grad():
        out = hf.generate(t, attention_mask=torch.ones_like(t), generation_config=config)
    return out.numpy()


@pytest.fixture(scope="module")
def pairs():
    out = {}
    for name, kw in CONFIGS.items():
        for dtype in (np.float32, np.float64):
            nanotf.set_default_dtype(dtype)
            try:
                out[name, dtype] = hf_pair(transformers.GPT2LMHeadModel, GPT2LMHeadModel,
                                           hf_config(**kw), dtype)
            finally:
                nanotf.set_default_dtype("float32")
    return out


def prompts(b: int = 3, t: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, VOCAB, size=(b, t)).astype(np.int64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_greedy_matches_hugging_face(pairs, name, dtype):
    hf, ours = pairs[name, dtype]
    ids = prompts()
    want = hf_greedy(hf, ids, 9)
    got = generate(ours, ids, 9)
    assert got.shape == (3, 4 + 9) and got.dtype == np.int64
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got[:, :4], ids)  # the prompt comes first
    np.testing.assert_array_equal(ours.generate(ids, 9), want)  # the method is the same call
    assert not ours.training


@pytest.mark.parametrize("pad", [None, 5], ids=["pad_none", "pad5"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_greedy_with_eos_matches_hugging_face(pairs, dtype, pad):
    hf, ours = pairs["e12_h3_l2_gelu_new", dtype]
    ids = prompts(4, 3, seed=1)
    free = generate(ours, ids, 12)
    # EOS: a token the greedy run produces in some row but not first in every row, so that the
    # rows finish at different steps (some maybe never)
    new = free[:, 3:]
    candidates = [int(v) for v in np.unique(new)]
    first = {v: [int(np.argmax(r == v)) if (r == v).any() else 99 for r in new]
             for v in candidates}
    eos = max(candidates, key=lambda v: (len(set(first[v])), -min(first[v])))
    want = hf_greedy(hf, ids, 12, eos=eos, pad=pad)
    got = generate(ours, ids, 12, eos_token_id=eos, pad_token_id=pad)
    np.testing.assert_array_equal(got, want)
    fill = eos if pad is None else pad
    for row in got[:, 3:]:  # after the first EOS, only the fill token
        if (row == eos).any():
            k = int(np.argmax(row == eos))
            assert (row[k + 1 :] == fill).all()
    # only the rows that finish: the loop stops as soon as the last of them is done, before
    # max_new_tokens, at the step where the last row produced EOS (as Hugging Face)
    done = ids[(new == eos).any(axis=1)]
    assert len(done) >= 2
    got = generate(ours, done, 12, eos_token_id=eos, pad_token_id=pad)
    np.testing.assert_array_equal(got, hf_greedy(hf, done, 12, eos=eos, pad=pad))
    assert got.shape[1] < 3 + 12
    assert (got[:, -1] == eos).any() and ((got[:, 3:] == eos).any(axis=1)).all()


def test_eos_stops_when_every_row_is_done(pairs):
    hf, ours = pairs["e12_h3_l2_gelu_new", np.float64]
    ids = prompts(1, 3, seed=2)
    first_new = int(generate(ours, ids, 1)[0, -1])
    got = generate(ours, ids, 10, eos_token_id=first_new)
    assert got.shape == (1, 4)  # one step: the only row produced EOS at once
    np.testing.assert_array_equal(got, hf_greedy(hf, ids, 10, eos=first_new))


@pytest.mark.parametrize("k", [1, 3, 10, 36, 37, 50])
def test_top_k_filter_matches_hugging_face(k):
    logits = np.random.default_rng(k).standard_normal((4, VOCAB)) * 3
    logits[0, :5] = logits[0, 5]  # ties with the k-th value are kept, as Hugging Face does
    want = TopKLogitsWarper(top_k=k)(None, torch.from_numpy(logits.copy())).numpy()
    got = top_k_filter(logits, k)
    np.testing.assert_array_equal(got, want)
    assert got.dtype == logits.dtype


@pytest.mark.parametrize("p", [1e-6, 0.1, 0.5, 0.9, 0.999, 1.0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_top_p_filter_matches_hugging_face(p, dtype):
    logits = (np.random.default_rng(7).standard_normal((5, VOCAB)) * 2).astype(dtype)
    want = TopPLogitsWarper(top_p=p)(None, torch.from_numpy(logits.copy())).numpy()
    got = top_p_filter(logits, p)
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    np.testing.assert_array_equal(got, want)
    assert np.isfinite(got).sum(axis=1).min() >= 1  # the top token always stays


def test_sample_draws_only_allowed_tokens_with_the_right_frequencies():
    probs = np.array([[0.0, 0.2, 0.0, 0.8], [1.0, 0.0, 0.0, 0.0]])
    rng = np.random.default_rng(0)
    draws = np.stack([sample(probs, rng) for _ in range(4000)])  # (N, 2)
    assert set(np.unique(draws[:, 0])) <= {1, 3} and (draws[:, 1] == 0).all()
    assert abs((draws[:, 0] == 3).mean() - 0.8) < 0.03
    a = sample(probs, np.random.default_rng(5))
    np.testing.assert_array_equal(a, sample(probs, np.random.default_rng(5)))


def test_temperature_divides_the_logits():
    logits = np.random.default_rng(3).standard_normal((2, VOCAB))
    for t in (0.5, 2.0):
        a = next_token(logits, True, t, rng=np.random.default_rng(9))
        b = next_token(logits / t, True, 1.0, rng=np.random.default_rng(9))
        np.testing.assert_array_equal(a, b)


def test_sampling_is_reproducible_and_top_k_1_is_greedy(pairs):
    _, ours = pairs["e20_h5_l3_gelu_inner28", np.float64]
    ids = prompts(3, 4, seed=4)
    kw = dict(do_sample=True, temperature=1.5, top_k=20, top_p=0.95)
    a = generate(ours, ids, 10, seed=1, **kw)
    np.testing.assert_array_equal(a, generate(ours, ids, 10, seed=1, **kw))
    assert not np.array_equal(a, generate(ours, ids, 10, seed=2, **kw))
    np.testing.assert_array_equal(a[:, :4], ids)
    greedy = generate(ours, ids, 10)
    for seed in (0, 1):
        top1 = generate(ours, ids, 10, do_sample=True, top_k=1, seed=seed, temperature=0.7)
        np.testing.assert_array_equal(top1, greedy)
    # a tiny top_p keeps only the most likely token: greedy again
    np.testing.assert_array_equal(generate(ours, ids, 10, do_sample=True, top_p=1e-9, seed=3),
                                  greedy)


def test_training_mode_is_restored_and_input_untouched(pairs):
    _, ours = pairs["e12_h3_l2_gelu_new", np.float64]
    ids = prompts()
    keep = ids.copy()
    ours.train()
    try:
        out = generate(ours, ids, 3)
        assert ours.training
    finally:
        ours.eval()
    np.testing.assert_array_equal(ids, keep)
    np.testing.assert_array_equal(out, generate(ours, ids, 3))  # dropout was off while generating


def test_zero_new_tokens_returns_the_prompt(pairs):
    _, ours = pairs["e12_h3_l2_gelu_new", np.float32]
    ids = prompts().astype(np.int32)
    out = generate(ours, ids, 0)
    np.testing.assert_array_equal(out, ids)
    assert out.shape == ids.shape and out is not ids
    # the whole position table may be filled
    assert generate(ours, prompts(2, 10), POSITIONS - 10).shape == (2, POSITIONS)


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        (dict(max_new_tokens=POSITIONS - 3), ValueError, "n_positions=16"),
        (dict(max_new_tokens=-1), ValueError, "max_new_tokens must be at least 0"),
        (dict(max_new_tokens=2.0), TypeError, "max_new_tokens must be an integer"),
        (dict(do_sample=True, temperature=0.0), ValueError, "temperature must be greater than 0"),
        (dict(do_sample=True, temperature=-1.0), ValueError, "temperature must be greater than 0"),
        (dict(top_p=0.0), ValueError, "top_p must be in (0.0, 1.0]"),
        (dict(top_p=1.5), ValueError, "top_p must be in (0.0, 1.0]"),
        (dict(top_k=0), ValueError, "top_k must be at least 1"),
        (dict(top_k=2.5), TypeError, "top_k must be an integer"),
        (dict(eos_token_id=VOCAB), ValueError, "eos_token_id must be in [0, 37)"),
        (dict(seed=-1), ValueError, "seed must be at least 0"),
        (dict(do_sample=1), TypeError, "do_sample must be a bool"),
    ],
)
def test_bad_arguments(pairs, kwargs, error, words):
    _, ours = pairs["e12_h3_l2_gelu_new", np.float64]
    kwargs = {"max_new_tokens": 2, **kwargs}
    with pytest.raises(error) as info:
        generate(ours, prompts(), **kwargs)
    assert words in str(info.value)


@pytest.mark.parametrize(
    "ids, error, words",
    [
        (np.array([1, 2, 3]), ValueError, "expected (B, T)"),
        (np.array([[1, VOCAB]]), ValueError, "[0, vocab_size=37)"),
        (np.array([[1, -1]]), ValueError, "[0, vocab_size=37)"),
        (np.array([[1.0, 2.0]]), TypeError, "integer"),
        ([[1, 2]], TypeError, "(B, T)"),
        (np.zeros((2, 0), dtype=np.int64), ValueError, "at least one token"),
        (np.zeros((1, POSITIONS + 1), dtype=np.int64), ValueError, "n_positions=16"),
    ],
)
def test_bad_prompts(pairs, ids, error, words):
    _, ours = pairs["e12_h3_l2_gelu_new", np.float64]
    with pytest.raises(error) as info:
        generate(ours, ids, 1)
    assert words in str(info.value)


def test_not_a_gpt2_model():
    with pytest.raises(TypeError, match="GPT2LMHeadModel"):
        generate(object(), prompts(), 1)
