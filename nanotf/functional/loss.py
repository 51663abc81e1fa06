"""Cross-entropy on logits with ``ignore_index`` and label smoothing, as in PyTorch."""

from __future__ import annotations

from typing import Any

from ..backend import get_array_module
from ._checks import check_float, check_int_ids
from .softmax import log_softmax_forward


def cross_entropy_forward(
    logits: Any,
    targets: Any,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> tuple[Any, tuple]:
    """Cross-entropy of ``softmax(logits)`` against integer targets.

    logits: (..., V), targets: (...) integers in [0, V) or ``ignore_index``.
    With smoothing ε, the target distribution is ``q = (1 - ε) onehot(y) + ε / V``, and
    ``loss_n = -Σ_c q_c log p_c``. ``reduction="mean"`` divides the sum over non-ignored
    positions by their count (PyTorch's definition); ``"sum"`` does not divide. With every
    target ignored, ``"sum"`` gives 0 (as PyTorch) and ``"mean"`` raises (PyTorch gives NaN).
    Returns the loss as a 0-d array and the cache.
    """
    check_float("cross_entropy logits", logits)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    n_classes = logits.shape[-1]
    if tuple(targets.shape) != tuple(logits.shape[:-1]):
        raise ValueError(
            f"targets must have shape {tuple(logits.shape[:-1])} (logits without the class "
            f"dimension), got {tuple(targets.shape)}"
        )
    check_int_ids("targets", targets, n_classes, allowed_extra=ignore_index)
    xp = get_array_module(logits)
    logp, (p, _) = log_softmax_forward(logits.reshape(-1, n_classes))  # (N, V)
    y = targets.reshape(-1)  # (N,)
    valid = y != ignore_index  # (N,)
    n_valid = int(valid.sum())
    if n_valid == 0 and reduction == "mean":
        raise ValueError(
            f"all {y.shape[0]} targets equal ignore_index={ignore_index}: the mean over no "
            "targets is undefined (expected at least one target in [0, "
            f"{n_classes}); reduction='sum' gives 0 here)"
        )
    y_safe = xp.where(valid, y, 0)
    rows = xp.arange(y.shape[0])
    nll = -logp[rows, y_safe]  # (N,)
    if label_smoothing > 0.0:
        smooth = -logp.mean(axis=-1)  # (N,)  = -Σ_c log p_c / V
        per_row = (1.0 - label_smoothing) * nll + label_smoothing * smooth
    else:
        per_row = nll
    per_row = per_row * valid
    denom = n_valid if reduction == "mean" else 1
    loss = per_row.sum() / denom
    cache = (p, y_safe, valid, denom, label_smoothing, tuple(logits.shape))
    return loss, cache


def cross_entropy_backward(dloss: Any, cache: tuple) -> Any:
    """Gradient with respect to the logits: ``dlogits_n = (p_n - q_n) · valid_n / count · dloss``.

    (softmax then log then the smoothed one-hot: the classic ``p - q``.)
    """
    p, y_safe, valid, denom, eps, shape = cache
    xp = get_array_module(p)
    n_classes = p.shape[-1]
    dlogits = p.copy()  # (N, V)
    if eps > 0.0:
        dlogits -= eps / n_classes
    dlogits[xp.arange(p.shape[0]), y_safe] -= 1.0 - eps
    scale = valid.astype(p.dtype)
    scale *= dloss / denom  # (N,)
    dlogits *= scale[:, None]
    return dlogits.reshape(shape)
