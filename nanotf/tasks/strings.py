"""The string tasks ``copy``, ``reverse`` and ``sort``: random strings over an alphabet.

All three draw the same strings (length uniform, then characters uniform); they differ only
in the target: the string itself, backwards, or its characters in alphabet order.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..text.vocab import Vocab
from .base import Pair, Task

__all__ = ["DEFAULT_ALPHABET", "MAX_STRING_LEN", "copy_task", "reverse_task", "sort_task"]

DEFAULT_ALPHABET = "abcdefghij"
#: The longest strings copy/reverse/sort make. Attention costs memory ∝ length²: a batch of 64
#: strings of 256 symbols already holds ~70 MB per attention map.
MAX_STRING_LEN = 256


def _string_task(
    name: str,
    transform: Callable[[str], str],
    what: str,
    alphabet: str,
    min_len: int,
    max_len: int,
) -> Task:
    if not isinstance(alphabet, str) or len(set(alphabet)) != len(alphabet) or not alphabet:
        raise ValueError(
            f"alphabet must be a non-empty string of distinct characters, got {alphabet!r}"
        )
    if not (isinstance(min_len, int) and isinstance(max_len, int) and 1 <= min_len <= max_len):
        raise ValueError(f"need integers 1 <= min_len <= max_len, got {min_len}, {max_len}")
    if max_len > MAX_STRING_LEN:
        raise ValueError(f"max_len must be at most {MAX_STRING_LEN}, got {max_len}")
    letters = np.array(list(alphabet))

    def generate(n: int, rng: np.random.Generator) -> list[Pair]:
        lengths = rng.integers(min_len, max_len + 1, size=n)
        chars = letters[rng.integers(0, len(alphabet), size=(n, max_len))]
        srcs = ["".join(row[:k]) for row, k in zip(chars.tolist(), lengths.tolist(), strict=True)]
        return [(s, transform(s)) for s in srcs]

    vocab = Vocab(alphabet, level="char")
    example = "cabjj" if set("abcj") <= set(alphabet) else alphabet[::-1][:max_len]
    return Task(
        name=name,
        description=(
            f"{what}: random strings over {alphabet!r}, {min_len}-{max_len} characters "
            f"(length uniform, then characters uniform); e.g. {example!r} -> "
            f"{transform(example)!r}"
        ),
        src_vocab=vocab,
        tgt_vocab=vocab,
        max_src_len=max_len + 1,
        max_tgt_len=max_len + 2,
        generate=generate,
        n_sources=sum(len(alphabet) ** k for k in range(min_len, max_len + 1)),
        stratum=lambda pair: (len(pair[0]), len(alphabet) ** len(pair[0])),
        heldout_capacity=sum(len(alphabet) ** k // 2 for k in range(min_len, max_len + 1)),
    )


def copy_task(alphabet: str = DEFAULT_ALPHABET, min_len: int = 1, max_len: int = 10) -> Task:
    """``copy``: the target is the source. The simplest test that attention can point."""
    return _string_task("copy", lambda s: s, "copy the string", alphabet, min_len, max_len)


def reverse_task(alphabet: str = DEFAULT_ALPHABET, min_len: int = 1, max_len: int = 10) -> Task:
    """``reverse``: the target is the source backwards (output step t looks at input n-1-t)."""
    return _string_task(
        "reverse", lambda s: s[::-1], "reverse the string", alphabet, min_len, max_len
    )


def sort_task(alphabet: str = DEFAULT_ALPHABET, min_len: int = 1, max_len: int = 10) -> Task:
    """``sort``: the target is the source's characters in alphabet order (counting, not
    pointing: the attention must find the smallest remaining characters)."""
    order = {c: i for i, c in enumerate(alphabet)}
    return _string_task(
        "sort",
        lambda s: "".join(sorted(s, key=order.__getitem__)),
        "sort the characters (in alphabet order)",
        alphabet,
        min_len,
        max_len,
    )
