"""How many threads the CPU (Numba) kernels run on: the setting, apart from the kernels so that
they read it without importing ``nanotf.functional.fused`` (which imports them)."""

from __future__ import annotations

import os

__all__ = ["THREADS_ENV_VAR", "kernel_threads", "set_kernel_threads"]

THREADS_ENV_VAR = "NANOTF_KERNEL_THREADS"


def _parse_threads(value: str | None) -> int:
    """The value of ``NANOTF_KERNEL_THREADS``: unset or empty means 1; else a positive integer."""
    if value is None or value.strip() == "":
        return 1
    try:
        n = int(value.strip())
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(
            f"{THREADS_ENV_VAR} must be a positive integer (the threads of the CPU kernels), "
            f"got {value!r}"
        )
    return n


_state = {"threads": _parse_threads(os.environ.get(THREADS_ENV_VAR))}


def kernel_threads() -> int:
    """How many threads each CPU (Numba) kernel runs on: 1 unless ``set_kernel_threads`` says."""
    return _state["threads"]


def set_kernel_threads(n: int) -> None:
    """Run each CPU (Numba) kernel on ``n`` threads (``NANOTF_KERNEL_THREADS`` sets it at start).

    The default is 1: the kernels run between GEMMs, and OpenBLAS's threads keep spinning for a
    while after each GEMM, so a second pool of threads fights them for the cores. On this
    project's 2-core machine two kernel threads made a training step 3-10x slower than one (see
    benchmarks/README.md). More threads than Numba has (``NUMBA_NUM_THREADS``, the cores) run on
    as many as it has. Results are the same bits whatever the number.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"fused.set_kernel_threads expects a positive integer, got {n!r}")
    _state["threads"] = n
