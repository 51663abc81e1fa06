"""How many threads the BLAS library may use while training (:func:`blas_threads`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["blas_threads"]


@contextmanager
def blas_threads(n: int | None) -> Iterator[None]:
    """Limit the BLAS library (OpenBLAS, MKL) to ``n`` threads inside the block.

    Why: the matrices of a small model are tiny ((B·T) x 64 times 64 x 64). On them a second
    BLAS thread gains nothing, and when another process competes for the cores, threads that
    spin-wait for each other make every product up to 10x slower (measured on the 2-core
    machine: 42 ms per training step with one thread; 42-620 ms with two). ``n=None`` changes
    nothing.
    """
    if n is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=n, user_api="blas"):
        yield
