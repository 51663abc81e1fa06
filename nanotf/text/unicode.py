"""Unicode character classes and the text normalisation of BERT's tokenizer.

Stages 2 and 3 of the WordPiece pipeline (:mod:`nanotf.text.wordpiece`) work on characters:

* :func:`normalize` cleans the text (drops control characters, whitespace -> space), puts
  spaces around CJK ideographs, strips accents and lower-cases, exactly like Hugging Face's
  ``BertNormalizer``;
* :func:`pre_tokenize` splits the normalised text into words at whitespace and around every
  punctuation character.

Where the two Hugging Face implementations disagree with each other (the Rust "fast" tokenizer
that ``AutoTokenizer`` returns, and the legacy pure-Python ``BertTokenizerLegacy``), this module
follows the fast one, because that is what users of these models run. The known cases:

* capital sigma: the fast tokenizer lower-cases character by character, so ``"ΟΔΟΣ"`` becomes
  ``"οδοσ"``; Python's ``str.lower`` on the whole word applies the Greek final-sigma rule and
  gives ``"οδος"``, which the legacy tokenizer uses (different ids);
* unassigned code points (category ``Cn``): the legacy tokenizer deletes them with the control
  characters; the fast one keeps them, so they end up as (part of) an ``[UNK]``;
* CJK Extension E: the fast tokenizer's table starts that block at U+2B920 where the original
  BERT code (and the legacy tokenizer) start it at U+2B820, so U+2B820..U+2B91F are *not*
  isolated;
* the legacy tokenizer re-composes the text (NFC) before splitting; the fast one does not. With
  accents stripped (all uncased models) this changes nothing, since NFD undoes it.

One difference cannot be followed: the fast tokenizer classifies characters (punctuation,
non-spacing mark, format) with Unicode 8.0 tables, older than the ones in Python's
``unicodedata``, so about 500 characters added to Unicode since 2015, or re-categorised, are
treated differently. This module uses ``unicodedata``, as the original BERT code does; on those
characters it agrees with the legacy tokenizer.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable

__all__ = [
    "is_chinese_char",
    "is_control",
    "is_punctuation",
    "is_whitespace",
    "normalize",
    "pre_tokenize",
]

# The Unicode White_Space property (what Rust's ``char::is_whitespace`` tests). Tab, newline and
# carriage return are control characters by category, but BERT treats them as whitespace.
_WHITESPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)

# The CJK ideograph blocks that get a space on each side. These are the ranges of the Hugging
# Face fast tokenizer; note Extension E starts at U+2B920 there, where the original BERT code
# says U+2B820 (see the module docstring).
_CJK_RANGES = (
    (0x4E00, 0x9FFF),  # CJK Unified Ideographs
    (0x3400, 0x4DBF),  # Extension A
    (0x20000, 0x2A6DF),  # Extension B
    (0x2A700, 0x2B73F),  # Extension C
    (0x2B740, 0x2B81F),  # Extension D
    (0x2B920, 0x2CEAF),  # Extension E (as the fast tokenizer has it)
    (0xF900, 0xFAFF),  # CJK Compatibility Ideographs
    (0x2F800, 0x2FA1F),  # CJK Compatibility Ideographs Supplement
)

# What the cleaning step deletes (besides NUL and U+FFFD); see ``is_control``.
_CONTROL_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs"})


# ----------------------------------------------------------------------------------------------
# Character classes
# ----------------------------------------------------------------------------------------------


def is_whitespace(char: str) -> bool:
    """True for the characters BERT splits words on: Unicode White_Space, tab/newline included."""
    return char in _WHITESPACE


def is_control(char: str) -> bool:
    """True for characters the cleaning step deletes: control, format and private-use ones.

    That is Unicode categories ``Cc`` (control: NUL, escape, DEL...), ``Cf`` (format: zero-width
    space and joiners, the byte-order mark, soft hyphen...) and ``Co`` (private use), plus the
    lone surrogates (``Cs``) a Python string can hold. Tab, newline and carriage return are
    ``Cc`` too, but they are whitespace instead.

    *Unassigned* code points (``Cn``) are kept, as the Hugging Face fast tokenizer keeps them
    (they end up as ``[UNK]``); the original BERT code deleted them (see the module docstring).
    """
    if char in "\t\n\r":
        return False
    return unicodedata.category(char) in _CONTROL_CATEGORIES


def is_punctuation(char: str) -> bool:
    """True for characters that always form a word of their own.

    All non-alphanumeric printable ASCII counts (``$``, ``+``, ``^``, the backquote... are
    symbols, not punctuation, for Unicode, but BERT splits them off anyway), plus every
    character whose Unicode category starts with ``P`` (``«``, ``¿``, ``。``, ``…``, dashes,
    quotes...).
    """
    cp = ord(char)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def is_chinese_char(char: str) -> bool:
    """True for a CJK ideograph (Chinese characters, also used in Japanese and Korean).

    Japanese kana and Korean Hangul are *not* included: they are written in words and are
    tokenized like any other script.
    """
    cp = ord(char)
    return any(lo <= cp <= hi for lo, hi in _CJK_RANGES)


class _CharTable(dict[int, str]):
    """A ``str.translate`` table that computes ``fn(char)`` the first time it meets ``char``.

    ``text.translate(table)`` replaces each character ``c`` by ``table[ord(c)]``, in C. Filling
    the table lazily (``__missing__``) means the Python classification functions above run once
    per distinct character instead of once per character of text. The table stops growing at
    ``limit`` entries, so arbitrary input cannot make it use unbounded memory.
    """

    def __init__(self, fn: Callable[[str], str], limit: int = 1 << 16) -> None:
        super().__init__()
        self.fn = fn
        self.limit = limit

    def __missing__(self, code_point: int) -> str:
        out = self.fn(chr(code_point))
        if len(self) < self.limit:
            self[code_point] = out
        return out


def _clean_char(char: str) -> str:
    if char == "\x00" or char == "\ufffd" or is_control(char):
        return ""
    return " " if is_whitespace(char) else char


_CLEAN = _CharTable(_clean_char)
_SPACE_CJK = _CharTable(lambda c: f" {c} " if is_chinese_char(c) else c)
_DROP_NONSPACING_MARKS = _CharTable(lambda c: "" if unicodedata.category(c) == "Mn" else c)
_LOWER = _CharTable(str.lower)
_SPLIT = _CharTable(lambda c: " " if is_whitespace(c) else f" {c} " if is_punctuation(c) else c)


# ----------------------------------------------------------------------------------------------
# Normalisation and pre-tokenisation
# ----------------------------------------------------------------------------------------------


def normalize(
    text: str, *, lowercase: bool, strip_accents: bool, tokenize_chinese_chars: bool
) -> str:
    """Clean, space out CJK, strip accents and lower-case (in that order); see module doc.

    Steps a, b and d work character by character, so each is a ``str.translate`` over a
    table that classifies every distinct character once (see ``_CharTable``). Step c needs
    the whole string: NFD may reorder a run of combining marks.
    """
    # a. clean: delete NUL, U+FFFD and control/format characters; whitespace -> " ".
    text = text.translate(_CLEAN)
    # b. a space on each side of every CJK ideograph.
    if tokenize_chinese_chars:
        text = text.translate(_SPACE_CJK)
    # c. accents: NFD splits "é" into "e" + U+0301; the marks (category Mn) are dropped.
    if strip_accents:
        text = unicodedata.normalize("NFD", text).translate(_DROP_NONSPACING_MARKS)
    # d. lower-case each character on its own (no Greek final-sigma rule; see module doc).
    if lowercase:
        text = text.translate(_LOWER)
    return text


def pre_tokenize(text: str) -> list[str]:
    """Split normalised text into words: at whitespace, and around every punctuation mark.

    Every whitespace character becomes a space and every punctuation mark gets a space on
    each side; then the text is split at spaces.

    >>> pre_tokenize("hello, world...  ok")
    ['hello', ',', 'world', '.', '.', '.', 'ok']
    """
    return [word for word in text.translate(_SPLIT).split(" ") if word]
