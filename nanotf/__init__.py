"""nanotf: a from-scratch Transformer on NumPy and CuPy where every gradient is written by hand."""

from .backend import (
    BackendUnavailableError,
    asarray,
    default_dtype,
    get_array_module,
    get_backend,
    manual_seed,
    rng,
    set_backend,
    set_default_dtype,
    to_numpy,
)

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailableError",
    "asarray",
    "default_dtype",
    "get_array_module",
    "get_backend",
    "manual_seed",
    "rng",
    "set_backend",
    "set_default_dtype",
    "to_numpy",
]
