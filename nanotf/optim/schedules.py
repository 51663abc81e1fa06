"""Learning-rate schedules: ``noam_lr``, ``cosine_lr`` and the ``LRScheduler`` that applies one.

The schedules are plain functions of the step number; ``LRScheduler(optimizer, fn)`` sets
``optimizer.lr = fn(t)`` before update number ``t``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from .base import Optimizer
from .checks import as_int, as_real

__all__ = ["LRScheduler", "cosine_lr", "noam_lr"]


def noam_lr(step: int, d_model: int, warmup: int, factor: float = 1.0) -> float:
    r"""The learning rate of "Attention Is All You Need" (the "Noam" schedule)::

        lr(step) = factor · d_model^(−1/2) · min(step^(−1/2), step · warmup^(−3/2))

    It rises linearly for ``warmup`` steps, peaks at ``step == warmup`` with
    ``factor / √(d_model · warmup)``, then decays like ``1/√step``. ``step`` starts at 1
    (the paper: d_model 512, warmup 4000, factor 1).
    """
    step = as_int("step", step, low=1)
    d_model = as_int("d_model", d_model, low=1)
    warmup = as_int("warmup", warmup, low=1)
    factor = as_real("factor", factor, low=0.0)
    return factor * d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)


def cosine_lr(
    step: int, base_lr: float, warmup: int, total_steps: int, min_lr: float = 0.0
) -> float:
    r"""Linear warm-up, then half a cosine from ``base_lr`` down to ``min_lr``::

        lr(step) = base_lr · step / warmup                                  step < warmup
        lr(step) = min_lr + ½·(base_lr − min_lr)·(1 + cos(π·s))             warmup ≤ step ≤ total
                   with s = (step − warmup) / (total_steps − warmup)
        lr(step) = min_lr                                                   step > total_steps

    ``step`` counts from 0 (lr 0) and reaches ``base_lr`` at ``step == warmup``; ``warmup=0``
    starts the cosine at once. The same curve as PyTorch's ``LinearLR`` followed by
    ``CosineAnnealingLR(T_max=total_steps - warmup, eta_min=min_lr)``.
    """
    step = as_int("step", step, low=0)
    warmup = as_int("warmup", warmup, low=0)
    total_steps = as_int("total_steps", total_steps, low=warmup + 1)
    base_lr = as_real("base_lr", base_lr, low=0.0)
    min_lr = as_real("min_lr", min_lr, low=0.0, high=base_lr)
    if step < warmup:
        return base_lr * step / warmup
    if step >= total_steps:
        return min_lr
    s = (step - warmup) / (total_steps - warmup)
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * s))


class LRScheduler:
    """Drives ``optimizer.lr`` from a function of the step number.

    Call ``scheduler.step()`` once per training step, *before* ``optimizer.step()``: it advances
    the count to ``t`` and sets ``optimizer.lr = fn(t)``, so update number ``t = 1, 2, ...`` uses
    ``fn(t)`` (as the Annotated Transformer's ``NoamOpt``)::

        sched = LRScheduler(opt, lambda t: noam_lr(t, d_model=512, warmup=4000))
        for batch in batches:
            ...forward, backward...
            sched.step()
            opt.step()
            opt.zero_grad()

    Constructing it leaves ``optimizer.lr`` as it is.
    """

    def __init__(self, optimizer: Optimizer, fn: Callable[[int], float]) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"optimizer: expected a nanotf.optim.Optimizer, got {type(optimizer).__name__}"
            )
        if not callable(fn):
            raise TypeError(f"fn: expected a function step -> lr, got {type(fn).__name__}")
        self.optimizer = optimizer
        self.fn = fn
        self.step_count = 0

    def step(self) -> float:
        """Advance to the next step and set (and return) its learning rate."""
        self.step_count += 1
        self.optimizer.lr = self.fn(self.step_count)
        return self.optimizer.lr

    @property
    def lr(self) -> float:
        """The optimizer's current learning rate."""
        return self.optimizer.lr

    def state_dict(self) -> dict[str, int]:
        return {"step": self.step_count}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the step count (and set ``optimizer.lr = fn(step)`` when ``step >= 1``).

        Checked before anything changes: the keys, the step, and the learning rate ``fn(step)``
        that it implies; a refused load leaves the scheduler and the optimizer as they were.
        """
        who = "LRScheduler.load_state_dict"
        if not isinstance(state, Mapping):
            raise TypeError(f"{who}: expected a dict {{'step': int}}, got {type(state).__name__}")
        if set(state) != {"step"}:
            raise ValueError(f"{who}: expected keys ['step'], given {sorted(state, key=str)}")
        step = as_int("step", state["step"], low=0)
        lr = as_real(f"{who}: fn({step})", self.fn(step), low=0.0) if step >= 1 else None
        # commit (nothing below can fail)
        if lr is not None:
            self.optimizer.lr = lr
        self.step_count = step
