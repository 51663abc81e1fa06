"""BERT's WordPiece tokenizer, written from scratch: text in, integer ids out (and back).

A Transformer never sees text, only integer ids into an embedding table. The tokenizer is the
function that maps a string to those ids, and for a pretrained model it must reproduce *exactly*
the mapping the model was trained with: one character treated differently and the model reads
a word it has never seen. This module re-implements the tokenizer of BERT (and of every model
built on its vocabulary, such as MiniLM / all-MiniLM-L6-v2) and is tested id-for-id against the
Hugging Face implementations.

The pipeline has four stages; each is a small method of :class:`WordPieceTokenizer`.

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

Stages 2 and 3 (and the character classes they use) are in :mod:`nanotf.text.unicode`, with the
cases where this tokenizer follows one Hugging Face implementation rather than the other.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from . import unicode
from .padding import pad_sequences
from .wordpiece_vocab import WordPieceVocab, _check_str, check_vocab, load_vocab

__all__ = ["WordPieceTokenizer"]


class WordPieceTokenizer(WordPieceVocab):
    """BERT's uncased (or cased) WordPiece tokenizer over a given vocabulary.

    The token <-> id look-ups (``vocab``, ``convert_tokens_to_ids``, ``pad_token_id``, ...) come
    from :class:`~nanotf.text.wordpiece_vocab.WordPieceVocab`.

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
        check_vocab(vocab)
        if not isinstance(max_length, int) or max_length < 1:
            raise ValueError(f"max_length must be a positive int, got {max_length!r}")
        if max_input_chars_per_word < 1:
            raise ValueError(
                f"max_input_chars_per_word must be positive, got {max_input_chars_per_word!r}"
            )
        super().__init__(
            vocab,
            unk_token=unk_token,
            cls_token=cls_token,
            sep_token=sep_token,
            pad_token=pad_token,
            mask_token=mask_token,
        )
        self.lowercase = lowercase
        self.strip_accents = lowercase if strip_accents is None else strip_accents
        self.tokenize_chinese_chars = tokenize_chinese_chars
        self.max_length = max_length
        self.max_input_chars_per_word = max_input_chars_per_word
        self.continuing_subword_prefix = continuing_subword_prefix

        extra = list(never_split or ())
        unknown = [t for t in extra if t not in self.vocab]
        if unknown:
            raise ValueError(f"never_split tokens not in the vocabulary: {unknown!r}")
        self.never_split: tuple[str, ...] = tuple(dict.fromkeys([*self.special_tokens, *extra]))
        # One regular expression that finds any never-split token. Longer tokens come first so
        # that the leftmost match is also the longest one (like Hugging Face's Aho-Corasick).
        alternatives = sorted(self.never_split, key=len, reverse=True)
        self._never_split_re = re.compile("(" + "|".join(map(re.escape, alternatives)) + ")")
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
        """Clean, space out CJK, strip accents and lower-case (in that order), as this
        tokenizer is configured to; see :func:`nanotf.text.unicode.normalize`."""
        return unicode.normalize(
            text,
            lowercase=self.lowercase,
            strip_accents=self.strip_accents,
            tokenize_chinese_chars=self.tokenize_chinese_chars,
        )

    # -- stage 3: pre-tokenisation --------------------------------------------------------------

    @staticmethod
    def pre_tokenize(text: str) -> list[str]:
        """Split normalised text into words: at whitespace, and around every punctuation mark.

        >>> WordPieceTokenizer.pre_tokenize("hello, world...  ok")
        ['hello', ',', 'world', '.', '.', '.', 'ok']
        """
        return unicode.pre_tokenize(text)

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

        input_ids, real = pad_sequences(rows, self.pad_token_id, width)
        attention_mask = real.astype(np.int64)
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
