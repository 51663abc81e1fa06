"""The ``numbers`` task: English number words -> digits, 0..999999."""

from __future__ import annotations

import numpy as np

from ..text.vocab import Vocab
from .base import Pair, Task

__all__ = ["number_to_words", "numbers_task"]


def _digits_stratum(pair: Pair) -> tuple[int, int]:
    """Numbers grouped by their count of digits d: ten of one digit, 9 * 10**(d-1) of more."""
    d = len(pair[1])
    return d, 10 if d == 1 else 9 * 10 ** (d - 1)


_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()  # 20, 30, ..., 90


def _below_100(n: int) -> str:
    if n < 20:
        return _ONES[n]
    tens, ones = divmod(n, 10)
    return _TENS[tens - 2] + (f"-{_ONES[ones]}" if ones else "")


def _below_1000(n: int) -> str:
    hundreds, rest = divmod(n, 100)
    if not hundreds:
        return _below_100(rest)
    return f"{_ONES[hundreds]} hundred" + (f" {_below_100(rest)}" if rest else "")


def number_to_words(n: int) -> str:
    """English words for ``0 <= n <= 999_999``, in the style of the ``numbers`` task.

    American style: no "and", no commas; 21-99 are hyphenated ("forty-two") and each such
    compound is *one* word of the vocabulary.

    >>> number_to_words(342)
    'three hundred forty-two'
    >>> number_to_words(1205)
    'one thousand two hundred five'
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 <= n <= 999_999:
        raise ValueError(f"number_to_words needs an integer in 0..999999, got {n!r}")
    thousands, rest = divmod(int(n), 1000)
    if not thousands:
        return _below_1000(rest)
    return f"{_below_1000(thousands)} thousand" + (f" {_below_1000(rest)}" if rest else "")


_NUMBER_WORDS = (
    _ONES
    + [_below_100(n) for n in range(20, 100)]  # twenty, twenty-one, ..., ninety-nine
    + ["hundred", "thousand"]
)


def numbers_task() -> Task:
    """``numbers``: English number words -> digits, 0..999999.

    Source: word level over 102 words (zero..nineteen, twenty..ninety, the 72 hyphenated
    compounds twenty-one..ninety-nine, hundred, thousand). Target: char level over the digits.

    Numbers are drawn by first choosing how many digits (1-6, uniform) and then a number with
    that many digits, so small numbers are as common as large ones (uniform over 0..999999
    would make 90% of them six-digit numbers).
    """
    digits_lo = np.array([0, 10, 100, 1_000, 10_000, 100_000])
    digits_hi = np.array([10, 100, 1_000, 10_000, 100_000, 1_000_000])

    def generate(n: int, rng: np.random.Generator) -> list[Pair]:
        k = rng.integers(0, 6, size=n)
        values = rng.integers(digits_lo[k], digits_hi[k])
        return [(number_to_words(v), str(v)) for v in values.tolist()]

    longest_below_1000 = max(len(_below_1000(n).split()) for n in range(1000))  # 3
    return Task(
        name="numbers",
        description=(
            "English number words to digits, 0..999999 (American style, no 'and', hyphenated "
            "21-99 as single words); e.g. 'three hundred forty-two' -> '342', "
            "'one thousand two hundred five' -> '1205'"
        ),
        src_vocab=Vocab(_NUMBER_WORDS, level="word"),
        tgt_vocab=Vocab("0123456789", level="char"),
        max_src_len=2 * longest_below_1000 + 1 + 1,  # "... thousand ..." + <eos>
        max_tgt_len=6 + 2,
        generate=generate,
        n_sources=1_000_000,
        stratum=lambda pair: _digits_stratum(pair),
        heldout_capacity=sum(_digits_stratum(("", "9" * d))[1] // 2 for d in range(1, 7)),
    )
