"""Tests for nanotf.data: vocabularies, the built-in seq2seq tasks, splits and batches.

Every task's answers are checked *independently* of the code that made them: a separate number
parser written here, ``datetime.strptime`` for dates, Python's own ``sorted`` / slicing for the
string tasks.
"""

from __future__ import annotations

import datetime
import json
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nanotf
from nanotf.data import (
    BOS_ID,
    DATE_FORMATS,
    EOS_ID,
    PAD_ID,
    SPECIAL_TOKENS,
    TASKS,
    UNK_ID,
    Batch,
    Task,
    Vocab,
    batches,
    date_to_text,
    get_task,
    make_batch,
    number_to_words,
)

TASK_NAMES = ["copy", "reverse", "sort", "numbers", "dates", "addition"]


# ----------------------------------------------------------------------------------------------
# Vocab
# ----------------------------------------------------------------------------------------------


def test_special_ids_and_layout():
    v = Vocab("abc")
    assert (v.pad_id, v.bos_id, v.eos_id, v.unk_id) == (0, 1, 2, 3)
    assert (PAD_ID, BOS_ID, EOS_ID, UNK_ID) == (0, 1, 2, 3)
    assert v.tokens == ("<pad>", "<bos>", "<eos>", "<unk>", "a", "b", "c")
    assert len(v) == 7
    assert [v.token_to_id(t) for t in v.tokens] == list(range(7))
    assert v.id_to_token(5) == "b"
    assert "a" in v and "z" not in v


def test_encode_decode_char():
    v = Vocab("abc")
    assert v.encode("cab") == [6, 4, 5]
    assert v.encode("cab", add_bos=True, add_eos=True) == [1, 6, 4, 5, 2]
    assert v.encode("") == []
    assert v.decode([1, 6, 4, 5, 2, 0, 0]) == "cab"
    assert v.decode([6, 0, 4, 1, 5]) == "cab"  # pads and bos skipped anywhere
    assert v.decode([6, 2, 4, 5]) == "c"  # stops at the first <eos>
    assert v.decode([6, 2, 4, 5], stop_at_eos=False) == "cab"
    assert v.decode(np.array([1, 4, 4, 2, 6])) == "aa"


def test_encode_decode_word():
    v = Vocab(["one", "two", "forty-two"], level="word")
    assert v.encode("two  forty-two\tone") == [5, 6, 4]
    assert v.decode([1, 5, 6, 4, 2, 0]) == "two forty-two one"


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="abcdefghij ,", max_size=40))
def test_char_round_trip(s):
    v = Vocab("abcdefghij ,")
    assert v.decode(v.encode(s, add_bos=True, add_eos=True)) == s
    assert v.decode(v.encode(s)) == s


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(get_task("numbers").src_vocab.symbols), max_size=12))
def test_word_round_trip(words):
    v = get_task("numbers").src_vocab
    s = " ".join(words)
    assert v.decode(v.encode(s, add_eos=True)) == s


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), name=st.sampled_from(TASK_NAMES))
def test_task_vocab_round_trip(seed, name):
    task = get_task(name)
    for src, tgt in task.sample(5, seed):
        assert task.src_vocab.decode(task.encode_source(src)) == src
        assert task.decode_target(task.encode_target(tgt)) == tgt


def test_unknown_symbol_error_names_symbol_position_and_allowed():
    v = Vocab("abc")
    with pytest.raises(ValueError) as info:
        v.encode("axbyc")
    msg = str(info.value)
    assert "'x' at position 1" in msg and "'y' at position 3" in msg
    assert "'a', 'b', 'c'" in msg
    # no hint to an option that `translate` and the command line do not have
    assert "unk=" not in msg and "<unk>" not in msg


def test_unknown_word_error_is_abbreviated_for_long_vocabularies():
    v = get_task("numbers").src_vocab
    with pytest.raises(ValueError) as info:
        v.encode("one hundred and five")
    msg = str(info.value)
    assert "'and' at position 2" in msg
    assert "102 symbols" in msg
    assert "(+82 more)" in msg  # 20 shown
    assert len(msg) < 600


def test_unknown_symbol_map_policy():
    assert Vocab("abc").encode("axb", unk="map") == [4, UNK_ID, 5]
    v = Vocab("abc", unk="map")
    assert v.encode("axb") == [4, UNK_ID, 5]
    assert v.decode(v.encode("axb")) == "a<unk>b"
    with pytest.raises(ValueError, match="'x'"):
        v.encode("axb", unk="raise")
    with pytest.raises(ValueError, match="unk must be"):
        v.encode("a", unk="ignore")


def test_special_token_spelling_in_text_is_not_a_special_token():
    v = Vocab(["a", "b"], level="word")
    with pytest.raises(ValueError, match="'<eos>' at position 1"):
        v.encode("a <eos> b")
    assert v.encode("a <eos> b", unk="map") == [4, UNK_ID, 5]


def test_vocab_dict_round_trip_through_json():
    for v in [Vocab("abc"), get_task("numbers").src_vocab, Vocab("xy", unk="map")]:
        d = json.loads(json.dumps(v.to_dict()))
        w = Vocab.from_dict(d)
        assert w == v and hash(w) == hash(v)
        assert w.tokens == v.tokens and w.level == v.level and w.unk == v.unk
    assert Vocab("ab") != Vocab("ba")
    assert Vocab("ab") != Vocab(["a", "b"], level="word")


def test_vocab_from_bad_dict():
    with pytest.raises(ValueError, match="'symbols' and 'level'"):
        Vocab.from_dict({"symbols": ["a"]})
    d = Vocab("ab").to_dict()
    d["specials"] = ["<s>", "</s>"]
    with pytest.raises(ValueError, match="special tokens"):
        Vocab.from_dict(d)


@pytest.mark.parametrize(
    "symbols, level, pattern",
    [
        ("aba", "char", "more than once"),
        (["ab"], "char", "one-character"),
        (["<pad>", "a"], "char", "special token"),
        (["a b"], "word", "whitespace"),
        ([""], "word", "non-empty"),
        ("one two", "word", "list of words"),
        ("", "char", "at least one symbol"),
        ("ab", "bytes", "level must be"),
    ],
)
def test_vocab_rejects_bad_symbols(symbols, level, pattern):
    with pytest.raises((ValueError, TypeError), match=pattern):
        Vocab(symbols, level=level)


def test_decode_rejects_bad_ids():
    v = Vocab("abc")
    with pytest.raises(ValueError, match="id 7 is out of range for a vocabulary of 7"):
        v.decode([4, 7])
    with pytest.raises(ValueError, match="1-D"):
        v.decode(np.zeros((2, 2), dtype=np.int64))


# ----------------------------------------------------------------------------------------------
# Task registry
# ----------------------------------------------------------------------------------------------


def test_registry():
    assert set(TASKS) == set(TASK_NAMES)
    for name in TASK_NAMES:
        task = get_task(name)
        assert isinstance(task, Task) and task.name == name and task.description


def test_unknown_task_lists_known_names():
    with pytest.raises(ValueError) as info:
        get_task("translate")
    msg = str(info.value)
    assert "'translate'" in msg
    for name in TASK_NAMES:
        assert name in msg


def test_task_options_pass_through():
    task = get_task("copy", alphabet="01", min_len=3, max_len=4)
    pairs = task.sample(200, 0)
    assert all(set(s) <= {"0", "1"} and 3 <= len(s) <= 4 for s, _ in pairs)
    assert (task.max_src_len, task.max_tgt_len, task.n_sources) == (5, 6, 8 + 16)
    with pytest.raises(ValueError, match="min_len"):
        get_task("copy", min_len=0)
    with pytest.raises(ValueError, match="distinct characters"):
        get_task("sort", alphabet="aab")


# ----------------------------------------------------------------------------------------------
# Each task's answers, checked independently
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, solve",
    [("copy", lambda s: s), ("reverse", lambda s: s[::-1]), ("sort", lambda s: "".join(sorted(s)))],
)
def test_string_tasks(name, solve):
    task = get_task(name)
    pairs = task.sample(2000, 123)
    for src, tgt in pairs:
        assert tgt == solve(src)
        assert 1 <= len(src) <= 10
        assert set(src) <= set("abcdefghij")
    lengths = {len(s) for s, _ in pairs}
    assert lengths == set(range(1, 11))  # every length occurs
    assert {c for s, _ in pairs for c in s} == set("abcdefghij")
    assert task.max_src_len == 11 and task.max_tgt_len == 12


def test_sort_uses_alphabet_order():
    task = get_task("sort", alphabet="zyx", max_len=5)
    for src, tgt in task.sample(100, 0):
        rank = {"z": 0, "y": 1, "x": 2}
        assert tgt == "".join(sorted(src, key=rank.__getitem__))


_SMALL = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen "
        "fourteen fifteen sixteen seventeen eighteen nineteen".split()
    )
}
_TENS_WORDS = {
    w: 10 * (i + 2)
    for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())
}


def parse_number_words(text: str) -> int:
    """An independent parser for the numbers task's English: a strict grammar, in the test."""
    words = text.split(" ")
    assert all(words), f"empty word (double space?) in {text!r}"
    total, current, seen_hundred = 0, 0, False
    for w in words:
        if w == "thousand":
            assert 1 <= current <= 999 and total == 0, text
            total, current, seen_hundred = current * 1000, 0, False
        elif w == "hundred":
            assert 1 <= current <= 9 and not seen_hundred, text
            current, seen_hundred = current * 100, True
        elif "-" in w:
            tens, unit = w.split("-")
            assert _TENS_WORDS[tens] and 1 <= _SMALL[unit] <= 9, text
            assert current % 100 == 0, text
            current += _TENS_WORDS[tens] + _SMALL[unit]
        elif w in _TENS_WORDS:
            assert current % 100 == 0, text
            current += _TENS_WORDS[w]
        else:
            value = _SMALL[w]
            assert current % 100 == 0 and (value != 0 or text == "zero"), text
            current += value
    return total + current


NUMBER_EXAMPLES = {
    0: "zero",
    7: "seven",
    13: "thirteen",
    19: "nineteen",
    20: "twenty",
    40: "forty",
    42: "forty-two",
    99: "ninety-nine",
    100: "one hundred",
    101: "one hundred one",
    110: "one hundred ten",
    342: "three hundred forty-two",
    1000: "one thousand",
    1001: "one thousand one",
    1205: "one thousand two hundred five",
    12000: "twelve thousand",
    20019: "twenty thousand nineteen",
    100000: "one hundred thousand",
    700070: "seven hundred thousand seventy",
    999999: "nine hundred ninety-nine thousand nine hundred ninety-nine",
}


@pytest.mark.parametrize("n, words", sorted(NUMBER_EXAMPLES.items()))
def test_number_words_table(n, words):
    assert number_to_words(n) == words
    assert parse_number_words(words) == n


def test_number_words_parse_back_everywhere():
    for n in [*range(2000), *range(2000, 1_000_000, 97), 999_999]:
        assert parse_number_words(number_to_words(n)) == n


def test_number_to_words_rejects_out_of_range():
    for bad in (-1, 1_000_000, 2.5, True):
        with pytest.raises(ValueError, match="0..999999"):
            number_to_words(bad)


def test_numbers_task():
    task = get_task("numbers")
    pairs = task.sample(3000, 7)
    for src, tgt in pairs:
        assert tgt.isdigit() and str(int(tgt)) == tgt  # no leading zeros
        assert parse_number_words(src) == int(tgt)
    digit_counts = {len(t) for _, t in pairs}
    assert digit_counts == {1, 2, 3, 4, 5, 6}  # small numbers are sampled too
    assert task.src_vocab.level == "word" and len(task.src_vocab.symbols) == 102
    assert task.tgt_vocab.symbols == tuple("0123456789")
    # the longest source (7 words + <eos>) and target (6 digits + <bos>, <eos>) fit exactly
    assert len(task.encode_source(number_to_words(777_777))) == task.max_src_len == 8
    assert len(task.encode_target("777777")) == task.max_tgt_len == 8


STRPTIME_FORMATS = ("%B %d, %Y", "%d %B %Y", "%A, %B %d, %Y")


def parse_date(src: str) -> tuple[datetime.date, int]:
    """Parse a dates-task source with datetime.strptime; returns the date and the format index."""
    for i, fmt in enumerate(STRPTIME_FORMATS):
        try:
            d = datetime.datetime.strptime(src, fmt).date()
        except ValueError:
            continue
        if i == 2:  # strptime does not check the weekday against the date: do it here
            assert src.split(",")[0] == d.strftime("%A").lower(), src
        assert src == src.lower() and not re.search(r"\b0\d", src), src  # no leading zeros
        return d, i
    raise AssertionError(f"no format parses {src!r}")


def test_dates_task():
    task = get_task("dates")
    pairs = task.sample(3000, 11)
    formats = set()
    for src, tgt in pairs:
        d, i = parse_date(src)
        formats.add(i)
        assert tgt == d.strftime("%Y-%m-%d")
        assert 1900 <= d.year <= 2099
    assert formats == {0, 1, 2}
    assert task.src_vocab.level == "char" and task.tgt_vocab.symbols == tuple("0123456789-")


def test_date_formats_by_hand():
    d = datetime.date(1999, 3, 5)  # a Friday
    assert [date_to_text(d, i) for i in range(3)] == [
        "march 5, 1999",
        "5 march 1999",
        "friday, march 5, 1999",
    ]
    assert len(DATE_FORMATS) == 3
    assert date_to_text(datetime.date(2000, 2, 29), 1) == "29 february 2000"
    longest = date_to_text(datetime.date(1999, 9, 29), 2)  # a Wednesday
    assert longest == "wednesday, september 29, 1999"
    assert len(get_task("dates").encode_source(longest)) == get_task("dates").max_src_len
    with pytest.raises(ValueError, match="style"):
        date_to_text(d, 3)


def test_dates_cover_the_whole_range_only_with_real_days():
    task = get_task("dates")
    assert task.n_sources == (datetime.date(2099, 12, 31) - datetime.date(1900, 1, 1)).days + 1
    train, held = task.splits(40_000, 1_000, 3)
    days = [datetime.date.fromisoformat(t) for _, t in train + held]
    assert min(days).year == 1900 and max(days).year == 2099
    leap_years = {d.year for d in days if (d.month, d.day) == (2, 29)}
    assert leap_years and leap_years <= set(range(1904, 2100, 4))  # 1900 was not a leap year


@pytest.mark.parametrize("name", TASK_NAMES)
def test_samples_encode_within_max_lengths(name):
    task = get_task(name)
    b = make_batch(task.sample(1000, 5), task)
    assert b.src.shape[1] <= task.max_src_len
    assert b.tgt.shape[1] <= task.max_tgt_len


# ----------------------------------------------------------------------------------------------
# Determinism and splits
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TASK_NAMES)
def test_sampling_is_deterministic_per_seed(name):
    task = get_task(name)
    a = task.sample(50, 42)
    assert a == task.sample(50, 42) == get_task(name).sample(50, np.random.default_rng(42))
    assert a != task.sample(50, 43)
    g = np.random.default_rng(0)
    first, second = task.sample(20, g), task.sample(20, g)  # a Generator advances
    assert first != second
    assert task.splits(100, 20, 9) == task.splits(100, 20, 9)
    assert task.splits(100, 20, 9) != task.splits(100, 20, 10)


def test_sample_arguments():
    task = get_task("copy")
    assert task.sample(0, 0) == []
    with pytest.raises(ValueError, match="non-negative"):
        task.sample(-1, 0)
    with pytest.raises(TypeError, match="Generator or a non-negative integer seed"):
        task.sample(3, "seed")
    with pytest.raises(TypeError, match="seed"):
        task.splits(3, 3, seed=1.5)


@pytest.mark.parametrize("name", TASK_NAMES)
def test_splits_are_disjoint_and_distinct(name):
    task = get_task(name)
    train, held = task.splits(2000, 300, seed=1)
    assert len(train) == 2000 and len(held) == 300
    key = 1 if name == "dates" else 0
    train_keys = [p[key] for p in train]
    held_keys = [p[key] for p in held]
    assert len(set(train_keys)) == 2000 and len(set(held_keys)) == 300
    assert not set(train_keys) & set(held_keys)
    assert not {s for s, _ in train} & {s for s, _ in held}  # held-out sources never trained on


def test_heldout_does_not_depend_on_train_size():
    task = get_task("reverse")
    _, held_small = task.splits(10, 100, seed=5)
    _, held_big = task.splits(5000, 100, seed=5)
    assert held_small == held_big


def test_splits_too_small_task_space():
    task = get_task("copy", alphabet="ab", max_len=2)  # a, b, aa, ab, ba, bb
    assert task.n_sources == 6
    train, held = task.splits(4, 2, seed=0)
    assert sorted(s for s, _ in train + held) == ["a", "aa", "ab", "b", "ba", "bb"]
    with pytest.raises(ValueError, match="only 6 distinct examples.*4 train \\+ 3 held-out = 7"):
        task.splits(4, 3, seed=0)


def test_splits_give_up_when_draws_stop_finding_new_examples():
    # a task that claims many examples but only ever produces one: splits must not loop forever
    stuck = Task(
        name="stuck",
        description="always the same pair",
        src_vocab=Vocab("a"),
        tgt_vocab=Vocab("a"),
        max_src_len=2,
        max_tgt_len=3,
        generate=lambda n, rng: [("a", "a")] * n,
        n_sources=10,
    )
    with pytest.raises(RuntimeError, match="found only 1 of 2 new distinct examples"):
        stuck.splits(0, 2, seed=0)


def test_tasks_compare_by_value():
    assert get_task("copy") == get_task("copy")
    assert get_task("copy") != get_task("reverse")
    assert get_task("copy") != get_task("copy", max_len=12)


# ----------------------------------------------------------------------------------------------
# Batches
# ----------------------------------------------------------------------------------------------


def test_make_batch_layout():
    task = get_task("reverse")
    pairs = [("abc", "cba"), ("j", "j"), ("abcdefghij", "jihgfedcba")]
    b = make_batch(pairs, task)
    assert b.src.shape == (3, 11) and b.tgt.shape == (3, 12)  # longest + <eos> / + <bos>, <eos>
    assert b.src.dtype == np.int64 and b.tgt.dtype == np.int64
    assert b.src_mask.dtype == np.bool_ and b.tgt_mask.dtype == np.bool_
    np.testing.assert_array_equal(b.src_mask, b.src != PAD_ID)
    np.testing.assert_array_equal(b.tgt_mask, b.tgt != PAD_ID)
    v = task.src_vocab
    np.testing.assert_array_equal(b.src[0, :5], v.encode("abc") + [EOS_ID, PAD_ID])
    np.testing.assert_array_equal(b.tgt[1, :4], [BOS_ID, v.token_to_id("j"), EOS_ID, PAD_ID])
    assert b.src_mask.sum(1).tolist() == [4, 2, 11]
    assert b.tgt_mask.sum(1).tolist() == [5, 3, 12]
    # teacher forcing: the decoder reads tgt_in and predicts tgt_out, shifted by one
    assert b.tgt_in.shape == b.tgt_out.shape == (3, 11)
    assert (b.tgt_in[:, 0] == BOS_ID).all()
    np.testing.assert_array_equal(b.tgt_in[:, 1:], b.tgt_out[:, :-1])
    np.testing.assert_array_equal(b.tgt_out_mask, b.tgt_out != PAD_ID)
    np.testing.assert_array_equal(b.tgt_in_mask, b.tgt_in != PAD_ID)
    assert b.n_tokens == 4 + 2 + 11  # target characters + <eos>, per example
    assert len(b) == 3
    for row, (src, tgt) in enumerate(pairs):
        assert task.src_vocab.decode(b.src[row]) == src
        assert task.decode_target(b.tgt[row]) == tgt
        assert task.decode_target(b.tgt_out[row]) == tgt


@pytest.mark.parametrize("name", TASK_NAMES)
def test_make_batch_every_task(name):
    task = get_task(name)
    pairs = task.sample(64, 2)
    b = make_batch(pairs, task)
    assert b.src.shape == (64, max(len(task.encode_source(s)) for s, _ in pairs))
    assert b.tgt.shape == (64, max(len(task.encode_target(t)) for _, t in pairs))
    assert b.n_tokens == sum(len(task.tgt_vocab.split(t)) + 1 for _, t in pairs)
    # each row: real tokens, then only padding; <eos> is the last real source token
    lengths = b.src_mask.sum(1)
    assert (b.src[np.arange(64), lengths - 1] == EOS_ID).all()
    assert (b.src_mask[:, :-1] >= b.src_mask[:, 1:]).all()
    assert (b.tgt_mask[:, :-1] >= b.tgt_mask[:, 1:]).all()
    assert [task.decode_target(row) for row in b.tgt] == [t for _, t in pairs]


def test_make_batch_errors():
    task = get_task("copy")
    with pytest.raises(ValueError, match="at least one"):
        make_batch([], task)
    with pytest.raises(TypeError, match="got one pair"):
        make_batch(("ab", "ab"), task)
    with pytest.raises(TypeError, match="pair 1"):
        make_batch([("ab", "ab"), ("ab", 3)], task)
    with pytest.raises(ValueError, match=r"pair 1 .*'z' at position 2"):
        make_batch([("ab", "ab"), ("abz", "abz")], task)


def test_batch_checks_shapes_and_dtypes():
    ids = np.ones((2, 3), dtype=np.int64)
    mask = np.ones((2, 3), dtype=bool)
    Batch(ids, ids, mask, mask)
    with pytest.raises(TypeError, match="src must have dtype int64"):
        Batch(ids.astype(np.int32), ids, mask, mask)
    with pytest.raises(TypeError, match="tgt_mask must have dtype bool"):
        Batch(ids, ids, mask, ids)
    with pytest.raises(ValueError, match="2-D"):
        Batch(ids[0], ids, mask, mask)
    with pytest.raises(ValueError, match="masks must match"):
        Batch(ids, ids, mask[:, :2], mask)
    with pytest.raises(ValueError, match="same number of examples"):
        Batch(ids, ids[:1], mask, mask[:1])
    with pytest.raises(ValueError, match="at least 2 positions"):
        Batch(ids, ids[:, :1], mask, mask[:, :1])


def test_to_backend_on_numpy():
    task = get_task("copy")
    b = make_batch(task.sample(4, 0), task).to_backend()
    assert isinstance(b.src, np.ndarray) and b.src.dtype == np.int64


def test_batches_cover_an_epoch():
    task = get_task("sort")
    pairs = task.sample(103, 0)
    out = list(batches(pairs, task, 10, rng=1))
    assert [len(b) for b in out] == [10] * 10 + [3]
    seen = [task.src_vocab.decode(row) for b in out for row in b.src]
    assert sorted(seen) == sorted(s for s, _ in pairs)
    assert seen != [s for s, _ in pairs]  # shuffled
    dropped = list(batches(pairs, task, 10, rng=1, drop_last=True))
    assert [len(b) for b in dropped] == [10] * 10
    in_order = list(batches(pairs, task, 10, shuffle=False))
    assert [task.src_vocab.decode(r) for b in in_order for r in b.src] == [s for s, _ in pairs]


def test_batches_shuffle_is_repeatable():
    task = get_task("copy")
    pairs = task.sample(50, 0)

    def order(**kw):
        return [task.src_vocab.decode(r) for b in batches(pairs, task, 8, **kw) for r in b.src]

    assert order(rng=3) == order(rng=3) != order(rng=4)
    g = np.random.default_rng(0)
    assert order(rng=g) != order(rng=g)  # a Generator gives a new order every epoch
    try:
        nanotf.manual_seed(17)
        a = order()
        nanotf.manual_seed(17)
        assert order() == a
    finally:
        nanotf.manual_seed(0)


def test_batches_errors_are_raised_at_call_time():
    task = get_task("copy")
    pairs = task.sample(5, 0)
    with pytest.raises(ValueError, match="at least one"):
        batches([], task, 4)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        batches(pairs, task, 0)
    with pytest.raises(ValueError, match="gives no batch"):
        batches(pairs, task, 8, drop_last=True)


def test_special_tokens_constant():
    assert SPECIAL_TOKENS == ("<pad>", "<bos>", "<eos>", "<unk>")


@pytest.mark.parametrize("name", ["copy", "reverse", "sort", "numbers"])
def test_heldout_never_takes_a_whole_small_group(name: str) -> None:
    """The ten one-letter strings (ten one-digit numbers) must not all go to held-out: training
    has to see every length. Held-out takes at most half of each group."""
    task = get_task(name)
    for seed in range(3):
        train, heldout = task.splits(3000, 500, seed=seed)
        group = (lambda p: len(p[0])) if name != "numbers" else (lambda p: len(p[1]))
        held_short = {p[0] for p in heldout if group(p) == 1}
        train_short = {p[0] for p in train if group(p) == 1}
        assert len(held_short) <= 5
        assert train_short, f"seed {seed}: training has no example of the smallest group"


def test_splits_are_bounded_before_anything_is_drawn(monkeypatch):
    from nanotf.data import MAX_SPLIT_PAIRS, MAX_STRING_LEN

    def no_drawing(*args, **kwargs):
        raise AssertionError("drew examples before checking the request")

    monkeypatch.setattr(Task, "_distinct", no_drawing)
    reverse = get_task("reverse")
    assert reverse.max_heldout == sum(10**k // 2 for k in range(1, 11))
    with pytest.raises(ValueError, match=f"at most {MAX_SPLIT_PAIRS:,} in all"):
        reverse.splits(20_000, 100_000_000, seed=0)  # would take ~50 GB
    numbers = get_task("numbers")
    assert numbers.max_heldout == 500_000  # half of each digit count: 5 + 45 + ... + 450000
    with pytest.raises(ValueError, match="'numbers' can hold out: at most 500,000"):
        numbers.splits(10, 500_001, seed=0)
    dates = get_task("dates")
    assert dates.max_heldout == dates.n_sources  # no groups: every day can be held out
    with pytest.raises(ValueError, match="can hold out: at most 73,049$"):
        dates.check_split(0, 73_050)
    small = get_task("copy", alphabet="ab", max_len=2)  # a b | aa ab ba bb
    assert small.max_heldout == 1 + 2
    small.check_split(3, 3)
    with pytest.raises(ValueError, match="can hold out: at most 3"):
        small.check_split(0, 4)
    with pytest.raises(ValueError, match=f"max_len must be at most {MAX_STRING_LEN}, got 1000"):
        get_task("reverse", max_len=1000)
