"""Shared fixtures and helpers of the test suite.

* ``xp_params``: the array backends an op test runs on: ``numpy``, ``strict`` (the CPU stand-in
  for CuPy that refuses silent host conversions) and ``cupy`` (marked ``gpu``: skipped where CuPy
  or a CUDA device is missing, with the reason).
* ``dtype``: float32 and float64.
* ``torch_reference``: runs a torch function on copies of NumPy inputs and back-propagates the
  fake loss ``(out * dout).sum()``, as in llm.c's layernorm tutorial.
* ``assert_close``: normwise relative error against the reference, at the tolerance of the dtype
  (``RTOL``), recorded per op so ``NANOTF_ERROR_TABLE=1 pytest`` prints the worst one seen.

Tolerances (normwise relative error ``max|got - want| / max|want|``):

* float64 vs torch: ``1e-10``. Both sides round at ~1e-16 per operation; the ops here chain at
  most a few dozen operations and short sums, so honest agreement is ~1e-15.
* float32 vs torch: ``1e-5``. float32 rounds at 6e-8; sums over up to a few hundred terms and
  the cancellations in LayerNorm's and softmax's backward stay two orders below this.
* finite differences (float64, five-point stencil, h = 1e-3): ``GRADCHECK_RTOL = 1e-9``; a
  correct backward typically reaches ~1e-12, a wrong one is off by ~1e-2 or more.

Normwise rather than elementwise: elementwise relative error is undefined where an entry is
(near) zero, and gradients such as LayerNorm's dx are sums that cancel to nearly zero by design.
Measuring against the largest entry of the reference needs no ad-hoc absolute tolerance.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch

import nanotf
from nanotf import backend as nanotf_backend
from nanotf.testing import strict as strict_mod

RTOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-5}
GRADCHECK_RTOL = 1e-9


# -- the gpu marker ---------------------------------------------------------------------------


def _cupy_unavailable_reason() -> str | None:
    """None when CuPy and a CUDA device work, else the reason nanotf gives."""
    try:
        nanotf_backend._import_cupy()
    except nanotf.BackendUnavailableError as err:
        return str(err)
    return None


CUPY_REASON = _cupy_unavailable_reason()
HAS_GPU = CUPY_REASON is None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if HAS_GPU:
        return
    skip = pytest.mark.skip(reason=f"gpu test: {CUPY_REASON}")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


# -- backends ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Backend:
    """Where a test puts its arrays: ``asarray`` moves host data there, ``host`` brings it back."""

    name: str
    xp: Any

    def asarray(self, a: Any) -> Any:
        if a is None:
            return None
        if self.name == "strict":
            return strict_mod.asarray(a)
        return self.xp.array(a, copy=True)

    def host(self, *arrays: Any) -> tuple[Any, ...]:
        """Copies on the host (None stays None); 0-d results become 0-d NumPy arrays."""
        return tuple(None if a is None else np.array(nanotf.to_numpy(a)) for a in arrays)

    def rng(self, seed: int) -> Any:
        """A fresh seeded generator that makes arrays on this backend."""
        return self.xp.random.default_rng(seed)


NUMPY = Backend("numpy", np)
STRICT = Backend("strict", strict_mod.strict)


def make_backend(name: str) -> Backend:
    if name == "numpy":
        return NUMPY
    if name == "strict":
        return STRICT
    if name == "cupy":
        if not HAS_GPU:
            pytest.skip(f"gpu test: {CUPY_REASON}")
        import cupy  # type: ignore[import-not-found]

        return Backend("cupy", cupy)
    raise ValueError(f"unknown test backend {name!r}")


BACKEND_NAMES = ["numpy", "strict", pytest.param("cupy", marks=pytest.mark.gpu)]


@pytest.fixture(params=BACKEND_NAMES)
def xp_params(request: pytest.FixtureRequest) -> Backend:
    """The backend an op test runs on: numpy, strict (CuPy stand-in), cupy (gpu)."""
    return make_backend(request.param)


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def fd_backend(request: pytest.FixtureRequest) -> Backend:
    """The backends of the finite-difference checks: numpy and cupy (gpu).

    A check runs the forward thousands of times; on the strict stand-in that costs seconds and
    adds nothing, since strict results equal NumPy's bit for bit (each ``test_strict_equals_numpy``)
    and ``tests/test_gradcheck.py`` runs gradcheck itself on strict arrays.
    """
    return make_backend(request.param)


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def dtype(request: pytest.FixtureRequest) -> np.dtype:
    return np.dtype(request.param)


@pytest.fixture(autouse=True)
def _restore_backend_state() -> Any:
    """Tests that switch backend, seed or default dtype leave nanotf as they found it."""
    saved = dict(nanotf_backend._state)
    yield
    nanotf_backend._state.clear()
    nanotf_backend._state.update(saved)


# -- references and comparisons ---------------------------------------------------------------


def torch_reference(
    fn: Callable[..., torch.Tensor], inputs: dict[str, Any], dout: np.ndarray
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``out = fn(**inputs)`` in torch and the gradients of ``(out * dout).sum()``.

    NumPy float arrays become leaf tensors that require grad (same dtype); other arrays (ids,
    masks) become plain tensors; everything else is passed as is. Returns ``out`` and
    ``{name: grad}`` for the float inputs, as NumPy arrays.
    """
    tensors: dict[str, Any] = {}
    for name, v in inputs.items():
        if isinstance(v, np.ndarray):
            t = torch.from_numpy(np.array(v))
            if v.dtype.kind == "f":
                t.requires_grad_(True)
            tensors[name] = t
        else:
            tensors[name] = v
    out = fn(**tensors)
    (out * torch.from_numpy(np.array(dout))).sum().backward()
    grads = {
        name: (t.grad.numpy() if t.grad is not None else np.zeros(t.shape, dtype=v.dtype))
        for (name, t), v in zip(tensors.items(), inputs.values(), strict=True)
        if isinstance(t, torch.Tensor) and t.requires_grad
    }
    return out.detach().numpy(), grads


def rel_error(got: Any, want: Any, scale: float = 0.0) -> float:
    """Normwise relative error ``max|got - want| / max(max|want|, max|got|, scale)``.

    0 when all of them are zero. ``scale`` is for results that cancel to (near) zero by design:
    the size of the terms they are computed from, which is what round-off is relative to.
    """
    g = np.asarray(got, dtype=np.float64)
    w = np.asarray(want, dtype=np.float64)
    if g.shape != w.shape:
        raise AssertionError(f"shapes differ: got {g.shape}, reference {w.shape}")
    if not np.isfinite(g).all():
        raise AssertionError("result has NaN or inf")
    if not np.isfinite(w).all():
        raise AssertionError("reference has NaN or inf (choose inputs where it is defined)")
    scale = max(np.abs(w).max(initial=0.0), np.abs(g).max(initial=0.0), scale)
    return 0.0 if scale == 0.0 else float(np.abs(g - w).max() / scale)


# worst error seen per (op, dtype): printed by NANOTF_ERROR_TABLE=1 pytest
WORST: dict[tuple[str, str], float] = defaultdict(float)


def assert_close(got: Any, want: Any, dtype: Any, what: str, scale: float = 0.0) -> None:
    """``got`` agrees with the reference ``want`` to ``RTOL[dtype]`` (normwise relative).

    ``what`` names the quantity (``"softmax.dx"``); the part before the dot names the op for
    the error table. ``scale``: see ``rel_error`` (used only where a result cancels by design).
    """
    dt = np.dtype(dtype)
    err = rel_error(got, want, scale)
    key = (what.split(".")[0], dt.name)
    WORST[key] = max(WORST[key], err)
    assert err <= RTOL[dt], f"{what}: relative error {err:.3g} > {RTOL[dt]:g} ({dt.name})"


def assert_all_close(
    got: Sequence[Any],
    want: Sequence[Any],
    dtype: Any,
    names: Sequence[str],
    scales: Sequence[float] | None = None,
) -> None:
    scales = [0.0] * len(names) if scales is None else scales
    for g, w, name, scale in zip(got, want, names, scales, strict=True):
        assert_close(g, w, dtype, name, scale)


def assert_dtypes(arrays: Sequence[Any], dtype: Any, names: Sequence[str]) -> None:
    """No silent upcast: every output and gradient keeps the input dtype."""
    for a, name in zip(arrays, names, strict=True):
        assert a.dtype == np.dtype(dtype), f"{name} has dtype {a.dtype}, expected {dtype}"


def assert_same_on_strict(run: Callable[[Backend], Sequence[Any]]) -> None:
    """``run(backend)`` gives bit-identical host results on NumPy and on the strict stand-in."""
    want = run(NUMPY)
    got = run(STRICT)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        if w is None:
            assert g is None
            continue
        assert isinstance(g, np.ndarray), f"strict run returned {type(g).__name__}, not a host copy"
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_array_equal(g, w)


# worst finite-difference error per op (float64), for the same table
FD_WORST: dict[str, float] = defaultdict(float)


def assert_gradcheck(errors: dict[str, float], op: str) -> None:
    """Every finite-difference error of a ``gradcheck`` result is at most ``GRADCHECK_RTOL``."""
    assert errors, "gradcheck checked nothing"
    worst = max(errors.values())
    FD_WORST[op] = max(FD_WORST[op], worst)
    assert worst <= GRADCHECK_RTOL, f"gradcheck errors {errors} exceed {GRADCHECK_RTOL:g}"


def normal(rng: np.random.Generator, shape: Any, dtype: Any = np.float64) -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """``NANOTF_ERROR_TABLE=1 pytest ...`` prints the worst errors seen, per op."""
    if not os.environ.get("NANOTF_ERROR_TABLE") or not (WORST or FD_WORST):
        return
    ops = sorted({op for op, _ in WORST} | set(FD_WORST))

    def cell(e: float | None) -> str:
        return "-" if e is None else f"{e:.2e}"

    tr = terminalreporter
    tr.section("largest relative error (normwise)")
    tr.write_line(f"{'op':<20}{'torch f64':>12}{'torch f32':>12}{'FD f64':>12}")
    for op in ops:
        e64, e32 = WORST.get((op, "float64")), WORST.get((op, "float32"))
        tr.write_line(f"{op:<20}{cell(e64):>12}{cell(e32):>12}{cell(FD_WORST.get(op)):>12}")
