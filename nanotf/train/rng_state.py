"""The state of nanotf's random generator as JSON-able data: what a checkpoint stores, and what a
step that is abandoned sets back.

Two kinds of state, one per kind of generator (``nanotf.backend.rng()``):

* NumPy's generator (the NumPy backend's default): its ``bit_generator.state``, a dict with
  ``"bit_generator": "PCG64"`` (what every checkpoint held before the counter generator);
* the counter generator (CuPy, or any backend after ``set_rng_kind("counter")``):
  ``{"kind": "splitmix64", "seed": s, "counter": c}``, so a run on the GPU resumes exactly too.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..backend import rng, rng_kind
from ..counter_rng import KIND, CounterGenerator

__all__ = ["host_rng_state", "set_host_rng_state"]


def host_rng_state() -> dict[str, Any] | None:
    """The backend generator's state as JSON-able data; None for a generator nanotf cannot
    read (one set from outside, say)."""
    g = rng()
    if isinstance(g, np.random.Generator):
        return g.bit_generator.state
    if isinstance(g, CounterGenerator):
        return g.state
    return None


def _describe(state: Mapping[str, Any]) -> str:
    if state.get("kind") == KIND:
        return "a counter generator's state"
    return f"a NumPy {state.get('bit_generator', '?')} state"


def set_host_rng_state(state: Mapping[str, Any] | None) -> None:
    """Put back a state from :func:`host_rng_state` (None changes nothing).

    A state of the other kind of generator (a checkpoint written on NumPy resumed on CuPy, or
    the other way round) cannot be continued: the generator is left as it is, with a warning
    that the run repeats but is not the continuation of the saved one. A malformed state raises
    ``ValueError`` (or NumPy's own error for a broken NumPy state).
    """
    if state is None:
        return
    if not isinstance(state, Mapping):
        raise ValueError(f"a random generator state must be a dict, got {type(state).__name__}")
    g = rng()
    is_counter_state = state.get("kind") == KIND
    if isinstance(g, CounterGenerator) and is_counter_state:
        g.state = state
    elif isinstance(g, np.random.Generator) and not is_counter_state:
        g.bit_generator.state = dict(state)
    elif isinstance(g, (CounterGenerator, np.random.Generator)):
        have = "the counter generator" if isinstance(g, CounterGenerator) else "NumPy's generator"
        warnings.warn(
            f"the saved random generator state is {_describe(state)}, but this run draws from "
            f"{have} (nanotf.backend.rng_kind() is {rng_kind()!r}): the generator is left as "
            "it is, so the run repeats but its dropout draws differ from the saved run's "
            "(use the same backend and set_rng_kind to continue it exactly)",
            stacklevel=2,
        )

