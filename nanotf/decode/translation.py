"""Text in, text out: translate a list of texts with greedy decoding or beam search."""

from __future__ import annotations

from collections.abc import Sequence

from ..text.padding import pad_sequences
from ..text.specials import PAD_ID
from ..text.vocab import Vocab
from .beam import beam_search
from .common import Seq2SeqModel, _check_positive_int
from .greedy import greedy_decode


def translate(
    model: Seq2SeqModel,
    texts: Sequence[str],
    src_vocab: Vocab,
    tgt_vocab: Vocab,
    beam_width: int = 1,
    max_len: int | None = None,
    length_penalty: float = 0.6,
    use_cache: bool = True,
) -> list[str]:
    """Text in, text out: encode each source (symbols then ``<eos>``), decode greedily
    (``beam_width=1``) or by beam search, and turn the ids back into text.

    A symbol outside ``src_vocab`` raises a ``ValueError`` naming it and its position.
    ``max_len`` (generated tokens) defaults to what the model's position table allows, and
    may not exceed it (the decoder reads ``<bos>`` and the tokens before the last);
    ``beam_width`` may not exceed the number of target tokens (``len(tgt_vocab)``).
    ``use_cache`` as in :func:`greedy_decode` (same outputs either way).
    """
    if isinstance(texts, str):
        raise TypeError("translate expects a list of texts; wrap a single text in a list")
    texts = list(texts)
    limit = getattr(model, "max_len", None)
    _check_positive_int("beam_width", beam_width, type_only=True)  # its range comes next
    if not 1 <= beam_width <= len(tgt_vocab):
        raise ValueError(
            f"beam_width must be in [1, {len(tgt_vocab)}] (a beam holds at most as many "
            f"hypotheses as the target vocabulary has tokens), got {beam_width}"
        )
    if max_len is not None:
        _check_positive_int("max_len", max_len)
        if limit is not None and max_len > limit:
            raise ValueError(
                f"max_len must be in [1, {limit}] (this model's position table has {limit} "
                f"positions), got {max_len}"
            )
    if not texts:
        return []
    ids = [src_vocab.encode(t, add_eos=True) for t in texts]
    longest = max(len(s) for s in ids)
    if limit is not None and longest > limit:
        raise ValueError(
            f"an input of {longest - 1} symbols (+ <eos>) is longer than this model's position "
            f"table allows ({limit} positions)"
        )
    if max_len is None:
        max_len = (limit - 1) if limit is not None else 2 * longest + 10
    src, src_mask = pad_sequences(ids, PAD_ID)
    if beam_width > 1:
        out = beam_search(
            model,
            src,
            src_mask,
            beam_width,
            max_len,
            length_penalty=length_penalty,
            use_cache=use_cache,
        )
    else:
        out = greedy_decode(model, src, src_mask, max_len, use_cache=use_cache)
    return [tgt_vocab.decode(row) for row in out]  # type: ignore[union-attr]
