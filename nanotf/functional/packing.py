"""Packing a padded batch: the real tokens' rows alone, and back.

A batch of sequences of different lengths is padded to one length T, so an array of it is
(B, T, ...) with padding at the positions a mask marks False. Work done token by token (the
linear layers, LayerNorm, the feed-forward, dropout) needs only the N real tokens: on the rows
(N, ...) it costs N/(B·T) of the padded batch's time. Attention mixes positions, so it still runs
in the padded layout, where the mask keeps the padding out::

    packing = token_packing(mask)            # mask (B, T), True = real token
    rows = pack_tokens(x, packing)           # (B, T, C) -> (N, C), the real tokens in row order
    x2 = unpack_tokens(rows, packing)        # (N, C) -> (B, T, C), zeros at the padding

Both are linear, and each is the other's backward: ``pack_tokens`` keeps some rows (its
gradient puts ``drows`` back in place, zeros elsewhere: ``unpack_tokens``), and ``unpack_tokens``
writes rows into zeros (its gradient reads those rows back: ``pack_tokens``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ..backend import get_array_module
from ..checks import check_array, check_ndim, check_same_device, given


class TokenPacking(NamedTuple):
    """Where a padded (B, T) batch's real tokens are: ``index`` (N,) their flat positions
    ``b·T + t`` in row order (batch row by batch row, each left to right), ``shape`` (B, T) and
    ``mask`` (B, T) boolean, True for the real tokens."""

    index: Any
    shape: tuple[int, int]
    mask: Any

    @property
    def n_tokens(self) -> int:
        """N, the number of real tokens (rows of a packed array)."""
        return int(self.index.shape[0])


def token_packing(mask: Any) -> TokenPacking:
    """The packing of the real tokens of a (B, T) batch: ``mask`` boolean, True for real tokens
    (an integer 0/1 mask is taken too, nonzero = real). On a GPU this waits for the device once,
    to learn N (the size of ``index``); packing and unpacking after it do not."""
    check_ndim("token_packing mask", mask, 2)
    if mask.dtype.kind not in "biu":
        raise TypeError(
            f"token_packing mask must be boolean (True = real token) or 0/1 integers, got "
            f"{given(mask)}"
        )
    xp = get_array_module(mask)
    real = mask != 0  # (B, T) bool
    b, t = real.shape
    return TokenPacking(xp.flatnonzero(real), (int(b), int(t)), real)


def _check_packing(op: str, packing: Any) -> None:
    if not isinstance(packing, TokenPacking):
        raise TypeError(f"{op} packing must be a TokenPacking (token_packing(mask)), got "
                        f"{given(packing)}")


def pack_tokens(x: Any, packing: TokenPacking) -> Any:
    """x: (B, T, ...) -> (N, ...), the rows of the real tokens in row order (a copy).

    Its backward is ``unpack_tokens``: the padding's gradient is zero."""
    _check_packing("pack_tokens", packing)
    check_array("pack_tokens input", x)
    check_same_device("pack_tokens", input=x, index=packing.index)
    b, t = packing.shape
    if x.ndim < 2 or tuple(x.shape[:2]) != (b, t):
        raise ValueError(
            f"pack_tokens input must have the packing's (batch, length) = {(b, t)} as its first "
            f"two dimensions, got shape {tuple(x.shape)}"
        )
    flat = x.reshape(b * t, *x.shape[2:])  # (B·T, ...)
    return flat[packing.index]  # (N, ...)


def unpack_tokens(rows: Any, packing: TokenPacking) -> Any:
    """rows: (N, ...) -> (B, T, ...): each row at its token's position, zeros at the padding.

    Its backward is ``pack_tokens``."""
    _check_packing("unpack_tokens", packing)
    check_array("unpack_tokens rows", rows)
    check_same_device("unpack_tokens", rows=rows, index=packing.index)
    n = packing.n_tokens
    if rows.ndim < 1 or rows.shape[0] != n:
        raise ValueError(
            f"unpack_tokens rows must have one row per real token, (N, ...) with N = {n}, got "
            f"shape {tuple(rows.shape)}"
        )
    b, t = packing.shape
    xp = get_array_module(rows)
    out = xp.zeros((b * t, *rows.shape[1:]), dtype=rows.dtype)  # (B·T, ...), 0 at the padding
    out[packing.index] = rows
    return out.reshape(b, t, *rows.shape[1:])  # (B, T, ...)
