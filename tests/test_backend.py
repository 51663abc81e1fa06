"""The array layer: choosing the backend (and failing clearly), the seeded RNG, moving arrays,
scatter_add, get_array_module, erf."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import types

import numpy as np
import pytest
import torch

import nanotf
from nanotf import backend
from nanotf.testing.strict import StrictArray, strict
from nanotf.testing.strict import asarray as strict_asarray
from tests.conftest import HAS_GPU, STRICT, Backend, assert_close, make_backend


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "NANOTF_BACKEND"} | env
    return subprocess.run(
        [sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=60
    )


SHOW = "import nanotf as n; print(n.get_backend(), n.default_dtype(), n.backend.xp().__name__)"


# -- choosing the backend ---------------------------------------------------------------------


def test_default_is_numpy_float32():
    result = run_python(SHOW)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["numpy", "float32", "numpy"]


def test_env_var_numpy():
    result = run_python(SHOW, NANOTF_BACKEND="numpy")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["numpy", "float32", "numpy"]


def test_env_var_unknown_backend_fails_at_import():
    result = run_python(SHOW, NANOTF_BACKEND="tpu")
    assert result.returncode != 0
    assert "ValueError: unknown backend 'tpu': expected one of numpy, cupy" in result.stderr


@pytest.mark.skipif(HAS_GPU, reason="CuPy and a GPU are here: the env var would work")
def test_env_var_cupy_without_cupy_says_why():
    result = run_python(SHOW, NANOTF_BACKEND="cupy")
    assert result.returncode != 0
    assert "BackendUnavailableError: backend 'cupy'" in result.stderr


@pytest.mark.parametrize("name", ["tpu", "", "torch", 3, None])
def test_unknown_backend(name):
    with pytest.raises(ValueError, match=rf"unknown backend {name!r}: expected one of numpy, cupy"):
        nanotf.set_backend(name)
    assert nanotf.get_backend() == "numpy"


def test_backend_names_are_case_insensitive():
    nanotf.set_backend("NumPy")
    assert nanotf.get_backend() == "numpy" and backend.xp() is np


def test_cupy_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # `import cupy` now raises ImportError
    with pytest.raises(nanotf.BackendUnavailableError, match=r"needs the CuPy package, which is "
                                                             r"not installed"):
        nanotf.set_backend("cupy")
    assert nanotf.get_backend() == "numpy" and backend.xp() is np


def fake_cupy(get_device_count) -> types.ModuleType:
    cupy = types.ModuleType("cupy")
    runtime = types.SimpleNamespace(getDeviceCount=get_device_count)
    cupy.cuda = types.SimpleNamespace(runtime=runtime)
    return cupy


def test_cupy_without_a_cuda_driver(monkeypatch):
    def no_driver():
        raise RuntimeError("cudaErrorInsufficientDriver: CUDA driver version is insufficient")

    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(no_driver))
    with pytest.raises(nanotf.BackendUnavailableError,
                       match=r"CuPy is installed but no CUDA device can be used "
                             r"\(cudaErrorInsufficientDriver"):
        nanotf.set_backend("cupy")
    assert nanotf.get_backend() == "numpy"


def test_cupy_without_a_gpu(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(lambda: 0))
    with pytest.raises(nanotf.BackendUnavailableError, match=r"CuPy is installed but found no GPU"):
        nanotf.set_backend("cupy")
    assert nanotf.get_backend() == "numpy"


def test_backend_unavailable_is_a_runtime_error():
    assert issubclass(nanotf.BackendUnavailableError, RuntimeError)


@pytest.mark.gpu
def test_cupy_backend():
    import cupy  # type: ignore[import-not-found]

    nanotf.set_backend("cupy")
    assert nanotf.get_backend() == "cupy" and backend.xp() is cupy
    a = nanotf.asarray(np.arange(3.0))
    assert isinstance(a, cupy.ndarray)
    assert nanotf.get_array_module(a) is cupy
    host = nanotf.to_numpy(a)
    assert isinstance(host, np.ndarray)
    np.testing.assert_array_equal(host, [0.0, 1.0, 2.0])
    nanotf.manual_seed(4)
    x = nanotf.rng().random(5)
    nanotf.manual_seed(4)
    assert isinstance(x, cupy.ndarray)
    np.testing.assert_array_equal(nanotf.to_numpy(x), nanotf.to_numpy(nanotf.rng().random(5)))


# -- dtype and RNG ----------------------------------------------------------------------------


def test_set_default_dtype():
    nanotf.set_default_dtype("float64")
    assert nanotf.default_dtype() == np.float64
    nanotf.set_default_dtype(np.float32)
    assert nanotf.default_dtype() == np.float32


@pytest.mark.parametrize("dtype", ["float16", "int32", np.int64])
def test_default_dtype_must_be_float32_or_float64(dtype):
    with pytest.raises(ValueError, match=rf"float32 or float64, got {np.dtype(dtype)}"):
        nanotf.set_default_dtype(dtype)


def test_manual_seed_repeats():
    nanotf.manual_seed(42)
    a = nanotf.rng().standard_normal(8)
    b = nanotf.rng().standard_normal(8)
    nanotf.manual_seed(42)
    np.testing.assert_array_equal(nanotf.rng().standard_normal(8), a)
    np.testing.assert_array_equal(nanotf.rng().standard_normal(8), b)
    assert not np.array_equal(a, b)
    nanotf.manual_seed(43)
    assert not np.array_equal(nanotf.rng().standard_normal(8), a)


def test_set_backend_keeps_the_seed():
    nanotf.manual_seed(7)
    a = nanotf.rng().random(4)
    nanotf.set_backend("numpy")  # a fresh generator with the same seed
    np.testing.assert_array_equal(nanotf.rng().random(4), a)


@pytest.mark.parametrize("seed", [-1, 1.5, "1"])
def test_bad_seed(seed):
    with pytest.raises(ValueError, match=rf"seed must be a non-negative integer, got {seed!r}"):
        nanotf.manual_seed(seed)


# -- moving arrays ----------------------------------------------------------------------------


def test_to_numpy():
    a = np.arange(3.0)
    assert nanotf.to_numpy(a) is a
    s = strict_asarray(a)
    host = nanotf.to_numpy(s)
    assert type(host) is np.ndarray
    np.testing.assert_array_equal(host, a)
    assert nanotf.to_numpy(2.5) == 2.5 and nanotf.to_numpy(np.float32(2.5)).dtype == np.float32


def test_to_numpy_refuses_other_things():
    with pytest.raises(TypeError, match=r"to_numpy expects a NumPy or CuPy array, got list"):
        nanotf.to_numpy([1, 2])
    with pytest.raises(TypeError, match=r"got Tensor"):
        nanotf.to_numpy(torch.zeros(2))


def test_asarray():
    a = nanotf.asarray([1.0, 2.0], dtype=np.float32)
    assert isinstance(a, np.ndarray) and a.dtype == np.float32
    b = np.arange(3.0)
    assert nanotf.asarray(b) is b  # no copy when it is already there


def test_strict_refuses_silent_conversion():
    s = strict_asarray(np.arange(3.0))
    with pytest.raises(TypeError, match=r"implicit conversion of a device array"):
        np.asarray(s)
    with pytest.raises(TypeError, match=r"a NumPy array was mixed with device arrays"):
        strict.add(s, np.ones(3))


# -- scatter_add and get_array_module ---------------------------------------------------------


@pytest.mark.parametrize("name", ["numpy", "strict", pytest.param("cupy", marks=pytest.mark.gpu)])
def test_scatter_add_repeated_indices_add_up(name):
    bk: Backend = make_backend(name)
    values = np.arange(12.0).reshape(6, 2)
    idx = np.array([0, 2, 0, 0, 3, 2])
    target = bk.asarray(np.ones((4, 2)))
    backend.scatter_add(target, bk.asarray(idx), bk.asarray(values))
    want = np.ones((4, 2))
    for i, row in zip(idx, values, strict=True):  # the loop a scatter-add stands for
        want[i] += row
    (got,) = bk.host(target)
    np.testing.assert_array_equal(got, want)
    # plain fancy-index assignment would keep only one of the repeated rows
    naive = np.ones((4, 2))
    naive[idx] += values
    assert not np.array_equal(naive, want)


def test_get_array_module():
    a = np.zeros(2)
    assert nanotf.get_array_module(a) is np
    assert nanotf.get_array_module(1.0, a) is np
    assert nanotf.get_array_module() is np
    s = strict_asarray(a)
    assert nanotf.get_array_module(s) is strict
    assert nanotf.get_array_module(a, s) is strict  # any device array wins
    assert isinstance(strict.zeros(3), StrictArray)
    assert isinstance(STRICT.rng(0).random(3), StrictArray)


@pytest.mark.gpu
def test_get_array_module_cupy():
    import cupy  # type: ignore[import-not-found]

    assert nanotf.get_array_module(np.zeros(2), cupy.zeros(2)) is cupy


# -- erf (NumPy has none of its own) ----------------------------------------------------------

ERF_POINTS = np.concatenate([np.linspace(-6.0, 6.0, 2401), [0.0, -0.0, 1e-300, 1e-8, 30.0, -30.0]])


def test_erf_float64_matches_math_erf():
    got = backend.erf(ERF_POINTS)
    want = np.array([math.erf(x) for x in ERF_POINTS])
    assert got.dtype == np.float64 and got.shape == ERF_POINTS.shape
    # relative where it is large, absolute near 0 (erf(x) ≈ 2x/√π): |got - want| ≤ 1e-15 + 4 ulp
    np.testing.assert_allclose(got, want, rtol=4 * np.finfo(np.float64).eps, atol=1e-300)
    reference = torch.special.erf(torch.from_numpy(ERF_POINTS)).numpy()
    assert_close(got, reference, np.float64, "erf.out")


def test_erf_float32_stays_float32():
    x = ERF_POINTS.astype(np.float32)
    got = backend.erf(x)
    assert got.dtype == np.float32
    want = np.array([math.erf(v) for v in x.astype(np.float64)])
    np.testing.assert_allclose(got, want, rtol=4 * np.finfo(np.float32).eps, atol=1e-38)
    assert_close(got, torch.special.erf(torch.from_numpy(x)).numpy(), np.float32, "erf.out")


def test_erf_on_strict():
    got = backend.erf(strict_asarray(ERF_POINTS))
    assert isinstance(got, StrictArray)
    np.testing.assert_array_equal(got.get(), backend.erf(ERF_POINTS))


@pytest.mark.gpu
def test_erf_on_cupy():
    bk = make_backend("cupy")
    (got,) = bk.host(backend.erf(bk.asarray(ERF_POINTS)))
    np.testing.assert_allclose(got, [math.erf(x) for x in ERF_POINTS], rtol=1e-14, atol=1e-300)


# -- asarray: Python floats get the default float dtype, as torch.tensor -----------------------


def test_asarray_gives_the_default_float_dtype():
    assert nanotf.asarray([1.0]).dtype == np.float32
    assert nanotf.asarray(2.5).dtype == np.float32
    assert nanotf.asarray([[1, 2], [3, 4]]).dtype.kind == "i"  # ints stay ints
    assert nanotf.asarray([True, False]).dtype == np.bool_
    assert nanotf.asarray([1.0], dtype=np.float64).dtype == np.float64  # an explicit dtype wins
    host = np.ones(3, dtype=np.float64)
    assert nanotf.asarray(host) is host  # an array keeps its dtype, and is not copied
    nanotf.set_default_dtype("float64")
    try:
        assert nanotf.asarray([1.0]).dtype == np.float64
    finally:
        nanotf.set_default_dtype("float32")
    np.testing.assert_array_equal(nanotf.asarray([0.1, 2.0]), np.array([0.1, 2.0], np.float32))
