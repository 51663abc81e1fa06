"""The Numba kernels of cross-entropy (label smoothing, ignore_index) on the CPU, forward and
backward: the parallel loops over rows (one row: one position's V logits) and the kernels as
``nanotf.functional.loss`` calls them (see ``nanotf.functional.fused.OPS``).

Shape letters: N the positions (all leading axes of the logits, flattened), V the classes.

Each row is computed by one thread, in the steps of the reference (``cross_entropy_forward``,
through ``log_softmax_forward``), reading the logits from memory once per direction (the row's
later passes find it in the cache):

* forward: ``m = max x`` and ``Σ x`` in one pass, ``e = exp(x - m)``, ``s = Σ e`` (rounded to
  the dtype), ``lse = log s``, the target's ``-log p_y = -((x_y - m) - lse)``, the smoothing
  term ``-Σ_j log p_j / V`` with ``Σ_j log p_j = Σ x - V m - V lse`` (in float64, rounded to the
  dtype), and ``p = e / s`` written for the cache; an ignored row gets a loss of exactly 0 and
  the probabilities of a row of zeros (as the reference, which zeroes such rows first), and its
  logits are never read, so their NaN or inf reaches nothing;
* backward: ``dlogits = (p - ε/V - (1 - ε) onehot(y)) · scale`` in one pass, ignored rows
  exactly 0; the same steps, in the same order and dtype, as the reference.

Where the forward differs from the reference (within the tolerances of the op tests):

* ``p = e / s``, where the reference takes ``exp((x - m) - lse)``: one ``exp`` per logit instead
  of two, and closer to the exact softmax (the reference rounds ``lse`` to the dtype first, an
  error of up to ``|log p|`` ulps in ``p``);
* ``Σ log p`` from ``Σ x`` in float64, where the reference adds the rounded ``log p`` pairwise in
  the dtype; the row sums run in ``LANES`` float64 lanes added in a fixed order (so they
  vectorize without reassociation), where NumPy adds pairwise in the dtype;
* ``exp`` is ``numba_math._exp`` (float32 or float64), ``log`` the C library's, each within an
  ulp or two of NumPy's.

The sum over rows of the per-row losses is left to the op (NumPy's, as in the reference).
Results are the same bits run to run and whatever the number of threads.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numba
import numpy as np

from .numba_arrays import float_dtype
from .numba_math import _JIT, _PARALLEL, _exp

__all__ = ["LANES", "LOSS_KERNELS", "cross_entropy_backward", "cross_entropy_forward"]

#: the lanes of a row's max and sums: lane k takes the entries k, k + LANES, k + 2 LANES, ...
#: in order, then the lanes are combined in order (a fixed order, whatever the machine's vector
#: width: each lane's steps are elementwise, so the compiler vectorizes them without
#: reassociating anything)
LANES = 64

_INLINE = dict(inline="always", **_JIT)

# -- scalar helpers -----------------------------------------------------------------------------


@numba.njit(**_INLINE)
def _lane_sum(lanes: Any) -> float:  # pragma: no cover - compiled
    """Σ of the float64 lanes, in order."""
    s = 0.0
    for k in range(LANES):
        s += lanes[k]
    return s


# -- the loops ----------------------------------------------------------------------------------


@numba.njit(**_PARALLEL)
def _cross_entropy_forward(x, targets, valid, smoothing, one_minus_eps, eps, n_classes,
                           uniform, zero, probs, per_row, sums):  # pragma: no cover - compiled
    # per row r of x: m = max x, s = Σ exp(x - m), lse = log s, p = exp(x - m) / s,
    # z_y = (x_y - m) - lse, per_row = -z_y, with smoothing (1 - ε) · -z_y + ε · -Σ z / V
    # (Σ z = Σ x - V m - V lse), 0 where not valid;
    # x, probs: (N, V); targets (intp), valid, per_row: (N,); sums: (N, 2) scratch in the dtype
    rows, n = x.shape
    blocks = n // LANES
    tail = n - blocks * LANES
    for r in numba.prange(rows):
        if not valid[r]:  # the reference's row of zeros: p = exp(0 - log V); x not read
            for j in range(n):
                probs[r, j] = uniform
            per_row[r] = zero
            continue
        top_k = np.empty(LANES, x.dtype)  # the lanes' maxima
        acc = np.zeros(LANES)  # the lanes' float64 sums
        for k in range(LANES):
            top_k[k] = x[r, 0]
        for b in range(blocks):  # max x and Σ x, in one pass over the row
            for k in range(LANES):
                v = x[r, b * LANES + k]
                if v > top_k[k]:
                    top_k[k] = v
                acc[k] += v
        for k in range(tail):
            v = x[r, blocks * LANES + k]
            if v > top_k[k]:
                top_k[k] = v
            acc[k] += v
        top = top_k[0]
        for k in range(1, LANES):
            if top_k[k] > top:
                top = top_k[k]
        sum_x = _lane_sum(acc)
        for j in range(n):
            probs[r, j] = _exp(x[r, j] - top)  # exp(x - m), for now
        for k in range(LANES):
            acc[k] = 0.0
        for b in range(blocks):
            for k in range(LANES):
                acc[k] += probs[r, b * LANES + k]
        for k in range(tail):
            acc[k] += probs[r, blocks * LANES + k]
        sums[r, 0] = _lane_sum(acc)  # Σ exp, rounded to the dtype on the store
        total = sums[r, 0]
        lse = math.log(total)
        for j in range(n):
            probs[r, j] = probs[r, j] / total  # softmax
        z = x[r, targets[r]] - top
        loss = -(z - lse)  # the target's -log p
        if smoothing:
            # Σ_j ((x_j - m) - lse) in float64, rounded to the dtype on the store
            sums[r, 1] = (sum_x - n * float(top)) - n * float(lse)
            smooth = -(sums[r, 1] / n_classes)  # -mean log p
            hard = one_minus_eps * loss
            soft = eps * smooth
            loss = hard + soft
        per_row[r] = loss


@numba.njit(**_PARALLEL)
def _cross_entropy_backward(probs, targets, valid, eps_over_v, one_minus_eps, scale, zero,
                            dx):  # pragma: no cover - compiled
    # per row: dx = (p - ε/V - (1 - ε) onehot(y)) · scale, 0 where not valid;
    # probs, dx: (N, V), targets (intp), valid: (N,)
    rows, n = probs.shape
    for r in numba.prange(rows):
        if not valid[r]:
            for j in range(n):
                dx[r, j] = zero
            continue
        for j in range(n):
            d = probs[r, j] - eps_over_v
            dx[r, j] = d * scale
        t = targets[r]
        d = probs[r, t] - eps_over_v
        d = d - one_minus_eps
        dx[r, t] = d * scale


# -- the kernels, as the ops call them ----------------------------------------------------------


def _targets(name: str, targets: Any, valid: Any, rows: int, n_classes: int) -> tuple[Any, Any]:
    """``targets`` and ``valid`` as flat (N,) arrays (intp, bool), the targets in [0, V): the
    loops index with them and check nothing."""
    t = np.asarray(targets).reshape(-1).astype(np.intp, copy=False)
    v = np.ascontiguousarray(np.asarray(valid, dtype=np.bool_).reshape(-1))
    if t.shape != (rows,) or v.shape != (rows,):
        raise ValueError(f"fused Numba kernel {name} needs targets and valid of shape ({rows},), "
                         f"got {t.shape} and {v.shape}")
    if rows and (t.min() < 0 or t.max() >= n_classes):
        raise IndexError(f"fused Numba kernel {name} needs targets in [0, {n_classes}) (ignored "
                         f"ones replaced by 0), got [{t.min()}, {t.max()}]")
    return np.ascontiguousarray(t), v


def cross_entropy_forward(
    logits: Any, targets: Any, valid: Any, label_smoothing: float
) -> tuple[Any, Any, Any]:
    """Per-row losses, probabilities and safe targets of cross-entropy, as the reference op.

    logits: (..., V) float32 or float64; targets: (...) integers in [0, V) where ``valid``;
    valid: (...) True where the target is not ignore_index. Returns ``per_row`` (N,) (exactly 0
    where not valid), ``probs`` (N, V) (softmax; the softmax of a row of zeros where not valid)
    and the targets (N,) with the ignored ones replaced by 0, in their own dtype.
    """
    dt = float_dtype("fused Numba kernel cross_entropy_forward", "input", logits)
    k = dt.type
    n_classes = logits.shape[-1]
    x = np.ascontiguousarray(np.asarray(logits).reshape(-1, n_classes))  # (N, V)
    rows = x.shape[0]
    y = np.asarray(targets).reshape(-1)  # (N,)
    v = np.asarray(valid).reshape(-1)
    y_safe = np.where(v, y, 0)  # as the reference
    t, v = _targets("cross_entropy_forward", y_safe, v, rows, n_classes)
    eps = float(label_smoothing)
    # the reference's row of zeros: z = 0 - log(V · exp(0)), p = exp(z), in NumPy's own ufuncs
    uniform = np.exp(-np.log(np.full(1, n_classes, dt)))[0]
    probs, per_row = np.empty_like(x), np.empty(rows, dt)
    _cross_entropy_forward(x, t, v, eps > 0.0, k(1.0 - eps), k(eps), k(n_classes), uniform,
                           k(0.0), probs, per_row, np.empty((rows, 2), dt))
    return per_row, probs, y_safe


def cross_entropy_backward(
    probs: Any, targets: Any, valid: Any, scale: Any, label_smoothing: float
) -> Any:
    """``dlogits = (p - q) · scale``, q the smoothed one-hot of the targets, 0 where not valid.

    probs: (N, V) float32 or float64; targets: (N,) in [0, V); valid: (N,) bool; scale: the
    factor ``dloss / count`` (a number or a 0-d array), rounded to the dtype. Returns (N, V).
    """
    dt = float_dtype("fused Numba kernel cross_entropy_backward", "input", probs)
    k = dt.type
    n_classes = probs.shape[-1]
    p = np.ascontiguousarray(np.asarray(probs).reshape(-1, n_classes))  # (N, V)
    t, v = _targets("cross_entropy_backward", targets, valid, p.shape[0], n_classes)
    eps = float(label_smoothing)
    dx = np.empty_like(p)
    _cross_entropy_backward(p, t, v, k(eps / n_classes), k(1.0 - eps), k(np.asarray(scale)),
                            k(0.0), dx)
    return dx


LOSS_KERNELS: dict[str, Callable[..., Any]] = {
    "cross_entropy_forward": cross_entropy_forward,
    "cross_entropy_backward": cross_entropy_backward,
}
