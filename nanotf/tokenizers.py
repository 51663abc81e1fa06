"""BERT's WordPiece tokenizer: the public names, in one place.

The code lives in :mod:`nanotf.text`: :mod:`~nanotf.text.wordpiece` (the tokenizer and its four
stages), :mod:`~nanotf.text.wordpiece_vocab` (``vocab.txt`` and the token <-> id tables) and
:mod:`~nanotf.text.unicode` (character classes and normalisation). This module re-exports what
``from nanotf.tokenizers import ...`` has always given.
"""

from __future__ import annotations

from .text.unicode import is_chinese_char, is_control, is_punctuation, is_whitespace
from .text.wordpiece import WordPieceTokenizer
from .text.wordpiece_vocab import SPECIAL_TOKEN_ROLES, load_vocab

__all__ = [
    "SPECIAL_TOKEN_ROLES",
    "WordPieceTokenizer",
    "load_vocab",
    "is_chinese_char",
    "is_control",
    "is_punctuation",
    "is_whitespace",
]
