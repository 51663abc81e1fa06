"""The ``addition`` task: the sum of two non-negative integers, ``"12+34"`` -> ``"46"``."""

from __future__ import annotations

import numpy as np

from ..text.vocab import Vocab
from .base import Pair, Task

__all__ = ["MAX_DIGITS", "addition_task"]

#: The most digits an operand of ``addition`` may have (10**9 * 10**9 pairs already).
MAX_DIGITS = 9


def _count_with_digits(d: int) -> int:
    """How many numbers have exactly ``d`` digits: 10 of one digit (0-9), 9 * 10**(d-1) else."""
    return 10 if d == 1 else 9 * 10 ** (d - 1)


def _n_digits(text: str) -> int:
    return len(text)


def addition_task(max_digits: int = 3) -> Task:
    """``addition``: ``"a+b"`` -> the digits of ``a + b``, operands of 1 to ``max_digits`` digits.

    Each operand is drawn by first choosing its number of digits (uniform over 1..max_digits)
    and then a number with that many digits, so ``7+5`` is as common a shape as ``700+500``
    (uniform over 0..999 would make 90% of the operands three-digit numbers). The answer is
    written most significant digit first, as people write it: the first digit depends on every
    carry, which is what makes the task hard for a model that writes left to right.
    """
    if (
        isinstance(max_digits, bool)
        or not isinstance(max_digits, (int, np.integer))
        or not 1 <= max_digits <= MAX_DIGITS
    ):
        raise ValueError(f"max_digits must be an integer in [1, {MAX_DIGITS}], got {max_digits!r}")
    max_digits = int(max_digits)
    lo = np.array([0] + [10 ** (d - 1) for d in range(2, max_digits + 1)], dtype=np.int64)
    hi = np.array([10**d for d in range(1, max_digits + 1)], dtype=np.int64)

    def generate(n: int, rng: np.random.Generator) -> list[Pair]:
        da = rng.integers(0, max_digits, size=n)
        db = rng.integers(0, max_digits, size=n)
        a = rng.integers(lo[da], hi[da])
        b = rng.integers(lo[db], hi[db])
        return [(f"{x}+{y}", str(x + y)) for x, y in zip(a.tolist(), b.tolist(), strict=True)]

    def stratum(pair: Pair) -> tuple[tuple[int, int], int]:
        left, right = pair[0].split("+")
        da, db = _n_digits(left), _n_digits(right)
        return (da, db), _count_with_digits(da) * _count_with_digits(db)

    counts = [_count_with_digits(d) for d in range(1, max_digits + 1)]
    return Task(
        name="addition",
        description=(
            f"the sum of two integers of 1-{max_digits} digits (digit count uniform, then the "
            "number), most significant digit first; e.g. '12+34' -> '46', '999+1' -> '1000'"
        ),
        src_vocab=Vocab("0123456789+", level="char"),
        tgt_vocab=Vocab("0123456789", level="char"),
        max_src_len=2 * max_digits + 1 + 1,  # a+b <eos>
        max_tgt_len=max_digits + 1 + 2,  # <bos> digits of the sum (one more at most) <eos>
        generate=generate,
        n_sources=sum(counts) ** 2,
        stratum=stratum,
        heldout_capacity=sum(ca * cb // 2 for ca in counts for cb in counts),
    )
