"""Choosing the next token from a row of logits: temperature, top-k, top-p, the seeded draw.

Pure array functions (NumPy or CuPy, whichever module the logits live in), the step that
``GPT2LMHeadModel.generate`` (and ``nanotf.generation.generate``) runs on the logits of the last
position, (B, V). Each follows Hugging Face's logits warper of the same name, in Hugging Face's
order (``TemperatureLogitsWarper``, ``TopKLogitsWarper``, ``TopPLogitsWarper``)::

    logits = logits / temperature
    logits = top_k_filter(logits, k)   # keep the k largest (ties with the k-th kept), rest -inf
    logits = top_p_filter(logits, p)   # keep the smallest set whose probability >= p
    token  = sample(softmax(logits), rng)

Greedy decoding is ``argmax`` of the raw logits (the first index on a tie, as ``torch.argmax``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import get_array_module
from ..checks import check_float, check_ndim, number_problem
from .softmax import softmax_forward

__all__ = [
    "check_sampling_args",
    "next_token",
    "sample",
    "top_k_filter",
    "top_p_filter",
]


def _check_logits(op: str, logits: Any) -> None:
    check_float(f"{op} logits", logits)
    check_ndim(f"{op} logits", logits, 2)
    if logits.shape[-1] == 0:
        raise ValueError(f"{op}: logits must have at least one entry per row, got shape "
                         f"{tuple(logits.shape)}")


def _check_top_k(top_k: Any) -> int:
    problem = number_problem(top_k, integer=True, low=1)
    if problem is not None:
        raise problem.error(f"top_k {problem.words}, got {top_k!r}")
    return int(top_k)


def _check_top_p(top_p: Any) -> float:
    problem = number_problem(top_p, integer=False, low=0.0, high=1.0, low_open=True)
    if problem is not None:
        raise problem.error(f"top_p {problem.words}, got {top_p!r}")
    return float(top_p)


def check_sampling_args(do_sample: Any, temperature: Any, top_k: Any, top_p: Any) -> None:
    """One clear error for each bad setting: ``do_sample`` a bool; ``top_k`` None or an integer
    >= 1; ``top_p`` None or a real number in (0, 1]; when sampling, ``temperature`` a finite real
    number > 0 (greedy decoding does not read it)."""
    if not isinstance(do_sample, (bool, np.bool_)):
        raise TypeError(f"do_sample must be a bool, got {do_sample!r}")
    if top_k is not None:
        _check_top_k(top_k)
    if top_p is not None:
        _check_top_p(top_p)
    if do_sample:
        problem = number_problem(temperature, integer=False, low=0.0, low_open=True, finite=True)
        if problem is not None:
            raise problem.error(
                f"temperature {problem.words} when sampling (do_sample=True), got "
                f"{temperature!r}"
            )


def top_k_filter(logits: Any, k: int) -> Any:
    """Keep, per row, the logits at least as large as the k-th largest; the others become -inf.

    As Hugging Face's ``TopKLogitsWarper``: ``remove = logits < kth largest`` (a tie with the
    k-th value is kept), and k larger than the vocabulary keeps everything. logits (B, V) ->
    a new (B, V) array.
    """
    _check_logits("top_k_filter", logits)
    k = min(_check_top_k(k), logits.shape[-1])
    xp = get_array_module(logits)
    kth = xp.sort(logits, axis=-1)[:, -k][:, None]  # (B, 1): the k-th largest
    return xp.where(logits < kth, -xp.inf, logits).astype(logits.dtype, copy=False)


def top_p_filter(logits: Any, p: float) -> Any:
    """Nucleus filtering: keep, per row, the smallest set of most likely tokens whose probability
    adds up to at least ``p``; the others become -inf.

    Hugging Face's ``TopPLogitsWarper`` rule exactly: sort the logits ascending (stable), take
    the cumulative sum of their softmax, remove the tokens where ``cumsum <= 1 - p``, and always
    keep the most likely token. ``p = 1`` removes only tokens of probability 0. logits (B, V) ->
    a new (B, V) array.
    """
    _check_logits("top_p_filter", logits)
    p = _check_top_p(p)
    xp = get_array_module(logits)
    order = xp.argsort(logits, axis=-1, kind="stable")  # (B, V) ascending
    sorted_logits = xp.take_along_axis(logits, order, axis=-1)
    cum = softmax_forward(sorted_logits, axis=-1)[0].cumsum(axis=-1)  # (B, V)
    remove_sorted = cum <= (1.0 - p)
    remove_sorted[:, -1] = False  # the most likely token always stays
    inverse = xp.argsort(order, axis=-1)  # back to the vocabulary order
    remove = xp.take_along_axis(remove_sorted, inverse, axis=-1)
    return xp.where(remove, -xp.inf, logits).astype(logits.dtype, copy=False)


def sample(probs: Any, rng: Any) -> Any:
    """Draw one index per row from ``probs`` (B, V) (rows of non-negative weights; they need not
    add up to exactly 1) with the generator ``rng`` (``numpy.random.Generator`` or CuPy's).

    Inverse-CDF sampling with one uniform ``u`` per row: the index is the first ``i`` with
    ``cumsum(probs)[i] > u * sum(probs)``, so a token of probability 0 is never drawn. The same
    generator state gives the same draw. Returns (B,) int64 in ``probs``' array module.
    """
    check_float("sample probs", probs)
    check_ndim("sample probs", probs, 2)
    xp = get_array_module(probs)
    b, v = probs.shape
    cdf = probs.cumsum(axis=-1)  # (B, V)
    u = xp.asarray(rng.random(b)).astype(cdf.dtype)  # (B,) in [0, 1)
    idx = (cdf <= (u * cdf[:, -1])[:, None]).sum(axis=-1)  # (B,)
    # u * total may round up to total: then take the last token of non-zero probability
    last_nonzero = v - 1 - (probs[:, ::-1] > 0).argmax(axis=-1)
    return xp.where(idx >= v, last_nonzero, idx).astype(np.int64)


def next_token(
    logits: Any,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    rng: Any = None,
) -> Any:
    """The next token of every row from the logits of the last position, (B, V) -> (B,) int64.

    Greedy (``do_sample=False``): ``argmax`` (the first index on a tie); temperature, top-k and
    top-p are not read. Sampling: ``logits / temperature``, then :func:`top_k_filter`,
    :func:`top_p_filter`, softmax and :func:`sample` with ``rng``.
    """
    _check_logits("next_token", logits)
    check_sampling_args(do_sample, temperature, top_k, top_p)
    if not do_sample:
        return logits.argmax(axis=-1).astype(np.int64)
    if rng is None:
        raise ValueError("next_token: sampling (do_sample=True) needs a random generator rng")
    scores = logits / temperature
    if top_k is not None:
        scores = top_k_filter(scores, top_k)
    if top_p is not None and top_p < 1.0:
        scores = top_p_filter(scores, top_p)
    return sample(softmax_forward(scores, axis=-1)[0], rng)
