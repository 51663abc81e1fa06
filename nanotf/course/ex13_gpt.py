"""Notebook 13, "GPT from scratch": the learner writes nucleus (top-p) filtering and the causal
mask of a key/value cache."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..functional import causal_mask
from ..functional.sampling import top_p_filter
from .grading import WrongAnswer, exercise, largest_error


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _top_p_reference(logits: Any, p: float) -> np.ndarray:
    order = np.argsort(logits, axis=-1, kind="stable")  # (B, V) ascending
    cum = np.take_along_axis(_softmax(logits), order, axis=-1).cumsum(axis=-1)  # (B, V)
    remove_sorted = cum <= 1.0 - p  # the least likely tokens, as long as they hold ≤ 1 − p
    remove_sorted[:, -1] = False  # the most likely token always stays
    remove = np.zeros_like(remove_sorted)
    np.put_along_axis(remove, order, remove_sorted, axis=-1)
    return np.where(remove, -np.inf, logits)


def _top_p_mass_below_p(logits: Any, p: float) -> np.ndarray:
    order = np.argsort(-logits, axis=-1, kind="stable")  # descending
    cum = np.take_along_axis(_softmax(logits), order, axis=-1).cumsum(axis=-1)
    keep_sorted = cum <= p  # keeps a set of mass ≤ p: one token short
    keep = np.zeros_like(keep_sorted)
    np.put_along_axis(keep, order, keep_sorted, axis=-1)
    return np.where(keep, logits, -np.inf)


def _top_p_top_token_not_kept(logits: Any, p: float) -> np.ndarray:
    order = np.argsort(logits, axis=-1, kind="stable")
    cum = np.take_along_axis(_softmax(logits), order, axis=-1).cumsum(axis=-1)
    remove_sorted = cum <= 1.0 - p  # no safeguard for the most likely token
    remove = np.zeros_like(remove_sorted)
    np.put_along_axis(remove, order, remove_sorted, axis=-1)
    return np.where(remove, -np.inf, logits)


def _top_p_sorted_wrong_way(logits: Any, p: float) -> np.ndarray:
    order = np.argsort(-logits, axis=-1, kind="stable")  # descending, but the ascending rule
    cum = np.take_along_axis(_softmax(logits), order, axis=-1).cumsum(axis=-1)
    remove_sorted = cum <= 1.0 - p
    remove_sorted[:, -1] = False
    remove = np.zeros_like(remove_sorted)
    np.put_along_axis(remove, order, remove_sorted, axis=-1)
    return np.where(remove, -np.inf, logits)


def _top_p_zero_instead_of_minus_inf(logits: Any, p: float) -> np.ndarray:
    kept = np.isfinite(_top_p_reference(logits, p))
    return np.where(kept, logits, 0.0)  # a logit of 0 is not a probability of 0


def _top_p_cases() -> list[tuple[np.ndarray, float]]:
    """Fixed rows of logits (B, V) and values of p. Tokens of equal probability appear among the
    kept and among the removed ones, never on the boundary (which of two tied tokens stays there
    is a convention, not a rule)."""
    rng = np.random.default_rng(1313)
    wide = rng.normal(scale=2.0, size=(4, 12))
    ties = np.array([
        [3.0, 1.0, 3.0, 0.0, 1.0, -2.0, 0.0, -2.0],  # kept: the two 3s; removed: the two -2s
        [2.0, 2.0, 3.0, 0.0, -1.0, -1.0, -3.0, -3.0],  # ties on both sides
    ])
    peaked = np.array([[8.0, 0.0, 0.0, -1.0, 0.5, -3.0]])  # one token holds ~99.9 %
    masked = np.array([[1.0, -np.inf, 0.5, -np.inf, 2.0, 0.0]])  # after a top-k filter
    cases = [(wide, p) for p in (0.1, 0.5, 0.9, 1.0)]
    cases += [(ties, 0.5), (ties, 0.9), (ties, 1.0)]
    cases += [(peaked, 0.5), (peaked, 0.99995), (peaked, 1e-18), (wide, 1e-18)]
    cases += [(masked, 0.7), (masked, 1.0)]
    return cases


@exercise(
    "top_p_filter",
    notebook=13,
    tol=1e-12,
    hint="sort each row by probability, keep the most likely tokens until their mass first "
    "reaches p (the token that crosses p stays; the top token always stays; p = 1 keeps "
    "every token of non-zero probability), set the others to -inf",
    reference=_top_p_reference,
    mistakes={
        "kept the set of mass < p (one token short)": _top_p_mass_below_p,
        "did not always keep the most likely token": _top_p_top_token_not_kept,
        "sorted the wrong way (kept the least likely tokens)": _top_p_sorted_wrong_way,
        "removed tokens set to 0 instead of -inf": _top_p_zero_instead_of_minus_inf,
    },
)
def check_top_p_filter(answer: Callable[..., Any]) -> float:
    """``answer(logits (B, V), p) -> (B, V)``, the removed logits -inf, against nanotf's
    ``functional.sampling.top_p_filter``: returns the largest error over the kept/removed
    decisions (1 for any token decided the other way) and the kept values."""
    worst = 0.0
    for logits, p in _top_p_cases():
        want = top_p_filter(logits, p)
        got = answer(logits.copy(), p)
        try:
            g = np.asarray(got, dtype=np.float64)
        except (TypeError, ValueError):
            raise WrongAnswer(
                f"your function should return an array of shape {want.shape}, got "
                f"{type(got).__name__}"
            ) from None
        what = f"for p = {p:g} and logits of shape {logits.shape}"
        if g.shape != want.shape:
            raise WrongAnswer(f"your result {what} has shape {g.shape}, expected {want.shape}")
        if np.isnan(g).any() or np.isposinf(g).any():
            raise WrongAnswer(f"your result {what} holds NaN or +inf")
        removed_want, removed_got = np.isneginf(want), np.isneginf(g)
        worst = max(worst, largest_error(removed_got.astype(float), removed_want.astype(float),
                                         what=f"which tokens are removed {what}"))
        kept = ~removed_want & ~removed_got
        worst = max(worst, largest_error(np.where(kept, g, 0.0), np.where(kept, want, 0.0),
                                         what=f"the kept logits {what}"))
    return worst


def _mask_reference(t_new: int, t_past: int) -> np.ndarray:
    return np.tril(np.ones((t_new, t_past + t_new), dtype=bool), k=t_past)


def _mask_top_left(t_new: int, t_past: int) -> np.ndarray:
    return np.tril(np.ones((t_new, t_past + t_new), dtype=bool))  # forgot the cached keys


def _mask_future(t_new: int, t_past: int) -> np.ndarray:
    return np.triu(np.ones((t_new, t_past + t_new), dtype=bool), k=t_past)  # the wrong triangle


def _mask_without_self(t_new: int, t_past: int) -> np.ndarray:
    return np.tril(np.ones((t_new, t_past + t_new), dtype=bool), k=t_past - 1)  # not itself


@exercise(
    "kv_causal_mask",
    notebook=13,
    tol=0.0,
    hint="new query i sits at position t_past + i: it may see keys 0 .. t_past + i, itself "
    "included (np.tril with k = t_past)",
    reference=_mask_reference,
    mistakes={
        "aligned top-left: the cached keys forgotten": _mask_top_left,
        "the upper triangle: queries see the future": _mask_future,
        "a query may not see itself": _mask_without_self,
    },
)
def check_kv_causal_mask(answer: Callable[..., Any]) -> float:
    """``answer(t_new, t_past) -> (t_new, t_past + t_new)`` booleans (True: may attend) against
    ``functional.causal_mask``; the error is the fraction of entries that differ."""
    worst = 0.0
    for t_new, t_past in [(5, 0), (1, 7), (3, 4), (1, 0), (6, 2)]:
        want = causal_mask(t_new, t_past + t_new)
        got = answer(t_new, t_past)
        try:
            g = np.asarray(got)
        except (TypeError, ValueError):
            raise WrongAnswer(f"expected an array, got {type(got).__name__}") from None
        if g.shape != want.shape:
            raise WrongAnswer(
                f"for t_new = {t_new}, t_past = {t_past} your mask has shape {g.shape}, "
                f"expected {want.shape}"
            )
        if g.dtype != bool:
            raise WrongAnswer(f"the mask should be booleans (True: may attend), got {g.dtype}")
        worst = max(worst, float((g != want).mean()))
    return worst
