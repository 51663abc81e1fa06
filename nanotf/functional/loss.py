"""Cross-entropy on logits with ``ignore_index`` and label smoothing, as in PyTorch."""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

import numpy as np

from ..backend import get_array_module, to_numpy
from ..checks import (
    check_array,
    check_dout,
    check_float,
    check_int,
    check_int_ids,
    check_nonempty_axis,
    check_real,
    check_same_device,
    device_ids_trusted,
)
from . import fused
from .softmax import log_softmax_forward


class CrossEntropyCache(NamedTuple):
    """What ``cross_entropy_backward`` needs (N = the positions, flattened)."""

    probs: Any  # softmax of the logits, (N, V)
    targets: Any  # (N,) the targets, ignored ones replaced by 0 (a safe index)
    valid: Any  # (N,) True where the target is not ignore_index
    # the count of valid targets ("mean") or 1 ("sum"): an int, or on a device a 0-d integer
    # array (counted there, so the loss needs no transfer)
    denom: Any
    label_smoothing: float  # ε
    shape: tuple[int, ...]  # of the logits (..., V)


def _check_inputs(
    logits: Any, targets: Any, ignore_index: Any, label_smoothing: Any, reduction: Any
) -> None:
    """logits (..., V) float with V > 0, targets (...) ids in [0, V) or ignore_index."""
    check_float("cross_entropy logits", logits)
    check_nonempty_axis("cross_entropy logits", logits, -1, "the V classes")
    check_array("cross_entropy targets", targets)
    check_same_device("cross_entropy", logits=logits, targets=targets)
    check_int("cross_entropy ignore_index", ignore_index)
    check_real("cross_entropy label_smoothing", label_smoothing, 0, 1)
    if not isinstance(reduction, str) or reduction not in ("mean", "sum"):
        raise ValueError(f"cross_entropy reduction must be 'mean' or 'sum', got {reduction!r}")
    if tuple(targets.shape) != tuple(logits.shape[:-1]):
        raise ValueError(
            f"cross_entropy targets must have shape {tuple(logits.shape[:-1])} (logits without "
            f"the class dimension), got {tuple(targets.shape)}"
        )
    check_int_ids("cross_entropy targets", targets, logits.shape[-1], allowed_extra=ignore_index)


def cross_entropy_forward(
    logits: Any,
    targets: Any,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> tuple[Any, CrossEntropyCache]:
    """Cross-entropy of ``softmax(logits)`` against integer targets.

    logits: (..., V), targets: (...) integers in [0, V) or ``ignore_index``.
    With smoothing ε, the target distribution is ``q = (1 - ε) onehot(y) + ε / V``, and
    ``loss_n = -Σ_c q_c log p_c``. ``reduction="mean"`` divides the sum over non-ignored
    positions by their count (PyTorch's definition); ``"sum"`` does not divide. With every
    target ignored, ``"sum"`` gives 0 (as PyTorch) and ``"mean"`` raises (PyTorch gives NaN).
    An ignored position adds exactly 0 and gets a gradient of exactly 0, even where its logits
    are NaN or inf (as PyTorch's loss; PyTorch's gradient there is NaN). Returns the loss as a
    0-d array and the cache.
    """
    _check_inputs(logits, targets, ignore_index, label_smoothing, reduction)
    label_smoothing = float(label_smoothing)  # a NumPy float64 would promote a float32 loss
    n_classes = logits.shape[-1]
    y = targets.reshape(-1)  # (N,)
    valid = y != ignore_index  # (N,)
    on_host = isinstance(valid, np.ndarray)
    n_valid = int(valid.sum()) if on_host else valid.sum()  # a device count stays there
    if reduction == "mean" and _no_valid_target(n_valid, targets):
        n = y.shape[0]
        why = f"all {n} targets equal ignore_index={ignore_index}" if n else "no targets"
        raise ValueError(
            f"cross_entropy targets must hold at least one target in [0, {n_classes}) for "
            f"reduction='mean' (the mean over no targets is undefined; 'sum' gives 0), got {why}"
        )
    kernel = fused.kernel_for("cross_entropy_forward", logits)
    if kernel is not None:  # a fused kernel for logits' array module (nanotf.functional.fused)
        per_row, probs, y_safe = kernel(logits, y, valid, label_smoothing)
    else:
        per_row, probs, y_safe = _per_row_losses(logits, y, valid, label_smoothing)
    denom = n_valid if reduction == "mean" else 1
    # a device count divides in the loss's dtype, as a Python int does on the host
    loss = per_row.sum() / (denom if isinstance(denom, int) else denom.astype(per_row.dtype))
    cache = CrossEntropyCache(probs, y_safe, valid, denom, label_smoothing, tuple(logits.shape))
    return loss, cache


def _per_row_losses(
    logits: Any, y: Any, valid: Any, label_smoothing: float
) -> tuple[Any, Any, Any]:
    """The reference: each position's loss (N,) (0 where ignored), the softmax (N, V), and the
    targets with ignored ones replaced by 0 (N,). logits: (..., V), y and valid: (N,)."""
    xp = get_array_module(logits)
    # ignored rows are set to 0 first, so their NaN or inf never enters the softmax's arithmetic
    flat = xp.where(valid[:, None], logits.reshape(-1, logits.shape[-1]), 0)  # (N, V)
    logp, logp_cache = log_softmax_forward(flat)  # (N, V)
    y_safe = xp.where(valid, y, 0)
    rows = xp.arange(y.shape[0])
    nll = -logp[rows, y_safe]  # (N,)
    if label_smoothing > 0.0:
        smooth = -logp.mean(axis=-1)  # (N,)  = -Σ_c log p_c / V
        per_row = (1.0 - label_smoothing) * nll + label_smoothing * smooth
    else:
        per_row = nll
    xp.copyto(per_row, 0.0, where=~valid)  # not `* valid`: 0 · NaN would be NaN
    return per_row, logp_cache.probs, y_safe


def cross_entropy_backward(dloss: Any, cache: CrossEntropyCache) -> Any:
    """Gradient with respect to the logits: ``dlogits_n = (p_n - q_n) · valid_n / count · dloss``.

    (softmax then log then the smoothed one-hot: the classic ``p - q``.) ``dloss`` is the
    gradient of the 0-d loss: a 0-d array or a number. Ignored rows get exactly 0.
    """
    p, eps = cache.probs, cache.label_smoothing
    check_dout(
        "cross_entropy_backward", dloss, (), p.dtype, "(the 0-d loss)", arg="dloss", number_ok=True
    )
    xp = get_array_module(p)
    kernel = fused.kernel_for("cross_entropy_backward", p)
    if kernel is not None:  # a fused kernel for p's array module (nanotf.functional.fused)
        scale = _scale(xp, dloss, cache.denom, p.dtype)
        return kernel(p, cache.targets, cache.valid, scale, eps).reshape(cache.shape)
    n_classes = p.shape[-1]
    dlogits = p.copy()  # (N, V)
    if eps > 0.0:
        dlogits -= eps / n_classes
    dlogits[xp.arange(p.shape[0]), cache.targets] -= 1.0 - eps
    dlogits *= _scale(xp, dloss, cache.denom, p.dtype)
    xp.copyto(dlogits, 0.0, where=~cache.valid[:, None])  # not `* valid`: 0 · NaN would be NaN
    return dlogits.reshape(cache.shape)


def _no_valid_target(n_valid: Any, targets: Any) -> bool:
    """Whether no target counts (``n_valid`` a host int, or a device 0-d count: one transfer,
    none where the caller checked the targets on the host, ``ids_checked_on_host``)."""
    if isinstance(n_valid, int):
        return n_valid == 0
    if device_ids_trusted(targets):
        return False
    return int(to_numpy(n_valid)) == 0


def _scale(xp: Any, dloss: Any, denom: Any, dtype: Any) -> Any:
    """``dloss / denom``, the factor of every row's ``p - q``, as the host computes it: a number
    over an int in float64 (then rounded to the gradient's dtype), an array over an int in the
    array's dtype. A device ``denom`` (a 0-d count) gives a 0-d device array, with the same
    value, bit for bit, and no transfer."""
    if isinstance(denom, int):
        return dloss / denom
    if isinstance(dloss, numbers.Real):
        return (xp.asarray(dloss, dtype=xp.float64) / denom.astype(xp.float64)).astype(dtype)
    return dloss / denom.astype(dloss.dtype)
