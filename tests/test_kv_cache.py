"""The key/value cache of incremental decoding (nanotf.nn.kv_cache, ``forward_cached``,
``decode_step``) and the cached greedy and beam decoding built on it.

The reference is the recomputing path (``use_cache=False``), which is the training forward
itself. Token ids must be equal; log-probabilities and scores agree to round-off only, because
the matrix products of one new position and of the whole prefix have other shapes (BLAS may sum
in another order): float64 to ~1e-15, float32 to ~1e-6 relative. The random models here are
sharpened so that no two best tokens are that close (a near-tie could otherwise flip).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import nanotf
from nanotf import backend as nanotf_backend
from nanotf.data import EOS_ID, PAD_ID, Vocab
from nanotf.decode import beam_search, greedy_decode, translate
from nanotf.models.transformer import Transformer
from nanotf.nn import DecoderCache, KVCache, MultiHeadAttention
from nanotf.testing import strict as strict_mod

from .conftest import to_strict

V = 10
#: scores of the cached and the recomputed beam search, relative: float64 round-off, and the
#: float32 logits' round-off (the log-softmax itself runs in float64 on the host)
SCORE_RTOL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 2e-5}


def make_model(dtype: Any, norm_first: bool = False, max_len: int = 64, seed: int = 5) -> Any:
    nanotf.set_default_dtype(dtype)
    nanotf.manual_seed(seed)
    model = Transformer(
        V,
        V,
        d_model=16,
        n_heads=2,
        n_encoder_layers=1,
        n_decoder_layers=2,
        d_ff=32,
        dropout=0.1,
        max_len=max_len,
        norm_first=norm_first,
    )
    # sharpen the output layer so the random model makes confident, varied choices (and <eos>)
    model.out_proj.weight.data *= 4.0
    model.out_proj.bias.data[EOS_ID] = 0.5
    return model


def sources(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` sources of 1..6 symbols + <eos>, padded: the batch has padding."""
    g = np.random.default_rng(seed)
    rows = [g.integers(4, V, size=g.integers(1, 7)).tolist() + [EOS_ID] for _ in range(n)]
    width = max(len(r) for r in rows)
    ids = np.full((n, width), PAD_ID, dtype=np.int64)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
    return ids, ids != PAD_ID


DTYPES = [np.float64, np.float32]


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("norm_first", [False, True], ids=["post-LN", "pre-LN"])
def test_decode_step_equals_decode(dtype: Any, norm_first: bool) -> None:
    """One token at a time, or blocks of several, the cached logits are ``decode``'s."""
    model = make_model(dtype, norm_first).eval()
    src, src_mask = sources(0, 5)
    tgt = np.random.default_rng(1).integers(1, V, size=(5, 9))
    tgt[3, 6:] = PAD_ID  # target padding too
    memory = model.encode(src, src_mask)
    want = model.decode(tgt, memory, src_mask, tgt != PAD_ID)
    cache = DecoderCache()
    steps = [model.decode_step(tgt[:, :1], memory, cache, src_mask)]
    for t in range(1, 9):
        steps.append(model.decode_step(tgt[:, t : t + 1], None, cache))
    assert cache.length == 9 and cache.batch == 5
    assert cache.self_attn[0].keys.shape == (5, 2, 9, 8)
    blocks = DecoderCache()
    first = model.decode_step(tgt[:, :4], memory, blocks, src_mask)
    rest = model.decode_step(tgt[:, 4:], None, blocks)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    scale = float(np.abs(want).max())
    for got in (np.concatenate(steps, axis=1), np.concatenate([first, rest], axis=1)):
        assert got.dtype == want.dtype and got.shape == want.shape
        assert float(np.abs(got - want).max()) <= rtol * scale


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("max_len", [1, 5, 40])
def test_cached_greedy_equals_recomputed(dtype: Any, max_len: int) -> None:
    model = make_model(dtype)
    src, src_mask = sources(2, 12)
    want = greedy_decode(model, src, src_mask, max_len, use_cache=False)
    got = greedy_decode(model, src, src_mask, max_len)
    np.testing.assert_array_equal(got, want)
    assert model.training, "the model's mode is restored"
    if max_len == 40:  # rows end at different steps: the cache drops the finished rows
        assert len({int((r != PAD_ID).sum()) for r in want}) > 1


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("width", [1, 3])
@pytest.mark.parametrize("max_len", [1, 40])
@pytest.mark.parametrize("alpha", [0.0, 0.6])
def test_cached_beam_equals_recomputed(dtype: Any, width: int, max_len: int, alpha: float) -> None:
    model = make_model(dtype, norm_first=width == 3)
    src, src_mask = sources(3, 10)
    want, want_scores = beam_search(
        model,
        src,
        src_mask,
        width,
        max_len,
        length_penalty=alpha,
        return_scores=True,
        use_cache=False,
    )
    got, scores = beam_search(
        model, src, src_mask, width, max_len, length_penalty=alpha, return_scores=True
    )
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(scores, want_scores, rtol=SCORE_RTOL[np.dtype(dtype)], atol=0)


def test_translate_same_with_and_without_cache() -> None:
    model = make_model(np.float64, max_len=32)
    vocab = Vocab("abcdef")
    texts = ["abc", "f", "fedcba", "ab"]
    for width in (1, 3):
        assert translate(model, texts, vocab, vocab, beam_width=width) == translate(
            model, texts, vocab, vocab, beam_width=width, use_cache=False
        )


def test_long_greedy_fills_the_position_table() -> None:
    """max_len = the table's length - 1: the cache grows to the last position it may read."""
    model = make_model(np.float64, max_len=48)
    model.out_proj.bias.data[EOS_ID] = -30.0  # never stop early
    src, src_mask = sources(4, 3)
    want = greedy_decode(model, src, src_mask, 47, use_cache=False)
    got = greedy_decode(model, src, src_mask, 47)
    assert got.shape == (3, 47)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("width", [1, 3])
def test_cached_decoding_on_the_strict_stand_in(width: int, monkeypatch: Any) -> None:
    """No silent host conversion in the cached path (CuPy would refuse one); the results are
    NumPy's bit for bit."""
    src, src_mask = sources(5, 6)
    want, want_scores = beam_search(
        make_model(np.float32), src, src_mask, width, 20, return_scores=True
    )
    want_greedy = greedy_decode(make_model(np.float32), src, src_mask, 20)
    model = make_model(np.float32)
    to_strict(model)
    model.pos.table = strict_mod.asarray(model.pos.table)
    monkeypatch.setitem(nanotf_backend._state, "module", strict_mod.strict)
    got, scores = beam_search(model, src, src_mask, width, 20, return_scores=True)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(scores, want_scores)
    np.testing.assert_array_equal(greedy_decode(model, src, src_mask, 20), want_greedy)


# -- the caches ------------------------------------------------------------------------------


def test_kv_cache_append_and_reorder() -> None:
    g = np.random.default_rng(0)
    k1, v1 = g.standard_normal((3, 2, 1, 4)), g.standard_normal((3, 2, 1, 4))
    k2, v2 = g.standard_normal((3, 2, 2, 4)), g.standard_normal((3, 2, 2, 4))
    cache = KVCache()
    assert cache.length == 0 and cache.batch is None
    cache.append(k1, v1)
    keys, values = cache.append(k2, v2)
    assert cache.length == 3 and cache.batch == 3
    np.testing.assert_array_equal(keys, np.concatenate([k1, k2], axis=2))
    np.testing.assert_array_equal(values, np.concatenate([v1, v2], axis=2))
    cache.reorder(np.array([2, 0, 0, 1]))  # a row may be picked twice: beams of one parent
    assert cache.batch == 4
    np.testing.assert_array_equal(cache.keys[1], keys[0])
    np.testing.assert_array_equal(cache.keys[2], keys[0])
    np.testing.assert_array_equal(cache.values[0], values[2])
    np.testing.assert_array_equal(cache.values[3], values[1])
    with pytest.raises(ValueError, match="reorder the cache"):
        cache.append(k1, v1)  # 3 rows, the cache has 4
    with pytest.raises(TypeError, match="integer"):
        cache.reorder(np.array([0.0, 1.0]))
    with pytest.raises(TypeError, match="1-D"):
        cache.reorder([0, 1])
    with pytest.raises(RuntimeError, match="nothing is cached"):
        KVCache().reorder(np.array([0]))
    static = KVCache()
    static.set(k1, v1)
    with pytest.raises(RuntimeError, match="set once"):
        static.append(k1, v1)


def test_decoder_cache_reorder_moves_every_row() -> None:
    model = make_model(np.float64).eval()
    src, src_mask = sources(6, 4)
    memory = model.encode(src, src_mask)
    tgt = np.random.default_rng(2).integers(4, V, size=(4, 3))
    cache = DecoderCache()
    model.decode_step(tgt[:, :2], memory, cache, src_mask)
    rows = np.array([3, 1, 1])
    cache.reorder(rows)
    got = model.decode_step(tgt[rows, 2:], None, cache)
    want = model.decode(tgt[rows], memory[rows], src_mask[rows])[:, 2:]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * float(np.abs(want).max()))
    np.testing.assert_array_equal(cache.memory_mask, src_mask[rows])
    assert cache.batch == 3 and cache.length == 3
    with pytest.raises(ValueError, match="cache holds 3"):
        model.decode_step(tgt[:, :1], None, cache)


def test_cached_path_is_inference_only() -> None:
    nanotf.set_default_dtype(np.float64)
    attn = MultiHeadAttention(8, 2, causal=True)
    x = np.random.default_rng(0).standard_normal((2, 3, 8))
    with pytest.raises(RuntimeError, match=r"inference only.*\.eval\(\)"):
        attn.forward_cached(x, KVCache())
    attn.eval()
    out = attn.forward_cached(x, KVCache())
    np.testing.assert_allclose(out, attn.forward(x), rtol=0, atol=1e-14)
    attn.forward_cached(x, KVCache())
    with pytest.raises(RuntimeError, match="backward after forward_cached"):
        attn.backward(np.ones_like(out))
    attn.forward(x)
    attn.backward(np.ones_like(out))  # a forward makes backward possible again

    model = make_model(np.float64)
    src, src_mask = sources(7, 2)
    tgt = np.full((2, 1), 1)
    with pytest.raises(RuntimeError, match="inference only"):
        model.decode_step(tgt, model.encode(src, src_mask), DecoderCache(), src_mask)
    model.eval()
    logits = model.forward(src, tgt, src_mask)
    model.decode_step(tgt, model.encode(src, src_mask), DecoderCache(), src_mask)
    with pytest.raises(RuntimeError, match="decode_step"):
        model.backward(np.ones_like(logits))
    with pytest.raises(RuntimeError, match="backward after decode_step"):
        model.decoder.layers[0].backward(np.ones((2, 1, 16)))
    with pytest.raises(ValueError, match="first decode_step needs the encoder memory"):
        model.decode_step(tgt, None, DecoderCache())
    with pytest.raises(TypeError, match="DecoderCache"):
        model.decode_step(tgt, model.encode(src, src_mask), None)


def test_decode_step_respects_the_position_table() -> None:
    model = make_model(np.float64, max_len=4).eval()
    src = np.array([[4, 5, EOS_ID], [6, EOS_ID, PAD_ID]])
    src_mask = src != PAD_ID
    cache = DecoderCache()
    model.decode_step(np.full((2, 3), 4), model.encode(src, src_mask), cache, src_mask)
    model.decode_step(np.full((2, 1), 4), None, cache)
    with pytest.raises(ValueError, match="exceeds the position table"):
        model.decode_step(np.full((2, 1), 4), None, cache)
