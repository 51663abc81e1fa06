"""Text: turning strings into integer ids and back.

=====================  =========================================================================
``specials``           the special token ids of nanotf's own vocabularies (``PAD_ID`` ...)
``vocab``              :class:`Vocab`, the char- or word-level vocabulary of the toy tasks
``padding``            :func:`pad_sequences`: ragged id lists -> a padded array and its mask
``unicode``            character classes and BERT's normalisation and pre-tokenisation
``wordpiece_vocab``    a BERT ``vocab.txt``: token <-> id tables and special tokens
``wordpiece``          :class:`WordPieceTokenizer`, BERT's tokenizer, from scratch
=====================  =========================================================================
"""

from .padding import pad_sequences
from .specials import BOS_ID, EOS_ID, PAD_ID, SPECIAL_TOKENS, UNK_ID
from .unicode import is_chinese_char, is_control, is_punctuation, is_whitespace
from .vocab import Vocab
from .wordpiece import WordPieceTokenizer
from .wordpiece_vocab import SPECIAL_TOKEN_ROLES, WordPieceVocab, load_vocab

__all__ = [
    "BOS_ID",
    "EOS_ID",
    "PAD_ID",
    "SPECIAL_TOKENS",
    "SPECIAL_TOKEN_ROLES",
    "UNK_ID",
    "Vocab",
    "WordPieceTokenizer",
    "WordPieceVocab",
    "is_chinese_char",
    "is_control",
    "is_punctuation",
    "is_whitespace",
    "load_vocab",
    "pad_sequences",
]
