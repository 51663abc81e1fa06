"""GPT-2's key/value cache (``forward_cached``, ``generate(use_cache=True)``): the cached logits
equal the full forward's at every position to round-off, the tokens are exactly those of
``use_cache=False`` (greedy, seeded sampling, EOS; float32 and float64), the strict stand-in for
CuPy gives NumPy's tokens bit for bit, and the cached path is inference only."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import nanotf
from nanotf import backend as nanotf_backend
from nanotf.models import GPT2LMHeadModel
from nanotf.models.gpt2 import GPT2Config
from nanotf.nn import KVCache
from nanotf.testing import strict as strict_mod

from .conftest import to_strict

VOCAB, POSITIONS = 41, 40
DTYPES = [np.float32, np.float64]
TOL = {np.float32: 1e-5, np.float64: 1e-12}


def make_model(dtype: Any, n_layer: int = 3, seed: int = 0, **kw: Any) -> GPT2LMHeadModel:
    nanotf.set_default_dtype(dtype)
    try:
        nanotf.manual_seed(seed)
        cfg = dict(
            vocab_size=VOCAB, n_positions=POSITIONS, n_embd=16, n_layer=n_layer, n_head=4,
            n_inner=None, activation_function="gelu_new", resid_pdrop=0.1, embd_pdrop=0.1,
            attn_pdrop=0.1, layer_norm_epsilon=1e-5, initializer_range=0.2,
        )
        model = GPT2LMHeadModel(GPT2Config(**{**cfg, **kw}))
    finally:
        nanotf.set_default_dtype("float32")
    model.eval()
    return model


def prompts(b: int = 4, t: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, VOCAB, size=(b, t)).astype(np.int64)


def rel(a: Any, b: Any) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("chunks", [(5, 1, 1, 1, 1, 1), (1,) * 10, (2, 3, 4, 1), (10,)])
def test_cached_logits_equal_the_full_forward(dtype: Any, chunks: tuple[int, ...]) -> None:
    model = make_model(dtype, scale_attn_by_inverse_layer_idx=True)
    ids = prompts(3, sum(chunks), seed=1)
    full = model.forward(ids)  # (B, T, V)
    caches = model.new_cache()
    got, start = [], 0
    for n in chunks:
        out = model.forward_cached(ids[:, start : start + n], caches)
        assert out.shape == (3, n, VOCAB) and out.dtype == dtype
        got.append(out)
        start += n
    assert all(c.length == start for c in caches)
    got = np.concatenate(got, axis=1)
    for t in range(start):  # every position, each against its own scale
        assert rel(got[:, t], full[:, t]) <= TOL[dtype], t


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_cached_logits_with_a_key_padding_mask(dtype: Any) -> None:
    model = make_model(dtype)
    ids = prompts(3, 7, seed=2)
    mask = np.ones((3, 7), dtype=bool)
    mask[1, 5:] = False  # right padding
    mask[2, 2] = False
    full = model.forward(ids, mask)
    caches = model.new_cache()
    a = model.forward_cached(ids[:, :4], caches, mask[:, :4])
    b = model.forward_cached(ids[:, 4:], caches, mask)
    assert rel(np.concatenate([a, b], axis=1), full) <= TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize(
    "kw",
    [
        dict(),
        dict(do_sample=True, seed=3),
        dict(do_sample=True, temperature=0.7, top_k=8, seed=4),
        dict(do_sample=True, temperature=1.3, top_p=0.9, seed=5),
        dict(do_sample=True, temperature=1.1, top_k=20, top_p=0.8, seed=6),
    ],
    ids=["greedy", "sample", "top_k", "top_p", "top_k_top_p"],
)
def test_generate_tokens_identical_to_no_cache(dtype: Any, kw: dict[str, Any]) -> None:
    model = make_model(dtype)
    ids = prompts(4, 5, seed=3)
    want = model.generate(ids, 30, use_cache=False, **kw)
    got = model.generate(ids, 30, **kw)  # use_cache=True is the default
    assert got.shape == want.shape == (4, 35) and got.dtype == np.int64
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(model.generate(ids, 30, use_cache=True, **kw), want)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("pad", [None, 0])
def test_generate_with_eos_identical_to_no_cache(dtype: Any, pad: int | None) -> None:
    model = make_model(dtype, seed=1)
    ids = prompts(5, 3, seed=4)
    new = model.generate(ids, 25, use_cache=False)[:, 3:]
    # an EOS that the rows produce first at different steps (some rows maybe never)
    cands = [int(v) for v in np.unique(new)]
    first = {v: [int(np.argmax(r == v)) if (r == v).any() else 99 for r in new] for v in cands}
    eos = max(cands, key=lambda v: (len(set(first[v])), -min(first[v])))
    assert len(set(first[eos])) >= 2
    for kw in (dict(), dict(do_sample=True, temperature=0.8, top_k=10, seed=7)):
        want = model.generate(ids, 25, eos_token_id=eos, pad_token_id=pad, use_cache=False, **kw)
        got = model.generate(ids, 25, eos_token_id=eos, pad_token_id=pad, **kw)
        np.testing.assert_array_equal(got, want)
    done = ids[(new == eos).any(axis=1)]  # every row finishes: the loop stops early
    want = model.generate(done, 25, eos_token_id=eos, use_cache=False)
    got = model.generate(done, 25, eos_token_id=eos)
    np.testing.assert_array_equal(got, want)
    assert got.shape[1] < 3 + 25


@pytest.mark.parametrize("kw", [dict(), dict(do_sample=True, top_k=10, seed=2)])
def test_cached_generation_on_the_strict_stand_in(kw: dict[str, Any], monkeypatch: Any) -> None:
    """No silent host conversion in the cached path (CuPy would refuse one); the tokens are
    NumPy's bit for bit."""
    ids = prompts(3, 4, seed=5)
    want = make_model(np.float32).generate(ids, 20, **kw)
    model = make_model(np.float32)
    to_strict(model)
    monkeypatch.setitem(nanotf_backend._state, "module", strict_mod.strict)
    got = model.generate(strict_mod.asarray(ids), 20, **kw)
    assert isinstance(got, strict_mod.StrictArray)
    np.testing.assert_array_equal(got.get(), want)


def test_backward_after_forward_cached_is_refused() -> None:
    model = make_model(np.float64, n_layer=2)
    ids = prompts(2, 4)
    logits = model.forward_cached(ids, model.new_cache())
    before = [p.grad.copy() for p in model.parameters()]
    for mod, dout in (
        (model, np.ones_like(logits)),
        (model.transformer, np.ones((2, 4, 16))),
        (model.transformer.h[0], np.ones((2, 4, 16))),
        (model.transformer.h[1].attn, np.ones((2, 4, 16))),
    ):
        with pytest.raises(RuntimeError, match="backward after forward_cached"):
            mod.backward(dout)
    for p, g in zip(model.parameters(), before, strict=True):  # nothing was added
        np.testing.assert_array_equal(p.grad, g)
    # a forward makes backward possible again
    out = model.forward(ids)
    model.backward(np.ones_like(out))


def test_forward_cached_refusals() -> None:
    model = make_model(np.float64, n_layer=2)
    caches = model.new_cache()
    assert len(caches) == 2 and all(isinstance(c, KVCache) and c.length == 0 for c in caches)
    model.train()
    with pytest.raises(RuntimeError, match="inference only"):
        model.forward_cached(prompts(2, 3), caches)
    model.eval()
    model.forward_cached(prompts(2, POSITIONS - 2), caches)
    with pytest.raises(ValueError, match="n_positions=40"):
        model.forward_cached(prompts(2, 3), caches)  # 38 + 3 > 40
    model.forward_cached(prompts(2, 2), caches)  # exactly fills the table
    with pytest.raises(ValueError, match="rows"):
        model.forward_cached(prompts(3, 1), _filled(model, 2))
    with pytest.raises(TypeError, match="list of 2 KVCache"):
        model.forward_cached(prompts(2, 1), caches[:1])
    with pytest.raises(TypeError, match="use_cache must be a bool"):
        model.generate(prompts(2, 1), 1, use_cache=1)


def _filled(model: GPT2LMHeadModel, b: int) -> list[KVCache]:
    caches = model.new_cache()
    model.forward_cached(prompts(b, 2), caches)
    return caches
