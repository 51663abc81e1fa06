"""Turning a trained encoder–decoder into output sequences: greedy decoding and beam search.

Both work on any model with ``encode(src, src_mask) -> memory`` and
``decode(tgt_in, memory, src_mask, tgt_mask) -> logits (B, T, V)`` (``nanotf.models.
transformer.Transformer``). The source is encoded **once**; then the output grows one token at a
time, starting from ``<bos>``.

How the prefix is handled: by default with a **key/value cache** (``use_cache=True``). The
decoder reads ``<bos>`` once, then at each step only the newest token: every attention layer keeps
the keys and values of the positions already read (``nanotf.nn.DecoderCache``), the cross-
attention keeps the memory's, and the new position's query attends to all of them (causal
masking: an earlier position never sees a later one, so what was computed for it never changes).
A step costs ``O(1)`` decoder positions instead of ``O(t)``. Beam search reorders the cache's
rows to the surviving beams' parents; greedy decoding drops the finished rows from it.

``use_cache=False`` is the reference: **the prefix is recomputed**. At step ``t`` the decoder
runs on the whole prefix ``y_0 .. y_t`` and only the logits of the last position are used,
which is exactly the code training runs (a teacher-forced forward on the decoded output gives
the very same logits, and a test checks it), at ``O(t)`` positions a step and ``O(T²)`` a
sequence. Both paths choose the same tokens; their log-probabilities agree to round-off (the
matrix products have other shapes, so the last bits of a float may differ: ~1e-15 relative in
float64, ~1e-6 in float32), so only an exact near-tie between two tokens could be broken
differently. A model without ``decode_step`` (such as the hand-built models of the tests) is
always decoded by recomputing.

``<pad>`` and ``<bos>`` are never generated (they are not outputs: their log-probabilities are
set to -inf before choosing). Both functions return the generated ids *after* ``<bos>`` as a
host (NumPy) ``int64`` array of shape ``(B, L)``: each row ends with its ``<eos>`` (if it
produced one within ``max_len`` tokens) and is padded with ``pad_id`` after it.
``Vocab.decode`` turns a row into text.

Rows are independent: the result for one source does not depend on the other sources in the
batch or on how much padding they bring (masks keep them apart), so a batch decodes to the same
sequences as each source alone. Rows that are finished are dropped from the batch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple, Protocol

import numpy as np

from .backend import asarray, to_numpy
from .functional import log_softmax_forward
from .nn import DecoderCache
from .text.padding import pad_sequences
from .text.specials import BOS_ID, EOS_ID, PAD_ID
from .text.vocab import Vocab

__all__ = [
    "Seq2SeqModel",
    "beam_search",
    "greedy_decode",
    "length_penalty_factor",
    "sequence_log_prob",
    "translate",
]


class Seq2SeqModel(Protocol):
    """What decoding needs from a model (``Transformer`` has all of it). A model that also has
    ``decode_step(tgt_new, memory, cache, src_mask, tgt_mask)`` (``Transformer.decode_step``) is
    decoded with a key/value cache; without it the prefix is recomputed."""

    training: bool

    def encode(self, src: Any, src_mask: Any) -> Any: ...

    def decode(self, tgt_in: Any, memory: Any, src_mask: Any, tgt_mask: Any) -> Any: ...

    def train(self, mode: bool = True) -> Any: ...


@contextmanager
def _eval_mode(model: Seq2SeqModel) -> Iterator[None]:
    """Dropout off while decoding; the model's previous mode is restored afterwards."""
    was_training = bool(getattr(model, "training", False))
    model.train(False)
    try:
        yield
    finally:
        model.train(was_training)


def _check_inputs(src: Any, src_mask: Any, max_len: int) -> tuple[Any, Any]:
    if getattr(src, "ndim", None) != 2:
        raise ValueError(
            f"src must be a 2-D array of ids (batch, length), got "
            f"{getattr(src, 'shape', type(src).__name__)}"
        )
    if src_mask is None:
        src_mask = to_numpy(src) != PAD_ID
    if tuple(src_mask.shape) != tuple(src.shape):
        raise ValueError(
            f"src_mask must have the shape of src {tuple(src.shape)}, got {tuple(src_mask.shape)}"
        )
    _check_positive_int("max_len", max_len)
    return asarray(src), asarray(src_mask)


def _check_positive_int(name: str, value: object, *, type_only: bool = False) -> None:
    """Raise unless ``value`` is an integer (not a bool) and, unless ``type_only``, ``>= 1``."""
    is_int = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if not is_int or (not type_only and value < 1):  # type: ignore[operator]
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _next_log_probs(
    model: Seq2SeqModel, ys: np.ndarray, memory: Any, src_mask: Any, never: tuple[int, ...]
) -> np.ndarray:
    """Run the decoder on the whole prefix ``ys`` (B, t) and return the host log-probabilities
    of the next token, (B, V) float64, with the tokens ``never`` (``<pad>``, ``<bos>``) set to
    -inf afterwards (not renormalised: scores stay the model's log-probabilities).
    (Recomputes the prefix: no key/value cache.)"""
    ys_dev = asarray(ys)
    logits = model.decode(ys_dev, memory, src_mask, ys_dev != PAD_ID)  # (B, t, V)
    logp = _log_softmax(to_numpy(logits[:, -1, :]))
    logp[:, list(never)] = -np.inf
    return logp


class _CachedSteps:
    """Incremental decoding with a key/value cache: each step feeds only the newest token of
    every row (``model.decode_step``); the earlier positions are read from the cache.

    ``memory`` and ``src_mask`` are the rows of the first step (one per row decoded); after the
    first step they live in the cache. Before each later step, ``parents`` (host ints) says for
    every row which row of the previous step it continues (beams picked, finished rows dropped).
    """

    def __init__(self, model: Any, memory: Any, src_mask: Any, never: tuple[int, ...]) -> None:
        self.model, self.memory, self.src_mask, self.never = model, memory, src_mask, never
        self.cache = DecoderCache()

    def next_log_probs(self, last: np.ndarray, parents: np.ndarray | None) -> np.ndarray:
        """``last`` (n, 1) the newest token of each row -> (n, V) float64 host log-probabilities
        of the next token, as ``_next_log_probs`` computes them from the whole prefix."""
        if parents is not None and not (
            parents.size == self.cache.batch and (parents == np.arange(parents.size)).all()
        ):
            self.cache.reorder(asarray(parents))
        tok = asarray(last)
        logits = self.model.decode_step(tok, self.memory, self.cache, self.src_mask, tok != PAD_ID)
        self.memory = self.src_mask = None  # in the cache now
        logp = _log_softmax(to_numpy(logits[:, -1, :]))
        logp[:, list(self.never)] = -np.inf
        return logp


def _cached(model: Seq2SeqModel, use_cache: bool) -> bool:
    """Whether to decode with a key/value cache: asked for, and the model has ``decode_step``."""
    return bool(use_cache) and callable(getattr(model, "decode_step", None))


def _log_softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise ``log softmax`` on the host, float64 (the op of ``nanotf.functional``)."""
    return log_softmax_forward(x.astype(np.float64))[0]


def greedy_decode(
    model: Seq2SeqModel,
    src: Any,
    src_mask: Any,
    max_len: int,
    bos_id: int = BOS_ID,
    eos_id: int = EOS_ID,
    pad_id: int = PAD_ID,
    use_cache: bool = True,
) -> np.ndarray:
    """Pick the most likely next token at every step: ``y_t = argmax_v logits(y_<t, x)[v]``.

    ``src`` (B, S) ids and ``src_mask`` (B, S) bool (True = real token; None derives it from
    ``pad_id``). Stops a row at ``<eos>`` or after ``max_len`` generated tokens. Returns a host
    ``int64`` array (B, L ≤ max_len) of the ids after ``<bos>`` (``<eos>`` included, ``pad_id``
    after it). Runs in eval mode (no dropout); the model's mode is restored afterwards.
    ``use_cache`` (default) decodes with a key/value cache; False recomputes the prefix at
    every step (the reference: same ids, log-probabilities equal to round-off).
    """
    src, src_mask = _check_inputs(src, src_mask, max_len)
    b = int(src.shape[0])
    never = (pad_id, bos_id)
    with _eval_mode(model):
        memory = model.encode(src, src_mask)  # (B, S, C), computed once
        steps = _CachedSteps(model, memory, src_mask, never) if _cached(model, use_cache) else None
        ys = np.full((b, 1), bos_id, dtype=np.int64)
        out = np.full((b, max_len), pad_id, dtype=np.int64)
        alive = np.arange(b)  # rows still decoding
        kept = None  # the rows of the previous step that are still decoding (cached path)
        length = 0
        for t in range(max_len):
            if steps is not None:
                logp = steps.next_log_probs(ys[:, -1:], kept)
            else:
                sel = asarray(alive)
                logp = _next_log_probs(model, ys, memory[sel], src_mask[sel], never)
            nxt = logp.argmax(axis=-1)  # (n_alive,)
            out[alive, t] = nxt
            length = t + 1
            running = nxt != eos_id
            ys = np.concatenate([ys, nxt[:, None]], axis=1)[running]
            alive = alive[running]
            kept = np.flatnonzero(running)
            if alive.size == 0:
                break
    return out[:, :length]


def length_penalty_factor(length: int, alpha: float) -> float:
    """GNMT's length penalty (Wu et al. 2016): ``lp(|Y|) = ((5 + |Y|) / 6) ** alpha``.

    A hypothesis is ranked by ``log P(Y | X) / lp(|Y|)``, ``|Y|`` counting the generated tokens
    (``<eos>`` included, ``<bos>`` not). ``alpha = 0`` ranks by the plain log-probability, which
    favours short outputs (every token multiplies in a probability < 1); ``alpha`` around
    0.6-1.0 evens that out.
    """
    return ((5.0 + length) / 6.0) ** alpha


def beam_search(
    model: Seq2SeqModel,
    src: Any,
    src_mask: Any,
    beam_width: int,
    max_len: int,
    bos_id: int = BOS_ID,
    eos_id: int = EOS_ID,
    pad_id: int = PAD_ID,
    length_penalty: float = 0.6,
    return_scores: bool = False,
    use_cache: bool = True,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Keep the ``beam_width`` best prefixes at every step instead of only the best one.

    Score of a hypothesis: ``log P(Y | X) / lp(|Y|)`` with GNMT's length penalty
    ``lp = ((5 + |Y|) / 6) ** length_penalty`` (:func:`length_penalty_factor`; 0 disables it).

    Per source, at each step: every live prefix ``y`` (all of length ``t``) is extended by every
    token ``v``, scored ``log P(y) + log p(v | y, x)``, and the ``2·K`` best extensions are taken
    in order. An extension ending in ``<eos>`` among the first ``K`` becomes a finished
    hypothesis; the best ``K`` others are the next live prefixes. A source is done when it has
    ``K`` finished hypotheses and the best live prefix, scored at its current length, is no
    better than the worst of them (the stopping rule of Hugging Face's ``BeamSearchScorer``), or
    when ``max_len`` tokens were generated (live prefixes then count as finished). The answer is
    the finished hypothesis with the best score.

    With ``beam_width=1`` this is exactly greedy decoding (the best extension is the argmax;
    when it is ``<eos>`` the source is done). Beam search is still a heuristic: it usually, not
    always, finds a better-scoring output than greedy.

    Returns the best sequences as :func:`greedy_decode` does, (B, L) host ``int64``; with
    ``return_scores`` also their scores (B,) float64. ``use_cache`` (default) decodes with a
    key/value cache whose rows follow the beams; False recomputes every prefix (the reference:
    same ids, scores equal to round-off).
    """
    _check_positive_int("beam_width", beam_width)
    if not (isinstance(length_penalty, (int, float)) and math.isfinite(length_penalty)):
        raise ValueError(f"length_penalty must be a finite number, got {length_penalty!r}")
    src, src_mask = _check_inputs(src, src_mask, max_len)
    specials = _Specials(bos_id, eos_id, pad_id)
    with _eval_mode(model):
        memory = model.encode(src, src_mask)  # (B, S, C), computed once
        finished = _search(
            model,
            memory,
            src_mask,
            int(beam_width),
            max_len,
            specials,
            length_penalty,
            _cached(model, use_cache),
        )
    best = [max(f, key=lambda h: h[0]) for f in finished]  # max keeps the first of equals
    out, _ = pad_sequences([tokens for _, tokens in best], pad_id)
    if return_scores:
        return out, np.array([sc for sc, _ in best], dtype=np.float64)
    return out


class _Specials(NamedTuple):
    """The special token ids a search needs (the caller may use other ids than nanotf's)."""

    bos: int
    eos: int
    pad: int


#: A finished hypothesis: its score ``log P(Y | X) / lp(|Y|)`` and its ids after ``<bos>``.
Hypothesis = tuple[float, list[int]]


def _search(
    model: Seq2SeqModel,
    memory: Any,
    src_mask: Any,
    k: int,
    max_len: int,
    ids: _Specials,
    alpha: float,
    use_cache: bool = False,
) -> list[list[Hypothesis]]:
    """The beam search loop: every source's finished hypotheses, in the order found.

    Row ``j·K + m`` of a step is beam ``m`` of the ``j``-th live source; with ``use_cache``,
    ``parents`` maps every row to the row of the previous step it extends."""
    b = int(src_mask.shape[0])
    never = (ids.pad, ids.bos)
    steps = None
    if use_cache:
        rows0 = asarray(np.repeat(np.arange(b), k))
        steps = _CachedSteps(model, memory[rows0], src_mask[rows0], never)
    parents = None
    finished: list[list[Hypothesis]] = [[] for _ in range(b)]
    seqs = np.full((b, k, 1), ids.bos, dtype=np.int64)  # live prefixes (B, K, t), <bos> first
    logp_sum = np.zeros((b, k), dtype=np.float64)  # log P(prefix) (B, K)
    logp_sum[:, 1:] = -np.inf  # at the start only one prefix (<bos>) is live
    alive = np.arange(b)  # sources still searching
    for t in range(1, max_len + 1):
        n = alive.size
        prefixes = seqs[alive].reshape(n * k, t)
        if steps is not None:
            logp = steps.next_log_probs(prefixes[:, -1:], parents)
        else:
            rows = asarray(np.repeat(alive, k))  # each live source K times
            logp = _next_log_probs(model, prefixes, memory[rows], src_mask[rows], never)
        v = logp.shape[-1]
        cand = (logp_sum[alive][:, :, None] + logp.reshape(n, k, v)).reshape(n, k * v)  # (n, K·V)
        ranked = np.argsort(-cand, axis=1, kind="stable")[:, : 2 * k]  # (n, 2K), best first
        new_seqs = np.full((b, k, t + 1), ids.pad, dtype=np.int64)
        still = np.ones(n, dtype=bool)
        beams = np.zeros((n, k), dtype=np.int64)  # the beam each next prefix extends
        for j, i in enumerate(alive.tolist()):
            new_seqs[i], logp_sum[i], still[j], beams[j] = _extend_source(
                cand[j], ranked[j], seqs[i], finished[i], ids, alpha, last=t == max_len
            )
        seqs = new_seqs
        parents = (np.arange(n)[:, None] * k + beams)[still].reshape(-1)
        alive = alive[still]
        if alive.size == 0:
            break
    return finished


def _extend_source(
    cand: np.ndarray,
    ranked: np.ndarray,
    prefixes: np.ndarray,
    finished: list[Hypothesis],
    ids: _Specials,
    alpha: float,
    last: bool,
) -> tuple[np.ndarray, np.ndarray, bool, np.ndarray]:
    """One step of one source: from its live ``prefixes`` (K, t), the scores of their
    extensions ``cand`` (K·V,) and the ``2K`` best of them ``ranked`` (best first), make the
    next live prefixes (K, t + 1) and their log-probabilities (K,) (``-inf`` where fewer than
    ``K`` remain). Hypotheses that end are appended to ``finished``. Also returns whether the
    source keeps searching (on the ``last`` step its live prefixes count as finished) and,
    for each next prefix, the beam it extends (0 for the empty slots)."""
    k, t = prefixes.shape
    v = cand.size // k
    lp = length_penalty_factor(t, alpha)
    next_prefixes = np.full((k, t + 1), ids.pad, dtype=np.int64)
    next_sum = np.full(k, -np.inf)
    parents = np.zeros(k, dtype=np.int64)
    n_live = 0
    for rank, idx in enumerate(ranked.tolist()):
        s = float(cand[idx])
        if s == -np.inf:
            break
        beam, tok = divmod(idx, v)
        if tok == ids.eos:
            if rank < k:
                finished.append((s / lp, prefixes[beam, 1:].tolist() + [ids.eos]))
            continue
        next_prefixes[n_live, :t] = prefixes[beam]
        next_prefixes[n_live, t] = tok
        next_sum[n_live] = s
        parents[n_live] = beam
        n_live += 1
        if n_live == k:
            break
    best_live = next_sum[0] / lp if n_live else -np.inf
    # done: K finished hypotheses, none worse than the best live prefix can still be
    done = len(finished) >= k and best_live <= sorted(sc for sc, _ in finished)[-k]
    still = not done and n_live > 0
    if last and still:  # out of length: live prefixes count as answers
        finished.extend((next_sum[m] / lp, next_prefixes[m, 1:].tolist()) for m in range(n_live))
    return next_prefixes, next_sum, still, parents


def sequence_log_prob(
    model: Seq2SeqModel,
    src: Any,
    src_mask: Any,
    ids: Any,
    bos_id: int = BOS_ID,
    eos_id: int = EOS_ID,
    pad_id: int = PAD_ID,
) -> np.ndarray:
    """``log P(Y | X) = Σ_t log p(y_t | y_<t, X)`` of given outputs, by one teacher-forced pass.

    ``ids`` (B, L) are outputs as the decoders return them (after ``<bos>``; the tokens up to
    and including the first ``<eos>`` count, the rest is ignored). Returns (B,) float64 on the
    host. Divide by ``length_penalty_factor(len, alpha)`` to compare with beam search's scores.
    """
    ids = np.asarray(to_numpy(ids), dtype=np.int64)
    if ids.ndim != 2:
        raise ValueError(f"ids must be a 2-D array (batch, length), got shape {ids.shape}")
    src, src_mask = _check_inputs(src, src_mask, 1)
    b = ids.shape[0]
    # count a token if no <eos> came before it, and it is not padding
    before_eos = np.cumsum(ids == eos_id, axis=1) - (ids == eos_id) == 0
    counted = before_eos & (ids != pad_id)
    tgt_in = np.concatenate([np.full((b, 1), bos_id, dtype=np.int64), ids[:, :-1]], axis=1)
    reads = np.concatenate([np.ones((b, 1), dtype=bool), counted[:, :-1]], axis=1)
    tgt_in = np.where(reads, tgt_in, pad_id)
    with _eval_mode(model):
        memory = model.encode(src, src_mask)
        tgt_dev = asarray(tgt_in)
        logits = to_numpy(model.decode(tgt_dev, memory, src_mask, tgt_dev != pad_id))
    logp = _log_softmax(logits)  # (B, L, V)
    picked = np.take_along_axis(logp, ids[:, :, None], axis=-1)[:, :, 0]  # (B, L)
    return np.where(counted, picked, 0.0).sum(axis=1)


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
