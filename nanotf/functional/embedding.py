"""Embedding lookup: ``out[..., :] = W[ids[...], :]``."""

from __future__ import annotations

from typing import Any, NamedTuple

from ..backend import get_array_module, scatter_add
from ..checks import (
    check_dout,
    check_float,
    check_int,
    check_int_ids,
    check_ndim,
    check_same_device,
)


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

    Repeated ids add up (a scatter-add), and the ``padding_idx`` row stays zero.
    Returns ``dW: (V, C)``.
    """
    ids, n_dim = cache.ids, cache.n_dim
    check_dout("embedding_backward", dout, (*ids.shape, n_dim), cache.dtype, "(..., C)")
    xp = get_array_module(dout)
    dweight = xp.zeros((cache.n_vocab, n_dim), dtype=dout.dtype)
    scatter_add(dweight, ids.reshape(-1), dout.reshape(ids.size, n_dim))
    if cache.padding_idx is not None:
        dweight[cache.padding_idx] = 0
    return dweight
