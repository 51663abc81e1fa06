"""Finite-difference gradient checks for any op or module (central differences, float64).

The analytic gradient of a hand-written backward is compared with a numerical one. For an
output ``y = f(x)`` and a random upstream gradient ``g`` (so the "loss" is ``L = Σ g ⊙ y``),
the numerical derivative for each element ``x_i`` uses the seven-point central stencil

    ∂L/∂x_i ≈ Σ g ⊙ [45 Δ₁ - 9 Δ₂ + Δ₃] / (60 h),   Δ_k = f(x + k h e_i) - f(x - k h e_i),

whose error is O(h⁶) instead of O(h²) for the two-point rule: in float64 with h = 1e-3 it agrees
with a correct backward to about 1e-11 relative, even where the function curves sharply (a
LayerNorm row of small variance). Differences of outputs are taken elementwise before they are
summed, which keeps round-off small. Keep inputs 3h away from kinks (ReLU at 0).

The reported error of a gradient ``a`` against the numerical ``n`` is normwise relative:
``max |a - n| / max(max |a|, max |n|)``. A wrong backward gives errors near 1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from .backend import get_array_module, to_numpy

__all__ = ["gradcheck", "gradcheck_module", "numerical_gradient", "relative_error"]


def relative_error(analytic: Any, numeric: Any, floor: float = 0.0) -> float:
    """Normwise relative error ``max|a - n| / max(max|a|, max|n|, floor)`` (0 if all are 0).

    ``floor`` is the scale below which a gradient counts as zero: a gradient that vanishes
    exactly (by symmetry) is then judged against that scale, not against its own round-off.
    """
    a = to_numpy(analytic).astype(np.float64)
    n = to_numpy(numeric).astype(np.float64)
    if a.shape != n.shape:
        raise ValueError(f"gradient shapes differ: analytic {a.shape}, numerical {n.shape}")
    scale = max(np.abs(a).max(initial=0.0), np.abs(n).max(initial=0.0), floor)
    if scale == 0.0:
        return 0.0
    return float(np.abs(a - n).max() / scale)


def _require_float64(name: str, x: Any) -> None:
    if x.dtype != np.float64:
        raise TypeError(
            f"gradcheck needs float64 arrays (float32 round-off swamps the check), "
            f"got {name} of dtype {x.dtype}"
        )


def numerical_gradient(
    f: Callable[[], Any], x: Any, dout: Any, eps: float = 1e-3, indices: Iterable[int] | None = None
) -> Any:
    """∂(Σ dout ⊙ f())/∂x by the seven-point stencil, perturbing ``x`` in place and restoring it.

    ``f`` takes no arguments and reads ``x`` (and whatever else) itself. ``indices`` limits the
    check to some flat positions (the others are left 0).
    """
    xp = get_array_module(x)
    grad = xp.zeros(x.shape, dtype=np.float64)
    gflat = grad.reshape(-1)
    positions = range(x.size) if indices is None else indices
    for i in positions:
        # index x itself: a flat reshape of a non-contiguous x is a copy, never perturbed
        at = tuple(int(j) for j in np.unravel_index(int(i), x.shape))
        orig = float(x[at])
        outs = []
        for step in (eps, -eps, 2 * eps, -2 * eps, 3 * eps, -3 * eps):
            x[at] = orig + step
            # a copy: f() may return x itself (an identity op), which the next step perturbs
            outs.append(xp.array(f(), dtype=np.float64, copy=True))
        x[at] = orig
        d1, d2, d3 = outs[0] - outs[1], outs[2] - outs[3], outs[4] - outs[5]
        gflat[i] = float(((45.0 * d1 - 9.0 * d2 + d3) * dout).sum()) / (60.0 * eps)
    return grad


def gradcheck(
    forward: Callable[..., tuple[Any, Any]],
    backward: Callable[[Any, Any], Any],
    inputs: dict[str, Any],
    wrt: list[str] | None = None,
    dout: Any = None,
    eps: float = 1e-3,
    seed: int = 12345,
    forward_kwargs: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Check an op pair ``forward(**inputs, **forward_kwargs) -> (out, cache)`` and
    ``backward(dout, cache) -> gradients`` (one array, or a tuple in the order of ``wrt``).

    ``wrt`` names the inputs the backward returns gradients for (default: every floating
    input, in order). Returns ``{name: relative error}``.

    >>> from nanotf.functional import layernorm_forward, layernorm_backward
    >>> x, g, b = (np.random.default_rng(0).normal(size=s) for s in [(2, 5), 5, 5])
    >>> errs = gradcheck(layernorm_forward, layernorm_backward, dict(x=x, gamma=g, beta=b))
    >>> max(errs.values()) < 1e-9
    True
    """
    kwargs = forward_kwargs or {}
    if wrt is None:
        wrt = [k for k, v in inputs.items() if hasattr(v, "dtype") and v.dtype.kind == "f"]
    for name in wrt:
        if name not in inputs:
            raise KeyError(f"wrt names {name!r}, which is not among the inputs {list(inputs)}")
        _require_float64(name, inputs[name])
    out, cache = forward(**inputs, **kwargs)
    xp = get_array_module(out)
    if dout is None:
        gen = np.random.default_rng(seed)
        dout = xp.asarray(gen.normal(size=np.shape(out)))
    grads = backward(dout, cache)
    if not isinstance(grads, tuple):
        grads = (grads,)
    grads = grads[: len(wrt)]
    if len(grads) != len(wrt):
        raise ValueError(f"backward returned {len(grads)} gradients for {len(wrt)} inputs {wrt}")

    def f() -> Any:
        return forward(**inputs, **kwargs)[0]

    return {
        name: relative_error(g, numerical_gradient(f, inputs[name], dout, eps))
        for name, g in zip(wrt, grads, strict=True)
    }


def gradcheck_module(
    module: Any,
    *inputs: Any,
    dout: Any = None,
    eps: float = 1e-3,
    seed: int = 12345,
    max_per_tensor: int | None = None,
    check_inputs: bool = True,
    zero_floor: float = 1e-3,
    **forward_kwargs: Any,
) -> dict[str, float]:
    """Check a module: ``module.forward(*inputs, **kw)`` then ``module.backward(dout)``.

    Every parameter (by its dotted name) and every floating input (``input.0``, ...) is
    checked; ``max_per_tensor`` samples that many random elements of each tensor instead of all.
    Parameters must be float64 (``set_default_dtype("float64")`` before building the module).
    Returns ``{name: relative error}``. A gradient that is zero by symmetry (the key bias of
    attention: adding a constant to every score of a row leaves the softmax unchanged) is judged
    against ``zero_floor`` times the largest gradient of the module instead of its own round-off.
    """
    params = list(module.named_parameters())
    for name, p in params:
        _require_float64(name, p.data)
    # (name, position, array) of the floating inputs; integer ids have no gradient
    float_inputs = [
        (f"input.{i}", i, x) for i, x in enumerate(inputs) if getattr(x, "dtype", None) is not None
        and x.dtype.kind == "f"
    ]
    for name, _, x in float_inputs:
        _require_float64(name, x)

    module.zero_grad()
    out = module.forward(*inputs, **forward_kwargs)
    xp = get_array_module(out)
    gen = np.random.default_rng(seed)
    if dout is None:
        dout = xp.asarray(gen.normal(size=np.shape(out)))
    dx = module.backward(dout)
    dxs = dx if isinstance(dx, tuple) else (dx,)
    # (analytic gradient, the array it belongs to) by name
    checks = {name: (p.grad.copy(), p.data) for name, p in params}
    if check_inputs:
        for name, pos, x in float_inputs:
            if pos < len(dxs) and dxs[pos] is not None:
                checks[name] = (dxs[pos], x)

    def f() -> Any:
        return module.forward(*inputs, **forward_kwargs)

    largest = max(float(np.abs(to_numpy(g)).max(initial=0.0)) for g, _ in checks.values())
    errors = {}
    for name, (grad, arr) in checks.items():
        idx = None
        if max_per_tensor is not None and arr.size > max_per_tensor:
            idx = gen.choice(arr.size, size=max_per_tensor, replace=False)
        num = numerical_gradient(f, arr, dout, eps, indices=idx)
        if idx is not None:
            grad = to_numpy(grad).reshape(-1)[idx]
            num = to_numpy(num).reshape(-1)[idx]
        errors[name] = relative_error(grad, num, floor=zero_floor * largest)
    return errors
