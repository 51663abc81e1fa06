"""Notebook 06, "Loss and label smoothing": the learner derives the floor of the label-smoothed
cross-entropy, ``floor(eps, V) = H(q)`` for ``q = (1 - eps)·onehot + eps/V``."""

from __future__ import annotations

import math
from collections.abc import Callable

from ..train import smoothed_loss_floor
from .grading import exercise, largest_error


def _reference(eps: float, V: int) -> float:
    return smoothed_loss_floor(eps, V)


def _xlogx(x: float) -> float:
    return x * math.log(x) if x > 0.0 else 0.0


def _label_keeps_1_minus_eps(eps: float, V: int) -> float:
    return -_xlogx(1.0 - eps) - (V - 1) * _xlogx(eps / V)  # the label's share of eps/V forgotten


def _eps_over_every_class(eps: float, V: int) -> float:
    return -_xlogx(1.0 - eps + eps / V) - V * _xlogx(eps / V)  # V other classes instead of V - 1


def _only_the_label(eps: float, V: int) -> float:
    return -math.log(1.0 - eps + eps / V)  # -log q_y: the loss of one class, not the entropy


#: (eps, V): the paper's setting, tiny and large vocabularies, no smoothing, full smoothing
CASES = [(0.1, 14), (0.1, 37000), (0.05, 2), (0.3, 5), (0.9, 100), (0.0, 14), (1.0, 14)]


@exercise(
    "loss_floor",
    notebook=6,
    tol=1e-9,
    hint="q is 1 − ε + ε/V on the label and ε/V on each of the V − 1 others; the floor is "
    "−Σ q log q over all V classes, with 0·log 0 = 0 (ε = 0 gives 0, ε = 1 gives log V)",
    reference=_reference,
    mistakes={
        "q_label = 1 − ε": _label_keeps_1_minus_eps,
        "ε/V counted on V other classes": _eps_over_every_class,
        "−log q_label instead of the entropy": _only_the_label,
    },
)
def check_loss_floor(answer: Callable[[float, int], float]) -> float:
    """``answer(eps, V) -> floor`` against ``nanotf.train.smoothed_loss_floor`` for several
    (ε, V), ε = 0 and ε = 1 included; returns the largest relative error."""
    worst = 0.0
    for eps, v in CASES:
        got = answer(eps, v)
        want = smoothed_loss_floor(eps, v)
        worst = max(worst, largest_error(got, want, what=f"the floor for eps={eps}, V={v}"))
    return worst
