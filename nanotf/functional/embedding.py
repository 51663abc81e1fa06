"""Embedding lookup: ``out[..., :] = W[ids[...], :]``."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ..backend import get_array_module, scatter_add
from ..checks import (
    check_dout,
    check_float,
    check_int,
    check_int_ids,
    check_ndim,
    check_same_device,
)
from . import fused


class EmbeddingCache(NamedTuple):
    """What ``embedding_backward`` needs: the ids and the table's size (not the table)."""

    ids: Any  # (...) integers in [0, V)
    n_vocab: int  # V
    padding_idx: int | None  # the row that gets no gradient (made non-negative), or None
    n_dim: int  # C
    dtype: Any  # of the table


def embedding_forward(
    ids: Any, weight: Any, padding_idx: int | None = None
) -> tuple[Any, EmbeddingCache]:
    """Look rows of ``weight`` up by integer ``ids``.

    ids: (...) integers in [0, V), weight: (V, C). Returns ``out: (..., C)`` and the cache
    ``EmbeddingCache(ids, V, padding_idx, C, dtype)``. ``padding_idx`` (as in PyTorch) only
    affects the backward: that row gets no gradient.
    """
    check_float("embedding weight", weight)
    check_ndim("embedding weight", weight, 2)
    n_vocab, n_dim = weight.shape
    check_int_ids("embedding token ids", ids, n_vocab)
    check_same_device("embedding", ids=ids, weight=weight)
    if padding_idx is not None:
        check_int("embedding padding_idx", padding_idx)
        if not -n_vocab <= padding_idx < n_vocab:
            raise IndexError(
                f"embedding padding_idx must lie in [-{n_vocab}, {n_vocab}), got {padding_idx}"
            )
        if padding_idx < 0:
            padding_idx += n_vocab
    return weight[ids], EmbeddingCache(ids, n_vocab, padding_idx, n_dim, weight.dtype)


def embedding_backward(dout: Any, cache: EmbeddingCache) -> Any:
    """Gradient of the lookup: ``dW[v] = Σ_{positions p with ids[p] = v} dout[p]``.

    Repeated ids add up, and the ``padding_idx`` row stays zero. Returns ``dW: (V, C)``.

    The reference is one scatter-add (:func:`embedding_backward_reference`: ``np.add.at`` on
    NumPy, ``cupyx.scatter_add`` on CuPy, whose atomic adds run in any order, so the last bits of
    a float32 gradient may change from run to run). This op sums each id's rows in one fixed
    order instead (:func:`segment_sum`), on every backend: a GPU run repeats bit for bit, NumPy,
    the CPU stand-in and CuPy give the same bits, and on NumPy it is faster than ``np.add.at``
    and more accurate (a balanced tree of adds per id, not one long chain). With the fused
    paths off (``nanotf.functional.reference_only()``, ``NANOTF_FUSED=0``) it runs the reference.
    """
    ids, n_dim = cache.ids, cache.n_dim
    check_dout("embedding_backward", dout, (*ids.shape, n_dim), cache.dtype, "(..., C)")
    if not fused.enabled():  # the one switch that runs the reference everywhere
        return embedding_backward_reference(dout, cache)
    dweight = segment_sum(ids.reshape(-1), dout.reshape(ids.size, n_dim), cache.n_vocab)
    if cache.padding_idx is not None:
        dweight[cache.padding_idx] = 0
    return dweight


def embedding_backward_reference(dout: Any, cache: EmbeddingCache) -> Any:
    """The readable reference of :func:`embedding_backward`: ``dW = 0``, then one scatter-add
    ``dW[ids[p]] += dout[p]`` over every position (repeated ids add up)."""
    ids, n_dim = cache.ids, cache.n_dim
    check_dout("embedding_backward", dout, (*ids.shape, n_dim), cache.dtype, "(..., C)")
    xp = get_array_module(dout)
    dweight = xp.zeros((cache.n_vocab, n_dim), dtype=dout.dtype)
    scatter_add(dweight, ids.reshape(-1), dout.reshape(ids.size, n_dim))
    if cache.padding_idx is not None:
        dweight[cache.padding_idx] = 0
    return dweight


def segment_sum(indices: Any, values: Any, n_rows: int) -> Any:
    """``out[v] = Σ_{i with indices[i] = v} values[i]``, added in one fixed order (no atomics).

    indices: (N,) integers in [0, n_rows), values: (N, C). Returns ``out: (n_rows, C)`` in the
    dtype of ``values``, rows of absent indices zero.

    The rows are sorted by (index, position), so each index's rows form a run, in position
    order. Then, for d = 1, 2, 4, ..., the row at place r of its run, r a multiple of 2d, adds
    the row at place r + d when the run has one: a balanced tree of adds per run, whose sum ends
    up in the run's first row (rounding error ~log₂(run length)·ε, against ~run length·ε for one
    add after another). The order depends on ``indices`` alone, so the bits repeat. On NumPy
    each step touches only the rows that add; on other array modules (CuPy, the stand-in) each
    step is one masked add over all rows, with ⌈log₂ N⌉ steps fixed by the shape, so nothing
    waits for the device. Both do the same adds: the results are equal bit for bit.
    """
    xp = get_array_module(values)
    n, n_dim = values.shape
    if n == 0:
        return xp.zeros((n_rows, n_dim), dtype=values.dtype)
    if n_rows * n >= 2**63:
        raise ValueError(f"segment_sum: n_rows * N must be below 2**63, got {n_rows} * {n}")
    ids = indices.astype(np.int64)  # (N,)
    # the keys index * N + position are distinct, so any sort puts the rows in this one order
    order = xp.argsort(ids * n + xp.arange(n, dtype=np.int64))  # (N,)
    sorted_ids = ids[order]  # (N,) ascending
    acc = values[order]  # (N, C) a copy: each id's rows together, in position order
    first = xp.searchsorted(sorted_ids, sorted_ids, side="left")  # (N,) where each run starts
    length = xp.searchsorted(sorted_ids, sorted_ids, side="right") - first  # (N,) run lengths
    place = xp.arange(n, dtype=np.int64) - first  # (N,) r: each row's place in its run
    d = 1
    if xp is np:
        longest = int(length.max())
        while d < longest:
            rows = xp.flatnonzero((place % (2 * d) == 0) & (place + d < length))  # (n_d,)
            acc[rows] += acc[rows + d]  # rows and rows + d are disjoint
            d *= 2
        out = xp.zeros((n_rows, n_dim), dtype=values.dtype)
        heads = xp.flatnonzero(place == 0)  # (n_unique,) each run's first row holds its sum
        out[sorted_ids[heads]] = acc[heads]
        return out
    while d < n:
        adds = (place[:-d] % (2 * d) == 0) & (place[:-d] + d < length[:-d])  # (N - d,)
        acc[:-d] = xp.where(adds[:, None], acc[:-d] + acc[d:], acc[:-d])
        d *= 2
    # each run's first row goes to its index; every other row to a scratch row n_rows, dropped
    out = xp.zeros((n_rows + 1, n_dim), dtype=values.dtype)
    out[xp.where(place == 0, sorted_ids, n_rows)] = acc
    return out[:n_rows]
