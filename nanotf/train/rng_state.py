"""The state of nanotf's random generator as JSON-able data: what a checkpoint stores, and what a
step that is abandoned sets back."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import rng

__all__ = ["host_rng_state", "set_host_rng_state"]


def host_rng_state() -> dict[str, Any] | None:
    """The backend generator's state as JSON-able data (NumPy); None where it cannot be read."""
    g = rng()
    if isinstance(g, np.random.Generator):
        return g.bit_generator.state
    return None


def set_host_rng_state(state: dict[str, Any] | None) -> None:
    """Put back a state from :func:`host_rng_state` (None, or on CuPy: nothing changes)."""
    g = rng()
    if state is not None and isinstance(g, np.random.Generator):
        g.bit_generator.state = state
