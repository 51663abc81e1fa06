"""Parameter: an array of weights and the array of its gradient, side by side."""

from __future__ import annotations

from typing import Any

from ..backend import get_array_module


class Parameter:
    """A trainable array.

    ``data`` holds the weights and ``grad`` the gradient of the loss with respect to them
    (same shape, dtype and device). Backward passes *add* into ``grad``, so a parameter used
    twice (tied embeddings) collects both contributions. ``zero_grad()`` resets it.
    """

    __slots__ = ("data", "grad", "name")

    def __init__(self, data: Any, name: str = "") -> None:
        xp = get_array_module(data)
        if not xp.issubdtype(data.dtype, xp.floating):
            raise TypeError(f"Parameter needs a floating-point array, got dtype {data.dtype}")
        self.data = data
        self.grad = xp.zeros_like(data)
        self.name = name

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def dtype(self) -> Any:
        return self.data.dtype

    def zero_grad(self) -> None:
        self.grad[...] = 0

    def __repr__(self) -> str:
        name = f"{self.name!r}, " if self.name else ""
        return f"Parameter({name}shape={self.shape}, dtype={self.dtype})"
