"""Greedy decoding and beam search (nanotf.decode).

Two kinds of models: hand-built ones whose next-token distribution is a known function of the
source and the prefix (so the right answer is known exactly), and small random Transformers in
float64 (so properties that must hold for any model are checked on the real one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import nanotf
from nanotf.data import BOS_ID, EOS_ID, PAD_ID, Vocab
from nanotf.decode import (
    beam_search,
    greedy_decode,
    length_penalty_factor,
    sequence_log_prob,
    translate,
)
from nanotf.models.transformer import Transformer

V = 10  # vocabulary of the hand-built models: 4 specials + 6 symbols (ids 4..9)


class HandBuiltModel:
    """``log p(next | src, prefix) = fn(src_ids, prefix)``: a model with a known answer.

    ``encode`` hands the source ids through as the "memory" (B, S, 1); ``decode`` evaluates
    ``fn`` at every position of ``tgt_in`` (the prefix after ``<bos>``), as a real decoder
    does under teacher forcing.
    """

    def __init__(self, fn: Callable[[list[int], tuple[int, ...]], np.ndarray]) -> None:
        self.fn = fn
        self.training = True
        self.calls = 0

    def train(self, mode: bool = True) -> HandBuiltModel:
        self.training = mode
        return self

    def encode(self, src: Any, src_mask: Any) -> np.ndarray:
        return np.asarray(src, dtype=np.float64)[:, :, None]

    def decode(self, tgt_in: Any, memory: Any, src_mask: Any, tgt_mask: Any) -> np.ndarray:
        self.calls += 1
        assert not self.training, "decoding must run in eval mode"
        b, t = tgt_in.shape
        out = np.empty((b, t, V))
        for i in range(b):
            src = [int(s) for s, m in zip(memory[i, :, 0], src_mask[i], strict=True) if m]
            for j in range(t):
                out[i, j] = self.fn(src, tuple(int(x) for x in tgt_in[i, 1 : j + 1]))
        return out


def _log(p: dict[int, float]) -> np.ndarray:
    """A log-probability vector with the given probabilities (the rest share what is left)."""
    probs = np.full(V, 0.0)
    for k, v in p.items():
        probs[k] = v
    rest = 1.0 - probs.sum()
    free = [k for k in range(V) if k not in p]
    probs[free] = rest / len(free)
    return np.log(np.maximum(probs, 1e-30))


def reverse_oracle(src: list[int], prefix: tuple[int, ...]) -> np.ndarray:
    """Knows the answer: the source (without its <eos>) reversed, then <eos>."""
    want = [s for s in src if s != EOS_ID][::-1] + [EOS_ID]
    nxt = want[len(prefix)] if len(prefix) < len(want) else EOS_ID
    return _log({nxt: 0.9})


def pad_batch(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), PAD_ID, dtype=np.int64)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
    return ids, ids != PAD_ID


def test_greedy_hand_built_reverses_and_stops_at_eos() -> None:
    model = HandBuiltModel(reverse_oracle)
    src, mask = pad_batch([[4, 5, 6, EOS_ID], [7, EOS_ID], [9, 8, 7, 6, 5, EOS_ID]])
    out = greedy_decode(model, src, mask, max_len=20)
    assert out.dtype == np.int64 and isinstance(out, np.ndarray)
    # each row ends with its <eos>, then padding; the width is the longest output
    np.testing.assert_array_equal(
        out,
        [
            [6, 5, 4, EOS_ID, PAD_ID, PAD_ID],
            [7, EOS_ID, PAD_ID, PAD_ID, PAD_ID, PAD_ID],
            [5, 6, 7, 8, 9, EOS_ID],
        ],
    )
    assert model.training, "the model's mode is restored after decoding"


def test_greedy_respects_max_len() -> None:
    model = HandBuiltModel(reverse_oracle)
    src, mask = pad_batch([[4, 5, 6, 7, 8, EOS_ID], [9, EOS_ID]])
    out = greedy_decode(model, src, mask, max_len=3)
    np.testing.assert_array_equal(out, [[8, 7, 6], [9, EOS_ID, PAD_ID]])


def test_beam_finds_better_sequence_than_greedy() -> None:
    """A trap: the greedy first token (0.6) leads to a flat continuation (0.3 at best), the
    other (0.4) to a certain <eos>. Greedy scores 0.6·0.3·..., beam finds 0.4·1.0."""

    def trap(src: list[int], prefix: tuple[int, ...]) -> np.ndarray:
        if prefix == ():
            return _log({4: 0.6, 5: 0.4})
        if prefix == (5,):
            return _log({EOS_ID: 0.999})
        if prefix[0] == 4 and len(prefix) < 3:
            return _log({6: 0.3, 7: 0.3, EOS_ID: 0.1})
        return _log({EOS_ID: 0.99})

    model = HandBuiltModel(trap)
    src, mask = pad_batch([[4, EOS_ID]])
    greedy = greedy_decode(model, src, mask, max_len=10)
    beam, scores = beam_search(model, src, mask, 2, 10, length_penalty=0.0, return_scores=True)
    np.testing.assert_array_equal(greedy, [[4, 6, 6, EOS_ID]])
    np.testing.assert_array_equal(beam, [[5, EOS_ID]])
    g = sequence_log_prob(model, src, mask, greedy)
    b = sequence_log_prob(model, src, mask, beam)
    assert b[0] > g[0]
    np.testing.assert_allclose(scores, b, rtol=1e-12)


def test_beam_length_penalty_changes_the_winner() -> None:
    """Short "<eos>" at once (0.5) vs. a longer path (0.45 · 0.99 · 0.99 = 0.44): the plain
    log-probability prefers the short one, GNMT's penalty with alpha=1 (lp = 1 vs. 8/6) the
    longer one."""

    def fn(src: list[int], prefix: tuple[int, ...]) -> np.ndarray:
        if prefix == ():
            return _log({EOS_ID: 0.5, 4: 0.45})
        return _log({EOS_ID if len(prefix) >= 2 else 4: 0.99})

    model = HandBuiltModel(fn)
    src, mask = pad_batch([[4, EOS_ID]])
    short = beam_search(model, src, mask, 3, 10, length_penalty=0.0)
    long = beam_search(model, src, mask, 3, 10, length_penalty=1.0)
    np.testing.assert_array_equal(short, [[EOS_ID]])
    np.testing.assert_array_equal(long, [[4, 4, EOS_ID]])
    assert length_penalty_factor(1, 0.0) == 1.0
    assert length_penalty_factor(7, 1.0) == pytest.approx(2.0)


def test_beam_respects_max_len_and_eos() -> None:
    model = HandBuiltModel(reverse_oracle)
    src, mask = pad_batch([[4, 5, 6, 7, EOS_ID], [8, EOS_ID]])
    out = beam_search(model, src, mask, 3, max_len=3)
    np.testing.assert_array_equal(out, [[7, 6, 5], [8, EOS_ID, PAD_ID]])
    full = beam_search(model, src, mask, 3, max_len=10)
    np.testing.assert_array_equal(full, [[7, 6, 5, 4, EOS_ID], [8, EOS_ID, PAD_ID, PAD_ID, PAD_ID]])


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_bad_arguments(bad: Any) -> None:
    model = HandBuiltModel(reverse_oracle)
    src, mask = pad_batch([[4, EOS_ID]])
    with pytest.raises(ValueError, match="beam_width"):
        beam_search(model, src, mask, bad, 5)
    with pytest.raises(ValueError, match="max_len"):
        greedy_decode(model, src, mask, bad)
    with pytest.raises(ValueError, match="src_mask"):
        greedy_decode(model, src, mask[:, :1], 5)


# -- a real (random, float64) Transformer -----------------------------------------------------


@pytest.fixture
def transformer() -> Transformer:
    nanotf.set_default_dtype(np.float64)
    nanotf.manual_seed(5)
    model = Transformer(
        V,
        V,
        d_model=16,
        n_heads=2,
        n_encoder_layers=1,
        n_decoder_layers=2,
        d_ff=32,
        dropout=0.1,
        max_len=32,
    )
    # sharpen the output layer so the random model makes confident, varied choices (and <eos>)
    model.out_proj.weight.data *= 4.0
    model.out_proj.bias.data[EOS_ID] = 0.5
    return model


def _sources(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    g = np.random.default_rng(seed)
    rows = [g.integers(4, V, size=g.integers(1, 7)).tolist() + [EOS_ID] for _ in range(n)]
    return pad_batch(rows)


def test_greedy_equals_argmax_of_teacher_forced_logits(transformer: Transformer) -> None:
    src, mask = _sources(0, 8)
    out = greedy_decode(transformer, src, mask, max_len=12)
    assert transformer.training  # restored
    transformer.eval()
    tgt_in = np.concatenate([np.full((len(out), 1), BOS_ID), out[:, :-1]], axis=1)
    logits = transformer.forward(src, tgt_in, mask, None)
    logits[:, :, [PAD_ID, BOS_ID]] = -np.inf  # never generated
    pred = logits.argmax(axis=-1)
    ended = 0
    for i, row in enumerate(out):
        n = len(row) if EOS_ID not in row else int(np.argmax(row == EOS_ID)) + 1
        ended += EOS_ID in row
        np.testing.assert_array_equal(pred[i, :n], row[:n])
        assert (row[n:] == PAD_ID).all()
    assert 0 < ended < len(out), "the fixture should give rows with and without <eos>"


def test_greedy_equals_beam_of_width_one(transformer: Transformer) -> None:
    src, mask = _sources(1, 10)
    greedy = greedy_decode(transformer, src, mask, max_len=12)
    for alpha in (0.0, 0.6):
        beam = beam_search(transformer, src, mask, 1, 12, length_penalty=alpha)
        np.testing.assert_array_equal(beam, greedy)


def _penalty(ids: np.ndarray, alpha: float) -> np.ndarray:
    return np.array([length_penalty_factor(int((r != PAD_ID).sum()), alpha) for r in ids])


def test_beam_score_at_least_greedy(transformer: Transformer) -> None:
    src, mask = _sources(2, 10)
    greedy = greedy_decode(transformer, src, mask, max_len=12)
    for alpha in (0.0, 0.6):
        beam, scores = beam_search(
            transformer, src, mask, 4, 12, length_penalty=alpha, return_scores=True
        )
        g = sequence_log_prob(transformer, src, mask, greedy) / _penalty(greedy, alpha)
        b = sequence_log_prob(transformer, src, mask, beam) / _penalty(beam, alpha)
        np.testing.assert_allclose(b, scores, rtol=1e-9)
        assert (b >= g - 1e-12).all()
        assert (b > g + 1e-6).any(), "the beam should beat greedy somewhere in this batch"


@pytest.mark.parametrize("width", [1, 3])
def test_batch_equals_one_by_one(transformer: Transformer, width: int) -> None:
    src, mask = _sources(4, 6)
    batched = beam_search(transformer, src, mask, width, 12)
    for i in range(len(src)):
        n = int(mask[i].sum())
        alone = beam_search(transformer, src[i : i + 1, :n], mask[i : i + 1, :n], width, 12)
        got = batched[i][: alone.shape[1]]
        np.testing.assert_array_equal(got, alone[0])
        assert (batched[i][alone.shape[1] :] == PAD_ID).all()
    greedy = greedy_decode(transformer, src, mask, max_len=12)
    for i in range(len(src)):
        n = int(mask[i].sum())
        alone = greedy_decode(transformer, src[i : i + 1, :n], mask[i : i + 1, :n], max_len=12)
        np.testing.assert_array_equal(greedy[i][: alone.shape[1]], alone[0])


def test_translate_text(transformer: Transformer) -> None:
    vocab = Vocab("abcdef")
    out = translate(transformer, ["abc", "f"], vocab, vocab, max_len=6)
    src, mask = pad_batch([vocab.encode("abc", add_eos=True), vocab.encode("f", add_eos=True)])
    ids = greedy_decode(transformer, src, mask, max_len=6)
    assert out == [vocab.decode(row) for row in ids]
    beam = beam_search(transformer, src, mask, 3, 6)
    assert translate(transformer, ["abc", "f"], vocab, vocab, beam_width=3, max_len=6) == [
        vocab.decode(row) for row in beam
    ]
    assert translate(transformer, [], vocab, vocab) == []
    with pytest.raises(ValueError, match="'z' at position 1"):
        translate(transformer, ["az"], vocab, vocab)
    with pytest.raises(TypeError, match="list of texts"):
        translate(transformer, "abc", vocab, vocab)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="position table"):
        translate(transformer, ["a" * 40], vocab, vocab)


def test_translate_bounds_beam_width_and_max_len_by_the_model(transformer: Transformer) -> None:
    vocab = Vocab("abcdef")  # 10 tokens
    limit = transformer.max_len
    with pytest.raises(ValueError, match=r"beam_width must be in \[1, 10\].*got 11"):
        translate(transformer, ["abc"], vocab, vocab, beam_width=11)
    with pytest.raises(ValueError, match=rf"max_len must be in \[1, {limit}\].*got {limit + 1}"):
        translate(transformer, ["abc"], vocab, vocab, max_len=limit + 1)
    with pytest.raises(ValueError, match="max_len must be a positive integer, got 0"):
        translate(transformer, ["abc"], vocab, vocab, max_len=0)
    # the bounds themselves work
    assert len(translate(transformer, ["abc"], vocab, vocab, beam_width=10, max_len=limit)) == 1
