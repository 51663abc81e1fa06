"""BERT's WordPiece tokenizer, written from scratch: text in, integer ids out (and back).

A Transformer never sees text, only integer ids into an embedding table. The tokenizer is the
function that maps a string to those ids, and for a pretrained model it must reproduce *exactly*
the mapping the model was trained with: one character treated differently and the model reads
a word it has never seen. This module re-implements the tokenizer of BERT (and of every model
built on its vocabulary, such as MiniLM / all-MiniLM-L6-v2) and is tested id-for-id against the
Hugging Face implementations.

The pipeline has four stages; each is a small function below.

1. **Special tokens are cut out first.** ``"[MASK]"`` written in the text is the mask token, not
   the five characters ``[``, ``mask``, ``]``. The raw text is split around exact, case-sensitive
   occurrences of the special tokens; those pieces skip the remaining stages.

2. **Normalisation** (``normalize``), in this order, exactly like Hugging Face's
   ``BertNormalizer``:

   a. *clean text*: drop NUL, U+FFFD (the "replacement character" left behind by broken
      decoding) and every control, format and private-use character (Unicode categories
      ``Cc``, ``Cf``, ``Co``), but keep tab, newline and carriage return, which are whitespace,
      and turn every whitespace character into a plain space;
   b. *CJK characters*: put a space on both sides of every CJK ideograph, so each Chinese
      character becomes its own word (Chinese is not written with spaces);
   c. *strip accents*: decompose (Unicode NFD: ``"é"`` becomes ``"e"`` + U+0301 COMBINING ACUTE
      ACCENT) and drop the non-spacing marks (category ``Mn``), so ``"é"`` becomes ``"e"``;
   d. *lower-case*, one character at a time.

3. **Pre-tokenisation** (``pre_tokenize``): split on whitespace, and cut every punctuation
   character out as a word of its own (``"don't!"`` becomes ``don``, ``'``, ``t``, ``!``).

4. **WordPiece** (``wordpiece``): each word is cut into vocabulary pieces, greedily taking the
   longest piece that starts where the previous one ended. A piece that does not start a word
   carries the prefix ``##`` (``"tokenization"`` becomes ``token``, ``##ization``). A word that
   cannot be cut this way, or that is longer than 100 characters, becomes ``[UNK]``.

Finally ``encode`` turns the pieces into ids and wraps them as ``[CLS] ... [SEP]``; calling the
tokenizer on a list of strings pads a batch into rectangular arrays with an attention mask.

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

import os
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "WordPieceTokenizer",
    "load_vocab",
    "is_chinese_char",
    "is_control",
    "is_punctuation",
    "is_whitespace",
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

#: The special tokens every BERT vocabulary must contain, by role.
SPECIAL_TOKEN_ROLES = ("pad_token", "unk_token", "cls_token", "sep_token", "mask_token")


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
# The tokenizer
# ----------------------------------------------------------------------------------------------


class WordPieceTokenizer:
    """BERT's uncased (or cased) WordPiece tokenizer over a given vocabulary.

    Args:
        vocab: token -> id. Usually read from a ``vocab.txt`` with :meth:`from_file`, where the
            id of a token is its line number.
        lowercase: lower-case the text (``True`` for "uncased" models).
        strip_accents: remove accents (NFD + drop non-spacing marks). ``None`` means "same as
            ``lowercase``", as in Hugging Face and the original BERT.
        tokenize_chinese_chars: make every CJK ideograph a word of its own.
        max_length: the longest sequence the model accepts, special tokens included; the
            default for truncation.
        max_input_chars_per_word: longer words become ``[UNK]`` without being cut.
        continuing_subword_prefix: the mark of a piece that continues a word.
        unk_token, cls_token, sep_token, pad_token, mask_token: the special tokens; all must be
            in ``vocab``.
        never_split: more tokens (in ``vocab``) to match verbatim in the text, like the special
            tokens.

    Example::

        tok = WordPieceTokenizer.from_file("vocab.txt")
        tok.tokenize("Tokenization is fun!")   # ['token', '##ization', 'is', 'fun', '!']
        batch = tok(["a short one", "and a longer sentence"])
        batch["input_ids"].shape               # (2, 6)
    """

    def __init__(
        self,
        vocab: Mapping[str, int],
        *,
        lowercase: bool = True,
        strip_accents: bool | None = None,
        tokenize_chinese_chars: bool = True,
        max_length: int = 512,
        max_input_chars_per_word: int = 100,
        continuing_subword_prefix: str = "##",
        unk_token: str = "[UNK]",
        cls_token: str = "[CLS]",
        sep_token: str = "[SEP]",
        pad_token: str = "[PAD]",
        mask_token: str = "[MASK]",
        never_split: Iterable[str] | None = None,
    ) -> None:
        if not isinstance(vocab, Mapping):
            raise TypeError(f"vocab must be a mapping token -> id, got {type(vocab).__name__}")
        if not vocab:
            raise ValueError("vocab is empty")
        if not isinstance(max_length, int) or max_length < 1:
            raise ValueError(f"max_length must be a positive int, got {max_length!r}")
        if max_input_chars_per_word < 1:
            raise ValueError(
                f"max_input_chars_per_word must be positive, got {max_input_chars_per_word!r}"
            )
        self.vocab: dict[str, int] = dict(vocab)
        self.ids_to_tokens: dict[int, str] = {}
        for token, index in self.vocab.items():
            self.ids_to_tokens.setdefault(int(index), token)

        self.lowercase = lowercase
        self.strip_accents = lowercase if strip_accents is None else strip_accents
        self.tokenize_chinese_chars = tokenize_chinese_chars
        self.max_length = max_length
        self.max_input_chars_per_word = max_input_chars_per_word
        self.continuing_subword_prefix = continuing_subword_prefix

        self.unk_token, self.cls_token, self.sep_token = unk_token, cls_token, sep_token
        self.pad_token, self.mask_token = pad_token, mask_token
        special = {role: getattr(self, role) for role in SPECIAL_TOKEN_ROLES}
        missing = [f"{role}={tok!r}" for role, tok in special.items() if tok not in self.vocab]
        if missing:
            raise ValueError(
                "the vocabulary lacks the special token(s) "
                + ", ".join(missing)
                + "; a BERT vocabulary must contain all of "
                + ", ".join(repr(t) for t in special.values())
            )
        extra = list(never_split or ())
        unknown = [t for t in extra if t not in self.vocab]
        if unknown:
            raise ValueError(f"never_split tokens not in the vocabulary: {unknown!r}")
        self.special_tokens: tuple[str, ...] = tuple(dict.fromkeys([*special.values()]))
        self.never_split: tuple[str, ...] = tuple(dict.fromkeys([*self.special_tokens, *extra]))
        # One regular expression that finds any never-split token. Longer tokens come first so
        # that the leftmost match is also the longest one (like Hugging Face's Aho-Corasick).
        alternatives = sorted(self.never_split, key=len, reverse=True)
        self._never_split_re = re.compile("(" + "|".join(map(re.escape, alternatives)) + ")")
        self._special_ids = frozenset(self.vocab[t] for t in self.special_tokens)
        # No vocabulary piece is longer than this, so WordPiece need not try longer substrings.
        self._max_piece_chars = max(len(t) for t in self.vocab)

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def from_file(
        cls,
        vocab_path: str | os.PathLike[str],
        lowercase: bool = True,
        strip_accents: bool | None = None,
        max_length: int = 512,
        **kwargs: Any,
    ) -> WordPieceTokenizer:
        """Read a BERT ``vocab.txt`` (one token per line; the line number, from 0, is the id).

        ``vocab_path`` may also be a model directory that contains ``vocab.txt``. Other keyword
        arguments go to the constructor.
        """
        path = os.fspath(vocab_path)
        if os.path.isdir(path):
            path = os.path.join(path, "vocab.txt")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"WordPiece vocab file not found: {path!r}")
        return cls(
            load_vocab(path),
            lowercase=lowercase,
            strip_accents=strip_accents,
            max_length=max_length,
            **kwargs,
        )

    # -- vocabulary -----------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """The number of ids (the size of the model's embedding table)."""
        return max(len(self.vocab), max(self.ids_to_tokens) + 1)

    def __len__(self) -> int:
        return self.vocab_size

    @property
    def pad_token_id(self) -> int:
        return self.vocab[self.pad_token]

    @property
    def unk_token_id(self) -> int:
        return self.vocab[self.unk_token]

    @property
    def cls_token_id(self) -> int:
        return self.vocab[self.cls_token]

    @property
    def sep_token_id(self) -> int:
        return self.vocab[self.sep_token]

    @property
    def mask_token_id(self) -> int:
        return self.vocab[self.mask_token]

    def get_vocab(self) -> dict[str, int]:
        """A copy of the token -> id mapping."""
        return dict(self.vocab)

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | list[int]:
        """Look tokens up; a token not in the vocabulary gets the ``[UNK]`` id."""
        if isinstance(tokens, str):
            return self.vocab.get(tokens, self.unk_token_id)
        if not isinstance(tokens, Sequence):
            raise TypeError(
                f"tokens must be a str or a sequence of str, got {type(tokens).__name__}"
            )
        return [self.vocab.get(_check_str(t, "token"), self.unk_token_id) for t in tokens]

    def convert_ids_to_tokens(self, ids: int | Sequence[int]) -> str | list[str]:
        """Look ids up; an id outside the vocabulary is an error."""
        if isinstance(ids, (int, np.integer)):
            return self._id_to_token(int(ids))
        if not isinstance(ids, (Sequence, np.ndarray)):
            raise TypeError(f"ids must be an int or a sequence of int, got {type(ids).__name__}")
        return [self._id_to_token(int(i)) for i in ids]

    def _id_to_token(self, index: int) -> str:
        try:
            return self.ids_to_tokens[index]
        except KeyError:
            raise ValueError(
                f"token id {index} is not in the vocabulary (ids run 0..{self.vocab_size - 1})"
            ) from None

    # -- stage 1: special tokens ----------------------------------------------------------------

    def split_on_special_tokens(self, text: str) -> list[tuple[str, bool]]:
        """Cut the raw text around verbatim special tokens: ``[(piece, is_special), ...]``.

        This runs before any normalisation, so only the exact spelling counts: ``"[MASK]"`` is
        the mask token, ``"[mask]"`` is ordinary text (it becomes ``[``, ``mask``, ``]``).
        """
        pieces = self._never_split_re.split(text)
        # re.split with one capturing group alternates: text, token, text, token, ..., text.
        return [(p, i % 2 == 1) for i, p in enumerate(pieces) if p]

    # -- stage 2: normalisation -----------------------------------------------------------------

    def normalize(self, text: str) -> str:
        """Clean, space out CJK, strip accents and lower-case (in that order); see module doc.

        Steps a, b and d work character by character, so each is a ``str.translate`` over a
        table that classifies every distinct character once (see ``_CharTable``). Step c needs
        the whole string: NFD may reorder a run of combining marks.
        """
        # a. clean: delete NUL, U+FFFD and control/format characters; whitespace -> " ".
        text = text.translate(_CLEAN)
        # b. a space on each side of every CJK ideograph.
        if self.tokenize_chinese_chars:
            text = text.translate(_SPACE_CJK)
        # c. accents: NFD splits "é" into "e" + U+0301; the marks (category Mn) are dropped.
        if self.strip_accents:
            text = unicodedata.normalize("NFD", text).translate(_DROP_NONSPACING_MARKS)
        # d. lower-case each character on its own (no Greek final-sigma rule; see module doc).
        if self.lowercase:
            text = text.translate(_LOWER)
        return text

    # -- stage 3: pre-tokenisation --------------------------------------------------------------

    @staticmethod
    def pre_tokenize(text: str) -> list[str]:
        """Split normalised text into words: at whitespace, and around every punctuation mark.

        Every whitespace character becomes a space and every punctuation mark gets a space on
        each side; then the text is split at spaces.

        >>> WordPieceTokenizer.pre_tokenize("hello, world...  ok")
        ['hello', ',', 'world', '.', '.', '.', 'ok']
        """
        return [word for word in text.translate(_SPLIT).split(" ") if word]

    # -- stage 4: WordPiece ---------------------------------------------------------------------

    def wordpiece(self, word: str) -> list[str]:
        """Cut one word into vocabulary pieces, greedy longest-match-first.

        Start at the first character and take the longest prefix of the rest of the word that
        is in the vocabulary (spelled ``##piece`` unless it starts the word); move past it and
        repeat. If at some position no piece at all matches, the *whole word* becomes
        ``[UNK]`` (not just the unmatched part), and so does a word longer than
        ``max_input_chars_per_word``.

        >>> tok.wordpiece("unaffable")   # doctest: +SKIP
        ['una', '##ffa', '##ble']

        Greedy is not optimal (it does not minimise the number of pieces), but it is what the
        vocabulary was built for, and it is fast: one dictionary look-up per candidate. The
        candidates start no longer than the longest vocabulary entry (``_max_piece_chars``),
        since a longer one cannot match; that changes the speed, not the result.
        """
        if len(word) > self.max_input_chars_per_word:
            return [self.unk_token]
        pieces: list[str] = []
        start = 0
        while start < len(word):
            end = min(len(word), start + self._max_piece_chars)
            piece = None
            while start < end:
                candidate = word[start:end]
                if start > 0:
                    candidate = self.continuing_subword_prefix + candidate
                if candidate in self.vocab:
                    piece = candidate
                    break
                end -= 1
            if piece is None:
                return [self.unk_token]
            pieces.append(piece)
            start = end
        return pieces

    # -- text -> tokens -> ids ------------------------------------------------------------------

    def tokenize(self, text: str) -> list[str]:
        """Text -> WordPiece tokens (no ``[CLS]``/``[SEP]`` added; those in the text are kept).

        >>> tok.tokenize("Café naïve, don't!")   # doctest: +SKIP
        ['cafe', 'naive', ',', 'don', "'", 't', '!']
        """
        _check_str(text, "text")
        tokens: list[str] = []
        for piece, is_special in self.split_on_special_tokens(text):
            if is_special:
                tokens.append(piece)
                continue
            for word in self.pre_tokenize(self.normalize(piece)):
                tokens.extend(self.wordpiece(word))
        return tokens

    def encode(
        self,
        text: str,
        add_special_tokens: bool = True,
        max_length: int | None = None,
        truncation: bool | None = None,
    ) -> list[int]:
        """Text -> ids, by default as ``[CLS] tokens... [SEP]``.

        Truncation keeps the special tokens and drops tokens from the end of the text so that
        the whole sequence has at most ``max_length`` ids. As in Hugging Face it cuts pieces,
        not words: ``tokenization`` may lose its ``##ization``. ``truncation=None`` (the default)
        truncates only when ``max_length`` is given; ``True`` truncates to ``max_length`` or,
        if that is not given, to the tokenizer's ``max_length``; ``False`` never truncates.
        """
        unk_id = self.unk_token_id
        ids = [self.vocab.get(token, unk_id) for token in self.tokenize(text)]
        if truncation is None:
            truncation = max_length is not None
        if truncation:
            limit = self._check_max_length(
                self.max_length if max_length is None else max_length, add_special_tokens
            )
            ids = ids[: limit - (2 if add_special_tokens else 0)]
        if add_special_tokens:
            ids = [self.cls_token_id, *ids, self.sep_token_id]
        return ids

    def _check_max_length(self, max_length: int, add_special_tokens: bool) -> int:
        if isinstance(max_length, bool) or not isinstance(max_length, (int, np.integer)):
            raise TypeError(f"max_length must be an int, got {type(max_length).__name__}")
        needed = 2 if add_special_tokens else 1
        if max_length < needed:
            raise ValueError(
                f"max_length={max_length} is too small: "
                + (
                    f"{self.cls_token} and {self.sep_token} alone take 2 positions"
                    if add_special_tokens
                    else "it must be at least 1"
                )
            )
        return int(max_length)

    def __call__(
        self,
        texts: str | Sequence[str],
        padding: bool | str = True,
        truncation: bool = True,
        max_length: int | None = None,
    ) -> dict[str, np.ndarray]:
        """Encode a batch into rectangular int64 arrays of shape ``(batch, length)``.

        Returns ``input_ids`` (``[CLS] ... [SEP]`` then ``[PAD]``), ``attention_mask`` (1 on
        real tokens, 0 on padding: attention must ignore the padding) and ``token_type_ids``
        (all 0: a single segment).

        Args:
            texts: the strings (one string is a batch of one).
            padding: ``True`` / ``"longest"`` pads to the longest sequence of the batch,
                ``"max_length"`` pads to ``max_length``; ``False`` requires equal lengths.
            truncation: cut sequences longer than ``max_length`` (default: the tokenizer's).
            max_length: the longest allowed sequence, ``[CLS]`` and ``[SEP]`` included.
        """
        if isinstance(texts, str):
            texts = [texts]
        elif not isinstance(texts, Sequence):
            raise TypeError(f"texts must be a str or a list of str, got {type(texts).__name__}")
        if len(texts) == 0:
            raise ValueError("texts is empty: nothing to encode")
        for i, t in enumerate(texts):
            _check_str(t, f"texts[{i}]")
        if padding not in (True, False, "longest", "max_length", "do_not_pad"):
            raise ValueError(
                f"padding must be True, False, 'longest' or 'max_length', got {padding!r}"
            )
        limit = self.max_length if max_length is None else max_length
        limit = self._check_max_length(limit, add_special_tokens=True)
        rows = [self.encode(t, max_length=limit, truncation=truncation) for t in texts]

        if padding == "max_length":
            width = max(limit, max(len(r) for r in rows))
        elif padding in (True, "longest"):
            width = max(len(r) for r in rows)
        else:
            width = len(rows[0])
            if any(len(r) != width for r in rows):
                raise ValueError(
                    "sequences have different lengths "
                    f"({sorted({len(r) for r in rows})}) and padding=False; "
                    "use padding=True to pad them"
                )

        input_ids = np.full((len(rows), width), self.pad_token_id, dtype=np.int64)
        attention_mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            input_ids[i, : len(row)] = row
            attention_mask[i, : len(row)] = 1
        token_type_ids = np.zeros((len(rows), width), dtype=np.int64)
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "token_type_ids": token_type_ids,
        }

    # -- ids -> text ----------------------------------------------------------------------------

    def decode(self, ids: Sequence[int] | np.ndarray, skip_special_tokens: bool = True) -> str:
        """Ids -> readable text: the inverse of ``encode`` up to normalisation.

        This is Hugging Face's WordPiece decoder. Special tokens are dropped (by default); a
        ``##`` piece is glued to the one before it, every other piece after the first gets a
        space in front; then each piece on its own goes through a clean-up that removes the
        space before ``.``, ``?``, ``!`` and ``,``. The clean-up also has rules for English
        clitics (``" n't"``, ``" 's"``...), but they never fire with a BERT vocabulary, where
        ``'`` is a piece of its own: ``"it's"`` decodes to ``"it ' s"``, as in Hugging Face.

        Normalisation cannot be undone: ``decode(encode("Café 3.14!"))`` is ``"cafe 3. 14!"``.
        """
        arr = np.asarray(ids)
        if arr.ndim != 1:
            raise ValueError(f"decode takes a 1-D sequence of ids, got shape {arr.shape}")
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"decode takes integer ids, got dtype {arr.dtype}")
        tokens = self.convert_ids_to_tokens([int(i) for i in arr])
        assert isinstance(tokens, list)
        if skip_special_tokens:
            tokens = [t for t in tokens if t not in self.special_tokens]
        prefix = self.continuing_subword_prefix
        out: list[str] = []
        for i, token in enumerate(tokens):
            if i > 0:
                token = token[len(prefix) :] if token.startswith(prefix) else " " + token
            out.append(_cleanup(token))
        return "".join(out)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(vocab_size={self.vocab_size}, lowercase={self.lowercase}, "
            f"strip_accents={self.strip_accents}, max_length={self.max_length})"
        )


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def load_vocab(path: str | os.PathLike[str]) -> dict[str, int]:
    """Read a ``vocab.txt``: token on line ``i`` (from 0) gets id ``i``."""
    vocab: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for index, line in enumerate(f):
            vocab[line.rstrip("\n")] = index
    return vocab


_CLEANUP = (
    (" .", "."),
    (" ?", "?"),
    (" !", "!"),
    (" ,", ","),
    (" ' ", "'"),
    (" n't", "n't"),
    (" 'm", "'m"),
    (" do not", " don't"),
    (" 's", "'s"),
    (" 've", "'ve"),
    (" 're", "'re"),
)


def _cleanup(text: str) -> str:
    """Hugging Face's decoder clean-up of one piece (with the space decoding put before it)."""
    for dirty, clean in _CLEANUP:
        text = text.replace(dirty, clean)
    return text


def _check_str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {type(value).__name__}: {value!r:.60}")
    return value
