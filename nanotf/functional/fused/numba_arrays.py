"""What the Numba kernels' wrappers share (``numba_kernels``, ``numba_bias_relu``,
``numba_dropout``, ``numba_loss``): the check that inputs are float32 or float64, and the flat
or row-wise C-contiguous views the loops read. Plain NumPy, called once per kernel call, so
they are kept cheap: a dtype's one-letter code, not its name, and no copy of a contiguous array.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["ROWS_PER_BLOCK", "float_dtype", "flat", "rows", "same_float_dtype"]

#: rows per block of the partial sums over rows (LayerNorm's dγ and dβ, bias + ReLU's dbias):
#: fixed, so the sums do not depend on the number of threads
ROWS_PER_BLOCK = 32

_FLOAT_CHARS = ("f", "d")  # float32, float64


def same_float_dtype(*arrays: Any) -> np.dtype:
    """The one float dtype of ``arrays`` (float32 or float64), else ``TypeError``."""
    dt = arrays[0].dtype
    if dt.char not in _FLOAT_CHARS or any(a.dtype != dt for a in arrays[1:]):
        names = sorted({a.dtype.name for a in arrays})
        raise TypeError(
            f"fused Numba kernels need float32 or float64 inputs of one dtype, got {names}"
        )
    return dt


def float_dtype(who: str, what: str, a: Any) -> np.dtype:
    """The dtype of ``a`` (the ``what`` of kernel ``who``): float32 or float64, else
    ``TypeError``."""
    if a.dtype.char not in _FLOAT_CHARS:
        raise TypeError(f"{who} needs a float32 or float64 {what}, got {a.dtype.name}")
    return a.dtype


def flat(a: Any) -> np.ndarray:
    """``a`` as a flat contiguous array (a view where it is C-contiguous already, else a copy)."""
    a = np.asarray(a)
    return a.reshape(-1) if a.flags.c_contiguous else np.ascontiguousarray(a).reshape(-1)


def rows(a: Any) -> np.ndarray:
    """``a`` as C-contiguous rows of its last axis, (rows, n) (a view where it is C-contiguous)."""
    a = np.asarray(a)
    if not a.flags.c_contiguous:
        a = np.ascontiguousarray(a)
    return a.reshape(-1, a.shape[-1])
