"""Key/value caches for incremental (token-by-token) decoding: inference only.

When a decoder writes its output one token at a time, the keys and values of the positions it
has already read do not change (causal masking: an earlier position never sees a later one). A
cache keeps them, so that each step projects only the *new* positions and attends their queries
to every cached key; a step then costs O(1) positions instead of O(t).

* ``KVCache``: one attention layer's keys and values, (B, H, T_so_far, D) each, grown by
  concatenation along T (self-attention), or set once from the encoder memory (cross-attention).
* ``DecoderCache``: what a whole decoder stack carries between steps: one self-attention and one
  cross-attention ``KVCache`` per layer, the target padding mask of the positions read so far
  and the memory's padding mask.

Both have ``reorder(indices)``: row ``i`` of the result is row ``indices[i]`` of the cache, so
beam search keeps the surviving beams (a row may be picked several times, or dropped) and greedy
decoding drops the finished rows. ``indices`` is a 1-D integer array on the cache's device.

Nothing here is used by training: the cached path (``MultiHeadAttention.forward_cached``,
``DecoderLayer.decode_step``, ...) keeps nothing for a backward pass.
"""

from __future__ import annotations

from typing import Any

from ..backend import get_array_module

__all__ = ["DecoderCache", "KVCache"]


def _take_rows(a: Any, indices: Any) -> Any:
    return None if a is None else a[indices]


def _check_indices(indices: Any, batch: int | None) -> None:
    if getattr(indices, "ndim", None) != 1 or getattr(indices, "dtype", None) is None:
        raise TypeError(
            f"reorder expects a 1-D integer array of row indices, got "
            f"{getattr(indices, 'shape', type(indices).__name__)}"
        )
    if indices.dtype.kind not in "iu":
        raise TypeError(f"reorder expects integer row indices, got dtype {indices.dtype}")
    if batch is None:
        raise RuntimeError("reorder needs a filled cache (nothing is cached yet)")


class KVCache:
    """One attention layer's cached keys and values, ``(B, H, T, D)`` each (None while empty).

    ``append(k, v)`` adds new positions (self-attention) and returns the keys and values of all
    positions so far; ``set(k, v)`` stores keys and values computed once (cross-attention to a
    fixed memory, ``static`` becomes True). ``reorder(indices)`` picks rows (beams).
    """

    def __init__(self) -> None:
        self.keys: Any = None
        self.values: Any = None
        self.static = False  # True: set once from a memory (cross-attention), never appended to

    @property
    def length(self) -> int:
        """Cached positions (0 while empty)."""
        return 0 if self.keys is None else int(self.keys.shape[2])

    @property
    def batch(self) -> int | None:
        """Rows of the cache (None while empty)."""
        return None if self.keys is None else int(self.keys.shape[0])

    def append(self, k: Any, v: Any) -> tuple[Any, Any]:
        """k, v: (B, H, T_new, D) -> the keys and values of every position so far (B, H, T, D)."""
        if self.static:
            raise RuntimeError(
                "KVCache: this cache holds a memory's keys (set once); append to a "
                "self-attention cache instead"
            )
        if self.keys is None:
            self.keys, self.values = k, v
        else:
            if k.shape[0] != self.keys.shape[0]:
                raise ValueError(
                    f"KVCache: new keys have {k.shape[0]} rows, the cache has "
                    f"{self.keys.shape[0]} (reorder the cache to the new rows first)"
                )
            xp = get_array_module(k)
            self.keys = xp.concatenate([self.keys, k], axis=2)
            self.values = xp.concatenate([self.values, v], axis=2)
        return self.keys, self.values

    def set(self, k: Any, v: Any) -> None:
        """Store keys and values computed once, (B, H, S, D) (cross-attention to a memory)."""
        self.keys, self.values, self.static = k, v, True

    def reorder(self, indices: Any) -> None:
        """Keep the rows ``indices`` (1-D integer array on the cache's device), in that order."""
        _check_indices(indices, self.batch)
        self.keys, self.values = self.keys[indices], self.values[indices]

    def __repr__(self) -> str:
        shape = None if self.keys is None else tuple(self.keys.shape)
        return f"KVCache(shape={shape}, static={self.static})"


class DecoderCache:
    """What an encoder–decoder's decoder carries from one step to the next (inference only).

    ``self_attn[i]`` / ``cross_attn[i]``: layer ``i``'s ``KVCache`` for its masked
    self-attention and for its cross-attention (made by the decoder on the first step);
    ``target_mask`` (B, T) True for the real target tokens read so far; ``memory_mask`` (B, S)
    the source padding mask given on the first step (or None). Start with ``DecoderCache()``.
    """

    def __init__(self) -> None:
        self.self_attn: list[KVCache] = []
        self.cross_attn: list[KVCache] = []
        self.target_mask: Any = None
        self.memory_mask: Any = None

    @property
    def length(self) -> int:
        """Target positions read so far (0 before the first step)."""
        return 0 if self.target_mask is None else int(self.target_mask.shape[1])

    @property
    def batch(self) -> int | None:
        return None if self.target_mask is None else int(self.target_mask.shape[0])

    def layers(self, n: int) -> list[tuple[KVCache, KVCache]]:
        """The (self, cross) caches of ``n`` layers, made empty on the first call."""
        if not self.self_attn:
            self.self_attn = [KVCache() for _ in range(n)]
            self.cross_attn = [KVCache() for _ in range(n)]
        if len(self.self_attn) != n:
            raise ValueError(
                f"DecoderCache: holds {len(self.self_attn)} layers, the decoder has {n}"
            )
        return list(zip(self.self_attn, self.cross_attn, strict=True))

    def reorder(self, indices: Any) -> None:
        """Keep the rows ``indices`` of every cache and mask (beam search: the surviving
        beams' parents; greedy: the unfinished rows)."""
        _check_indices(indices, self.batch)
        for c in (*self.self_attn, *self.cross_attn):
            if c.keys is not None:
                c.reorder(indices)
        self.target_mask = _take_rows(self.target_mask, indices)
        self.memory_mask = _take_rows(self.memory_mask, indices)

    def __repr__(self) -> str:
        n = len(self.self_attn)
        return f"DecoderCache(layers={n}, batch={self.batch}, length={self.length})"
