"""``nanotf.functional._erf``: erf/erfc from elementwise arithmetic, against math, mpmath, torch.

Tolerances (what the implementation achieves is in brackets, measured on these grids):

* float64 erf: relative error <= 1e-15 against ``math.erf`` [3.2e-16, 2 ulp].
* float64 erfc: relative error <= 1.5e-15 against ``math.erfc`` and <= 1e-15 against mpmath
  [5.5e-16, 4 ulp] wherever erfc(x) is a normal number (x < 26.5).
* float32 erf: relative error <= 2e-7 and absolute error <= 1e-7 against ``math.erf``
  [8.9e-8 / 7.3e-8]; against ``torch.erf`` relative difference <= 2e-7 and absolute
  difference <= 1e-7 [1.2e-7 / 6.0e-8], for inputs and outputs that are normal numbers.
* float32 erfc: relative error <= 5e-7 against ``math.erfc`` [3.6e-7] for normal outputs.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nanotf.functional._erf import erf, erfc
from nanotf.testing.strict import StrictArray
from nanotf.testing.strict import asarray as strict_asarray

F32_TINY = float(np.finfo(np.float32).tiny)
F64_TINY = float(np.finfo(np.float64).tiny)


def _ref(fn, x: np.ndarray) -> np.ndarray:
    return np.array([fn(float(v)) for v in x.ravel()], dtype=np.float64).reshape(x.shape)


def _max_rel(y: np.ndarray, ref: np.ndarray) -> float:
    y = np.asarray(y, dtype=np.float64)
    nz = ref != 0
    assert np.all(y[~nz] == 0), "erf must be exactly 0 where the reference is 0"
    return float((np.abs(y[nz] - ref[nz]) / np.abs(ref[nz])).max())


def _grid64() -> np.ndarray:
    rng = np.random.default_rng(1234)
    return np.concatenate(
        [
            np.linspace(-8.0, 8.0, 320_001),  # dense, covers both branches and the clip
            rng.standard_normal(100_000) * 2.0,
            rng.uniform(-6.5, 6.5, 100_000),
            np.array([0.75, -0.75, np.nextafter(0.75, 0.0), np.nextafter(-0.75, 0.0), 6.0, -6.0]),
        ]
    )


# -- float64 ----------------------------------------------------------------------------------


def test_erf_float64_matches_math_erf():
    x = _grid64()
    y = erf(x)
    assert y.dtype == np.float64 and y.shape == x.shape
    assert _max_rel(y, _ref(math.erf, x)) <= 1e-15


def test_erf_float64_extremes():
    tiny = np.array([5e-324, 1e-320, 1e-310, F64_TINY, 1e-300, 1e-200, 1e-20, 1e-8])
    for x in (tiny, -tiny):
        y, ref = erf(x), _ref(math.erf, x)
        # subnormal results can be off by one subnormal step, everything else is relative
        assert np.all(np.abs(y - ref) <= 1e-15 * np.abs(ref) + 5e-324)
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e300, -1e300, 27.0, -27.0])
    y = erf(special)
    np.testing.assert_array_equal(y, [0.0, -0.0, 1.0, -1.0, np.nan, 1.0, -1.0, 1.0, -1.0])
    assert not np.signbit(y[0]) and np.signbit(y[1])  # erf(-0.0) = -0.0


def test_erfc_float64_matches_math_erfc():
    rng = np.random.default_rng(5)
    x = np.concatenate([np.linspace(-8.0, 26.5, 200_001), rng.uniform(-1.0, 26.5, 50_000)])
    y = erfc(x)
    assert y.dtype == np.float64
    assert _max_rel(y, _ref(math.erfc, x)) <= 1.5e-15


def test_erfc_float64_matches_mpmath_in_the_far_tail():
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 30
    x = np.concatenate([np.linspace(-3.0, 26.5, 2_001), [0.75, 2.0, 10.0, 20.0, 26.5]])
    ref = np.array([float(mp.erfc(mp.mpf(float(v)))) for v in x])
    assert ref.min() > F64_TINY
    assert _max_rel(erfc(x), ref) <= 1e-15
    # 1 - erf(x) for x > 2 is as good as the float64 erf near 1 can make it
    xs = np.linspace(2.0, 6.0, 401)
    ref_c = np.array([float(mp.erfc(mp.mpf(float(v)))) for v in xs])
    assert np.abs((1.0 - erf(xs)) - ref_c).max() <= np.spacing(1.0)


def test_erfc_float64_extremes():
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 27.5, 1e300, -1e300, -6.5])
    np.testing.assert_array_equal(erfc(x), [1.0, 1.0, 0.0, 2.0, np.nan, 0.0, 0.0, 2.0, 2.0])
    tiny = np.array([5e-324, 1e-300, 1e-17, -1e-17])
    np.testing.assert_array_equal(erfc(tiny), _ref(math.erfc, tiny))


# -- float32 ----------------------------------------------------------------------------------


def _grid32() -> np.ndarray:
    rng = np.random.default_rng(99)
    x = np.concatenate(
        [
            np.linspace(-6.0, 6.0, 600_001, dtype=np.float32),
            (rng.standard_normal(200_000) * 2.0).astype(np.float32),
            (10.0 ** rng.uniform(-37.5, 0.0, 50_000)).astype(np.float32),  # tiny but normal
            np.array([1.0, np.nextafter(1.0, 0.0), 4.0], dtype=np.float32),
        ]
    )
    return np.concatenate([x, -x])


def test_erf_float32_matches_math_erf():
    x = _grid32()
    y = erf(x)
    assert y.dtype == np.float32 and y.shape == x.shape
    ref = _ref(math.erf, x)
    assert _max_rel(y, ref) <= 2e-7
    assert np.abs(y.astype(np.float64) - ref).max() <= 1e-7


def test_erf_float32_matches_torch_erf():
    torch = pytest.importorskip("torch")
    x = _grid32()
    y = erf(x).astype(np.float64)
    t = torch.erf(torch.from_numpy(x)).numpy().astype(np.float64)
    nz = t != 0
    assert np.all(y[~nz] == 0)
    assert (np.abs(y - t)[nz] / np.abs(t[nz])).max() <= 2e-7
    assert np.abs(y - t).max() <= 1e-7


def test_erf_float32_extremes():
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 3e38, -3e38, 4.5, 1e-45], np.float32)
    y = erf(x)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, np.array([0, -0.0, 1, -1, np.nan, 1, -1, 1, 1e-45], "f4"))
    assert np.signbit(y[1])


def test_erfc_float32_matches_math_erfc():
    x = np.linspace(-6.0, 10.1, 300_001).astype(np.float32)
    y = erfc(x)
    assert y.dtype == np.float32
    ref = _ref(math.erfc, x)
    normal = ref > F32_TINY
    assert _max_rel(y[normal], ref[normal]) <= 5e-7
    x = np.array([np.inf, -np.inf, np.nan, 11.0, -7.0, 0.0], np.float32)
    np.testing.assert_array_equal(erfc(x), np.array([0, 2, np.nan, 0, 2, 1], np.float32))


# -- dtypes, shapes, array modules ------------------------------------------------------------


@pytest.mark.parametrize("fn", [erf, erfc])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_dtype_and_shape_preserved_input_untouched(fn, dtype):
    x = np.linspace(-5.0, 5.0, 24).astype(dtype).reshape(2, 3, 4)[:, ::2]  # strided view
    before = x.copy()
    y = fn(x)
    assert y.dtype == dtype and y.shape == x.shape
    np.testing.assert_array_equal(x, before)
    ref = _ref(math.erf if fn is erf else math.erfc, x).astype(dtype)  # underflows as it should
    rtol = 2e-3 if dtype == np.float16 else 1e-6
    np.testing.assert_allclose(y, ref, rtol=rtol, atol=float(np.finfo(dtype).smallest_subnormal))


@pytest.mark.parametrize("fn", [erf, erfc])
def test_rejects_non_float(fn):
    with pytest.raises(TypeError, match="floating"):
        fn(np.arange(3))


@pytest.mark.parametrize("fn", [erf, erfc])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_runs_on_the_strict_stand_in(fn, dtype):
    """Only the input's own array module is used: same bits as on NumPy, no host conversion."""
    x = np.concatenate([np.linspace(-30.0, 30.0, 2_001), [np.inf, -np.inf, np.nan, -0.0]])
    x = x.astype(dtype)
    y = fn(strict_asarray(x))
    assert isinstance(y, StrictArray) and y.dtype == dtype
    np.testing.assert_array_equal(y.get(), fn(x))


def test_backend_erf_uses_it():
    from nanotf.backend import erf as backend_erf

    x = np.linspace(-3.0, 3.0, 101, dtype=np.float32)
    np.testing.assert_array_equal(backend_erf(x), erf(x))


# -- properties -------------------------------------------------------------------------------


def _float_arrays(dtype, width):
    return hnp.arrays(
        dtype,
        hnp.array_shapes(min_dims=1, max_dims=1, min_side=1, max_side=64),
        elements=st.floats(allow_nan=False, allow_infinity=True, width=width),
    )


@pytest.mark.parametrize("dtype,width", [(np.float32, 32), (np.float64, 64)])
def test_properties(dtype, width):
    @settings(max_examples=200, deadline=None)
    @given(_float_arrays(dtype, width))
    def check(x):
        y = erf(x)
        # odd, exactly (signed zeros included)
        np.testing.assert_array_equal(erf(-x), -y)
        assert np.array_equal(np.signbit(erf(-x)), np.signbit(-y))
        # bounded
        assert np.all(np.abs(y) <= 1)
        # monotone up to rounding: neighbouring floats may come out an ulp out of order
        order = np.argsort(x, kind="stable")
        ys = y[order]
        assert np.all(np.diff(ys) >= -2 * np.spacing(np.abs(ys[1:])))
        # erfc agrees with 1 - erf and stays in [0, 2]
        yc = erfc(x)
        assert np.all((yc >= 0) & (yc <= 2))
        tol = 4 * float(np.finfo(dtype).eps)
        np.testing.assert_allclose(yc.astype(np.float64), 1.0 - y.astype(np.float64), atol=tol)

    check()


@pytest.mark.parametrize("fn", [erf, erfc])
def test_blocked_evaluation_matches_whole_array(fn, monkeypatch):
    """Large arrays go through in cache-sized blocks; the result must not depend on it."""
    from nanotf import special as _erf

    rng = np.random.default_rng(7)
    x = (rng.standard_normal((3, 70_001)) * 4.0)[:, ::2]  # strided, size > one block
    assert x.size > _erf._BLOCK
    blocked = fn(x)
    strict_blocked = fn(strict_asarray(x))
    monkeypatch.setattr(_erf, "_BLOCK", 10**9)
    whole = fn(x)
    assert blocked.shape == x.shape
    np.testing.assert_array_equal(blocked, whole)
    assert isinstance(strict_blocked, StrictArray)
    np.testing.assert_array_equal(strict_blocked.get(), whole)
