"""The toy tasks as language modelling (nanotf.tasks.lm) and the ``addition`` task.

The layout of a sequence, its labels and the continuation's text are checked against a
construction written here independently (position by position), and by hypothesis over random
pairs of every task.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nanotf.data import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    SEPARATOR,
    TASKS,
    LMTask,
    addition_task,
    get_task,
    lm_batch,
)


def test_reverse_as_one_sequence() -> None:
    lm = LMTask(get_task("reverse"))
    assert lm.vocab.level == "char"
    assert lm.vocab.tokens[4:] == tuple("abcdefghij") + (SEPARATOR,)
    ids = lm.sequence_ids("abc", "cba")
    assert [lm.vocab.id_to_token(i) for i in ids] == ["<bos>", *"abc", "=", *"cba", "<eos>"]
    assert lm.prompt_ids("abc") == ids[:5]
    assert lm.continuation_text(ids[5:] + [PAD_ID, 7]) == "cba"  # stops at <eos>
    assert lm.max_seq_len == 1 + 10 + 1 + 10 + 1
    assert lm.description.endswith("as one sequence: source=target")


def test_a_word_level_side_makes_a_word_level_vocabulary() -> None:
    lm = LMTask(get_task("numbers"))
    assert lm.vocab.level == "word"
    ids = lm.sequence_ids("forty-two", "42")
    assert [lm.vocab.id_to_token(i) for i in ids] == ["<bos>", "forty-two", "=", "4", "2", "<eos>"]
    assert lm.continuation_text(ids[3:]) == "42"  # digits joined as the target side writes


def test_the_union_of_both_sides_has_each_symbol_once() -> None:
    lm = LMTask(get_task("dates"))
    syms = lm.vocab.tokens[4:]
    assert len(set(syms)) == len(syms)
    assert set(syms) == set(get_task("dates").src_vocab.tokens[4:]) | set("0123456789-=")


def test_a_task_that_uses_the_separator_is_refused() -> None:
    with pytest.raises(ValueError, match="uses '=' as a symbol"):
        LMTask(get_task("copy", alphabet="ab="))


def test_unknown_symbols_get_the_vocabularys_error() -> None:
    lm = LMTask(get_task("reverse"))
    with pytest.raises(ValueError, match="unknown character 'z'"):
        lm.prompt_ids("abz")
    with pytest.raises(ValueError, match="pair 1 .* of task 'reverse'"):
        lm_batch([("ab", "ba"), ("az", "za")], lm)
    with pytest.raises(ValueError, match="at least one"):
        lm_batch([], lm)
    with pytest.raises(TypeError, match="tuple of two str"):
        lm_batch([("ab", 3)], lm)


def _expected_labels(lm: LMTask, pairs: list[tuple[str, str]], width: int) -> np.ndarray:
    """Labels written position by position: the token after position t when it is part of the
    continuation (target or <eos>), <pad> otherwise."""
    out = np.full((len(pairs), width - 1), PAD_ID, dtype=np.int64)
    for r, (src, tgt) in enumerate(pairs):
        seq = lm.sequence_ids(src, tgt)
        n_prompt = len(lm.prompt_ids(src))
        for t in range(width - 1):
            if n_prompt <= t + 1 < len(seq):
                out[r, t] = seq[t + 1]
    return out


def test_batch_labels_count_only_the_continuation() -> None:
    lm = LMTask(get_task("reverse"))
    pairs = [("abc", "cba"), ("j", "j"), ("abcdefghij", "jihgfedcba")]
    b = lm_batch(pairs, lm)
    assert b.ids.shape == (3, 23) and b.labels.shape == (3, 22) and len(b) == 3
    np.testing.assert_array_equal(b.labels, _expected_labels(lm, pairs, 23))
    assert b.n_tokens == (3 + 1) + (1 + 1) + (10 + 1)
    np.testing.assert_array_equal(b.inputs, b.ids[:, :-1])
    assert b.ids[1, :5].tolist() == [BOS_ID, lm.vocab.token_to_id("j"), lm.sep_id,
                                     lm.vocab.token_to_id("j"), EOS_ID]
    assert (b.ids[1, 5:] == PAD_ID).all()


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(sorted(TASKS)), seed=st.integers(0, 2**32 - 1), n=st.integers(1, 9))
def test_every_task_as_sequences(name: str, seed: int, n: int) -> None:
    """For random pairs of every task: the labels are the continuation and nothing else, the
    continuation reads back as the target, and no sequence is longer than max_seq_len."""
    lm = LMTask(get_task(name))
    pairs = get_task(name).sample(n, seed)
    b = lm_batch(pairs, lm)
    np.testing.assert_array_equal(b.labels, _expected_labels(lm, pairs, b.ids.shape[1]))
    assert b.ids.shape[1] <= lm.max_seq_len
    for row, (src, tgt) in zip(b.labels, pairs, strict=True):
        assert lm.continuation_text(row[row != PAD_ID]) == tgt
        assert len(lm.prompt_ids(src)) <= lm.max_prompt_len


def test_addition_pairs_are_sums() -> None:
    task = addition_task()
    pairs = task.sample(2000, 0)
    for src, tgt in pairs:
        a, b = src.split("+")
        assert int(a) + int(b) == int(tgt) and str(int(a)) == a and str(int(b)) == b
    digits = {len(src.split("+")[0]) for src, _ in pairs}
    assert digits == {1, 2, 3}  # the digit count is uniform, so each occurs
    assert max(len(task.encode_source(s)) for s, _ in pairs) <= task.max_src_len
    assert max(len(task.encode_target(t)) for _, t in pairs) <= task.max_tgt_len
    assert task.n_sources == 1000 * 1000


def test_addition_splits_are_disjoint_and_stratified() -> None:
    task = get_task("addition", max_digits=1)
    assert task.n_sources == 100 and task.max_heldout == 50
    train, heldout = task.splits(50, 50, seed=3)
    assert not {s for s, _ in train} & {s for s, _ in heldout}
    assert len({s for s, _ in train + heldout}) == 100
    with pytest.raises(ValueError, match="at most 50"):
        task.check_split(0, 51)


@pytest.mark.parametrize("bad", [0, 10, 2.5, True, "3"])
def test_addition_digits_are_checked(bad: object) -> None:
    with pytest.raises(ValueError, match=r"max_digits must be an integer in \[1, 9\]"):
        addition_task(bad)  # type: ignore[arg-type]
