"""The ``dates`` task: a date written out in English -> ISO 8601 (``YYYY-MM-DD``)."""

from __future__ import annotations

import datetime

import numpy as np

from ..text.vocab import Vocab
from .base import Pair, Task

__all__ = ["DATE_FORMATS", "FIRST_DATE", "LAST_DATE", "date_to_text", "dates_task"]

_MONTHS = (
    "january february march april may june july august september october november december"
).split()
_WEEKDAYS = "monday tuesday wednesday thursday friday saturday sunday".split()  # date.weekday()

#: The source formats of the ``dates`` task (all unambiguous: the month is always a word).
DATE_FORMATS: tuple[str, ...] = (
    "{month} {day}, {year}",  # march 5, 1999
    "{day} {month} {year}",  # 5 march 1999
    "{weekday}, {month} {day}, {year}",  # friday, march 5, 1999
)
FIRST_DATE = datetime.date(1900, 1, 1)
LAST_DATE = datetime.date(2099, 12, 31)


def date_to_text(d: datetime.date, style: int) -> str:
    """``d`` written in ``DATE_FORMATS[style]``: lower case, English, day without a leading zero.

    >>> date_to_text(datetime.date(1999, 3, 5), 2)
    'friday, march 5, 1999'
    """
    if not 0 <= style < len(DATE_FORMATS):
        raise ValueError(f"style must be in 0..{len(DATE_FORMATS) - 1}, got {style!r}")
    return DATE_FORMATS[style].format(
        month=_MONTHS[d.month - 1], day=d.day, year=d.year, weekday=_WEEKDAYS[d.weekday()]
    )


def dates_task() -> Task:
    """``dates``: a date written out in English -> ISO 8601 (``YYYY-MM-DD``).

    Dates are uniform over 1900-01-01..2099-12-31 (so only real calendar days: 29 february
    only in leap years, and 1900 is not one), each written in one of three formats chosen
    uniformly (:data:`DATE_FORMATS`)::

        march 5, 1999             -> 1999-03-05
        5 march 1999              -> 1999-03-05
        friday, march 5, 1999     -> 1999-03-05   (the weekday is correct, and redundant)

    The source is char level (letters of the month and weekday names, digits, space, comma),
    so the model must learn to read "march" letter by letter. The target is char level over
    the digits and "-". Splits compare examples by their date, so a held-out day never occurs
    in training in any format.
    """
    first, last = FIRST_DATE.toordinal(), LAST_DATE.toordinal()

    def generate(n: int, rng: np.random.Generator) -> list[Pair]:
        ordinals = rng.integers(first, last + 1, size=n)
        styles = rng.integers(0, len(DATE_FORMATS), size=n)
        out = []
        for o, s in zip(ordinals.tolist(), styles.tolist(), strict=True):
            d = datetime.date.fromordinal(o)
            out.append((date_to_text(d, s), d.isoformat()))
        return out

    src_chars = sorted(set("".join(_MONTHS + _WEEKDAYS)) | set("0123456789 ,"))
    longest = max(
        len(f.format(month="september", day=30, year=1999, weekday="wednesday"))
        for f in DATE_FORMATS
    )  # "wednesday, september 30, 1999": 29 characters
    return Task(
        name="dates",
        description=(
            "dates written out in English to ISO 8601, 1900-2099, three formats; e.g. "
            "'march 5, 1999' / '5 march 1999' / 'friday, march 5, 1999' -> '1999-03-05'"
        ),
        src_vocab=Vocab(src_chars, level="char"),
        tgt_vocab=Vocab("0123456789-", level="char"),
        max_src_len=longest + 1,
        max_tgt_len=10 + 2,
        generate=generate,
        n_sources=last - first + 1,
        dedup_by="target",
    )
