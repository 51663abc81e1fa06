"""Beam search: the search loop, one source's step, and the hypotheses it keeps."""

from __future__ import annotations

import math
from contextlib import nullcontext
from typing import Any, NamedTuple

import numpy as np

from ..backend import asarray, get_array_module, to_numpy
from ..checks import ids_checked_on_host
from ..text.padding import pad_sequences
from ..text.specials import BOS_ID, EOS_ID, PAD_ID
from .common import Seq2SeqModel, _check_inputs, _check_positive_int, _eval_mode
from .scoring import length_penalty_factor
from .steps import _cached, _CachedSteps, _next_log_probs


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
        # from the second step on, the tokens fed were chosen from the model's vocabulary
        with ids_checked_on_host() if t > 1 else nullcontext():
            if steps is not None:
                logp = steps.next_log_probs(prefixes[:, -1:], parents, on_device=True)
            else:
                rows = asarray(np.repeat(alive, k))  # each live source K times
                logp = _next_log_probs(
                    model, prefixes, memory[rows], src_mask[rows], never, on_device=True
                )
        v = logp.shape[-1]
        ranked, scores = _best_extensions(logp_sum[alive], logp, n, k, v)  # (n, 2K) each
        new_seqs = np.full((b, k, t + 1), ids.pad, dtype=np.int64)
        still = np.ones(n, dtype=bool)
        beams = np.zeros((n, k), dtype=np.int64)  # the beam each next prefix extends
        for j, i in enumerate(alive.tolist()):
            new_seqs[i], logp_sum[i], still[j], beams[j] = _extend_source(
                scores[j], ranked[j], v, seqs[i], finished[i], ids, alpha, last=t == max_len
            )
        seqs = new_seqs
        parents = (np.arange(n)[:, None] * k + beams)[still].reshape(-1)
        alive = alive[still]
        if alive.size == 0:
            break
    return finished


def _best_extensions(
    logp_sum: np.ndarray, logp: Any, n: int, k: int, v: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``2K`` best extensions of each live source, best first: their indices into the
    ``K·V`` candidates (beam · V + token) and their scores ``log P(prefix) + log p(token)``,
    both (n, 2K) on the host.

    ``logp_sum`` (n, K) host, ``logp`` (n·K, V) on the model's device: the candidates are
    scored and ranked there (a stable sort, as on the host), and only the ``2K`` best of each
    source move to the host, in one transfer.
    """
    xp = get_array_module(logp)
    prior = logp_sum if xp is np else asarray(logp_sum)
    cand = (prior[:, :, None] + logp.reshape(n, k, v)).reshape(n, k * v)  # (n, K·V)
    ranked = xp.argsort(-cand, axis=1, kind="stable")[:, : 2 * k]  # (n, 2K), best first
    scores = xp.take_along_axis(cand, ranked, axis=1)  # (n, 2K)
    if xp is np:
        return ranked, scores
    # one transfer: the indices (< 2**53, exact in float64) beside their scores
    both = to_numpy(xp.stack([ranked.astype(xp.float64), scores]))  # (2, n, 2K)
    return both[0].astype(np.int64), both[1]


def _extend_source(
    scores: np.ndarray,
    ranked: np.ndarray,
    v: int,
    prefixes: np.ndarray,
    finished: list[Hypothesis],
    ids: _Specials,
    alpha: float,
    last: bool,
) -> tuple[np.ndarray, np.ndarray, bool, np.ndarray]:
    """One step of one source: from its live ``prefixes`` (K, t), the ``2K`` best of their
    extensions ``ranked`` (best first: indices ``beam · v + token`` into the K·V candidates, with
    a vocabulary of ``v`` tokens) and their ``scores`` (2K,), make the
    next live prefixes (K, t + 1) and their log-probabilities (K,) (``-inf`` where fewer than
    ``K`` remain). Hypotheses that end are appended to ``finished``. Also returns whether the
    source keeps searching (on the ``last`` step its live prefixes count as finished) and,
    for each next prefix, the beam it extends (0 for the empty slots)."""
    k, t = prefixes.shape
    lp = length_penalty_factor(t, alpha)
    next_prefixes = np.full((k, t + 1), ids.pad, dtype=np.int64)
    next_sum = np.full(k, -np.inf)
    parents = np.zeros(k, dtype=np.int64)
    n_live = 0
    for rank, (idx, s) in enumerate(zip(ranked.tolist(), scores.tolist(), strict=True)):
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
