"""What stops a training step before its update: :class:`TrainingDiverged` (a loss or gradient
norm that is not finite)."""

from __future__ import annotations

import math

__all__ = ["TrainingDiverged", "check_finite"]


class TrainingDiverged(ArithmeticError):
    """Training produced a loss or a gradient norm that is not a finite number (``nan`` or
    ``inf``), usually because the learning rate is too high. Raised before the update, so the
    trainer holds the state after the last good step (``step``). ``quantity`` is ``"loss"`` or
    ``"gradient norm"``; ``value`` what it was."""

    def __init__(self, step: int, quantity: str, value: float, lr: float) -> None:
        self.step, self.quantity, self.value = step, quantity, value
        super().__init__(
            f"training diverged at step {step + 1}: the {quantity} is {value} (peak learning "
            f"rate {lr:g}); the model is left as it was after step {step}. Lower the learning "
            "rate, keep gradient clipping on or warm up for longer"
        )


def check_finite(step: int, quantity: str, value: float, lr: float) -> None:
    """Raise :class:`TrainingDiverged` when ``value`` (the ``quantity`` of the update after
    ``step``) is ``nan`` or ``inf``."""
    if not math.isfinite(value):
        raise TrainingDiverged(step, quantity, value, lr)
