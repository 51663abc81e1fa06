"""Inverted dropout: zero each element with probability p and scale the rest by 1 / (1 - p)."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ..backend import get_array_module
from ..backend import rng as default_rng
from ..checks import check_array, check_dout, check_float, check_real, check_same_device, given
from ..counter_rng import CounterGenerator
from . import fused


class DropoutCache(NamedTuple):
    """What ``dropout_backward`` needs: the draw and what dout must look like."""

    keep: Any  # the kept mask scaled by 1 / (1 - p), the shape of x; None for the identity
    shape: tuple[int, ...]  # of x (and of the output)
    dtype: Any  # of x


def dropout_forward(
    x: Any, p: float, training: bool = True, rng: Any = None, mask: Any = None
) -> tuple[Any, DropoutCache]:
    """``out = x * keep / (1 - p)`` with ``keep ~ Bernoulli(1 - p)``.

    The cache is ``DropoutCache(keep, shape, dtype)``: the kept mask, already scaled by
    1 / (1 - p), so the backward reuses exactly this draw, and the shape and dtype of x. In
    eval mode or with ``p = 0`` it is the identity and ``keep`` is None. ``rng`` defaults to the
    backend's seeded generator (``nanotf.rng()``: on CuPy the counter generator, whose state a
    checkpoint holds, so a resumed run draws the same masks); any generator with
    ``random(shape, dtype=...)`` will do. ``mask`` (bool, same shape as x) may be given to replay
    a known draw, e.g. to compare with another implementation.
    """
    check_float("dropout input", x)
    check_real("dropout probability", p, 0, 1)
    shape = tuple(x.shape)
    if rng is not None and not callable(getattr(rng, "random", None)):
        raise TypeError(
            "dropout rng must be a random generator with a random(shape, dtype) method "
            "(numpy.random.Generator, CuPy's, or nanotf.counter_rng.CounterGenerator), "
            f"got {given(rng)}"
        )
    if mask is not None:
        check_array("dropout mask", mask)
        check_same_device("dropout", x=x, mask=mask)
        if mask.dtype != bool:
            raise TypeError(f"dropout mask must be a boolean array (True = keep), got {mask.dtype}")
        if tuple(mask.shape) != shape:
            raise ValueError(f"dropout mask must have shape {shape}, got {tuple(mask.shape)}")
    if not training or p == 0.0:
        return x, DropoutCache(None, shape, x.dtype)
    xp = get_array_module(x)
    fast = x.ndim > 0  # fused kernels (nanotf.functional.fused) make arrays, NumPy 0-d scalars
    if mask is None:
        gen = default_rng() if rng is None else rng
        kernel = _drawing_kernel(x, gen) if fast else None
        if kernel is not None:  # the generator's words made into the mask in the loop: no u
            out, keep = kernel(x, gen, p)
            return out, DropoutCache(keep, shape, x.dtype)
        u = gen.random(x.shape, dtype=x.dtype)
        if get_array_module(u) is not xp:  # a generator of another device: move the draw
            u = xp.asarray(u)
    kernel = fused.kernel_for("dropout_forward", x) if fast else None
    if kernel is not None:  # one pass from the draw or the given mask
        out, keep = kernel(x, u if mask is None else mask, p)
        return out, DropoutCache(keep, shape, x.dtype)
    if mask is None:
        mask = u >= p
    scale = 0.0 if p == 1.0 else 1.0 / (1.0 - p)
    keep = mask.astype(x.dtype)
    keep *= scale  # 0 or 1/(1-p)
    return x * keep, DropoutCache(keep, shape, x.dtype)


def _drawing_kernel(x: Any, gen: Any) -> Any:
    """The fused kernel that draws from ``gen`` itself (nanotf's counter generator, or NumPy's
    Generator over PCG64), for x's array module; None for other generators or none there."""
    if type(gen) is CounterGenerator:
        return fused.kernel_for("dropout_forward_counter", x)
    if type(gen) is np.random.Generator and type(gen.bit_generator) is np.random.PCG64:
        return fused.kernel_for("dropout_forward_pcg64", x)
    return None


def dropout_backward(dout: Any, cache: DropoutCache) -> Any:
    """``dx = dout * keep / (1 - p)``: the same scaled mask as the forward (identity if none)."""
    check_dout("dropout_backward", dout, cache.shape, cache.dtype)
    return dout if cache.keep is None else dout * cache.keep
