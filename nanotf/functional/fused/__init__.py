"""Fused kernels: fast paths that sit beside the ops, and the one switch that turns them off.

An op stays readable array code, the reference that the docs and notebooks teach. Where a faster
kernel exists for the array module of its inputs, the op hands it the same inputs, after its own
input checks, and builds its usual outputs and cache from what the kernel returns, so a fused
forward's cache feeds the reference backward and the other way round. The pattern, in an op::

    kernel = fused.kernel_for("layernorm_forward", x)
    if kernel is not None:
        out, xhat, rstd = kernel(x, gamma, beta, eps)
        return out, LayerNormCache(xhat, rstd, gamma)
    ...  # the reference

The switch:

* ``enabled()``: whether ops may use fused kernels (default True);
* ``set_enabled(flag)``: turn them on or off for the whole process;
* ``reference_only()``: a context manager that runs the reference everywhere inside it;
* the environment variable ``NANOTF_FUSED=0`` (or ``false``, ``off``, ``no``), read when this
  module is imported, starts with them off.

Kernels are found by op name and array module name (``"cupy"``, ``"numpy"``, ``"strict"`` for
the CPU stand-in), read off the array's type, so nothing here imports CuPy on a machine without
it. CuPy's kernels (``cupy_kernels``) are registered the first time an op sees a CuPy array, and
each is compiled the first time it runs. On the CPU, where Numba is installed (the ``fast``
extra), Numba's kernels (``numba_kernels``) are registered the first time an op sees a NumPy
array (or a stand-in array: thin wrappers around the same kernels, so the stand-in's results stay
NumPy's bit for bit), and each is compiled once per dtype on its first call and cached on disk.
Without Numba nothing is registered for NumPy or the stand-in, and every op on the CPU runs its
reference. Lazy registration never replaces a kernel that ``register`` put there first.

``OPS`` lists the ops that may dispatch and what their kernel takes and returns; ``register``
adds a kernel for one op and one array module.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from ._threads import THREADS_ENV_VAR, kernel_threads, set_kernel_threads

__all__ = [
    "ENV_VAR",
    "OPS",
    "THREADS_ENV_VAR",
    "array_module_name",
    "enabled",
    "kernel_for",
    "kernel_threads",
    "reference_only",
    "register",
    "set_enabled",
    "set_kernel_threads",
]

ENV_VAR = "NANOTF_FUSED"

#: op name -> what its kernel is called with and what it returns (arrays of the inputs' dtype)
OPS: dict[str, str] = {
    "gelu_forward": "(x, approximate) -> (out, saved): out like x, saved flat (n,) as GeluCache",
    "gelu_backward": "(dout, x, saved, approximate) -> dx, like x",
    "bias_gelu_forward": "(x, bias, approximate) -> (out, z, saved): z = x + bias, saved flat",
    "bias_gelu_inference": "(x, bias, approximate) -> out, like x: the forward's out alone",
    "bias_relu_forward": "(x, bias) -> (out, z): z = x + bias, out = max(z, 0), both like x",
    "bias_relu_backward": "(dout, out) -> (dx, dbias): dx = dout · (out > 0) like out, dbias (C,)",
    "layernorm_forward": "(x, gamma, beta, eps) -> (out, xhat, rstd): rstd (..., 1)",
    "layernorm_backward": "(dout, xhat, rstd, gamma) -> (dx, dgamma, dbeta)",
    "softmax_forward": "(x) -> y: softmax along the last axis",
    "softmax_backward": "(dout, y) -> dx: along the last axis",
    "masked_softmax_forward": "(x, mask, scale) -> (scores, probs): along the last axis",
    "dropout_forward": "(x, u, p) -> (out, keep): u the draw (float) or the kept mask (bool)",
    "dropout_forward_counter": (
        "(x, gen, p) -> (out, keep): gen a CounterGenerator, advanced as gen.random(x.shape)"
    ),
    "dropout_forward_pcg64": (
        "(x, gen, p) -> (out, keep): gen a numpy.random.Generator over PCG64, left as"
        " gen.random(x.shape, dtype=x.dtype) leaves it"
    ),
    "adam_update": (
        "(theta, g, m, v, *, l2, decay, w, beta2, step_size, bias_correction2_sqrt, eps) -> None:"
        " theta, m, v updated in place"
    ),
    "adam_update_many": (
        "(thetas, grads, ms, vs, *, cache, l2, decay, ...) -> bool: adam_update on each"
        " parameter (lists of arrays), in one call; False, nothing done, where the arrays do not"
        " suit it; cache a dict the caller keeps from call to call"
    ),
    "cross_entropy_forward": (
        "(logits, targets, valid, label_smoothing) -> (per_row, probs, targets_safe): (N,),"
        " (N, V), (N,); per_row 0 and targets_safe 0 where not valid"
    ),
    "cross_entropy_backward": (
        "(probs, targets, valid, scale, label_smoothing) -> dlogits (N, V): (p - q) · scale,"
        " 0 where not valid"
    ),
}

_TRUE = ("1", "true", "on", "yes")
_FALSE = ("0", "false", "off", "no")


def _parse_env(value: str | None) -> bool:
    """The value of ``NANOTF_FUSED``: unset or empty means on; else one of the words above."""
    if value is None or value.strip() == "":
        return True
    word = value.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(
        f"{ENV_VAR} must be 1 or 0 (or true/false, on/off, yes/no) to turn fused kernels on or "
        f"off, got {value!r}"
    )


_state: dict[str, Any] = {"enabled": _parse_env(os.environ.get(ENV_VAR))}

# (op name, array module name) -> kernel
_KERNELS: dict[tuple[str, str], Callable[..., Any]] = {}
# array modules whose kernels are registered on first use, and whether that happened
_LAZY: dict[str, bool] = {"cupy": False, "numpy": False, "strict": False}


def enabled() -> bool:
    """True when ops may hand their work to fused kernels (the default), False for the reference."""
    return _state["enabled"]


def set_enabled(flag: bool) -> None:
    """Turn fused kernels on (True) or off (False, the readable reference everywhere)."""
    if not isinstance(flag, bool):
        raise TypeError(
            f"fused.set_enabled expects True or False, got {type(flag).__name__} {flag!r}"
        )
    _state["enabled"] = flag


@contextmanager
def reference_only() -> Iterator[None]:
    """Run the readable reference of every op inside the block; the switch is restored after.

    >>> with reference_only():
    ...     assert not enabled()
    """
    saved = _state["enabled"]
    _state["enabled"] = False
    try:
        yield
    finally:
        _state["enabled"] = saved


def register(op: str, module: str, kernel: Callable[..., Any]) -> None:
    """Make ``kernel`` the fused kernel of ``op`` for arrays of array module ``module``.

    ``op`` is one of ``OPS`` (its entry says what the kernel takes and returns); ``module`` an
    array module's name, as ``array_module_name`` gives it (``"cupy"``, ``"numpy"``, ``"strict"``).
    """
    if op not in OPS:
        raise ValueError(f"fused.register: unknown op {op!r}, expected one of {sorted(OPS)}")
    if not isinstance(module, str) or not module:
        raise TypeError(f"fused.register: module must be an array module's name, got {module!r}")
    if not callable(kernel):
        raise TypeError(f"fused.register: kernel must be callable, got {type(kernel).__name__}")
    _KERNELS[(op, module)] = kernel


def array_module_name(a: Any) -> str:
    """The name of ``a``'s array module, from its type alone (CuPy is never imported here):
    ``"numpy"``, ``"cupy"``, or the stand-in's ``"strict"``."""
    if type(a) is np.ndarray:  # the common case, answered without a lookup
        return "numpy"
    ns = getattr(type(a), "__array_namespace_nanotf__", None)
    if ns is not None:
        return ns().__name__
    return type(a).__module__.partition(".")[0]


def _load(module: str) -> None:
    """Register the kernels of ``module`` the first time one of its arrays reaches an op."""
    _LAZY[module] = True
    if module == "cupy":
        from . import cupy_kernels

        for op, kernel in cupy_kernels.KERNELS.items():
            register(op, "cupy", kernel)
        return
    try:  # "numpy" or "strict": Numba's kernels, where Numba is installed
        from . import numba_kernels
    except ImportError:  # no Numba (or none that loads): the reference runs
        return
    kernels = numba_kernels.KERNELS if module == "numpy" else numba_kernels.STRICT_KERNELS
    for op, kernel in kernels.items():
        if (op, module) not in _KERNELS:  # a kernel registered by hand stays
            register(op, module, kernel)


def kernel_for(op: str, x: Any) -> Callable[..., Any] | None:
    """The fused kernel of ``op`` for the array module of ``x``, or None: the op then runs its
    reference. None whenever the switch is off."""
    if not _state["enabled"]:
        return None
    module = array_module_name(x)
    if _LAZY.get(module) is False:
        _load(module)
    return _KERNELS.get((op, module))
