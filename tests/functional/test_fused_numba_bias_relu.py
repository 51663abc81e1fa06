"""The Numba kernels of bias + ReLU (``nanotf.functional.fused.numba_bias_relu``) against the
reference op (run inside ``reference_only()``), on NumPy arrays and on the strict stand-in.

* ``out``, ``z`` and ``dx`` are the reference's bits; ``dbias`` (float64 block sums) within the
  suite's tolerance of the reference's sum and within a few float32 ulps of the exact sum, on
  float32 and float64, on the op tests' shapes, odd sizes (1, 3, 31, 32, 33 and 1000 rows of
  width 1, 7, 768 and 1025), no rows, NaN and ±inf, inputs that are not C-contiguous;
* a fused forward's cache feeds the reference backward and the other way round;
* determinism: two runs, and runs on one thread and on two, give the same bits; the stand-in's
  results are NumPy's bit for bit.

Skipped, with the reason, where Numba is not installed (it is the optional ``fast`` extra).
"""

from __future__ import annotations

import numpy as np
import pytest

numba = pytest.importorskip("numba", reason="Numba is not installed (the optional 'fast' extra)")

from nanotf.functional import (  # noqa: E402  (after the skip)
    bias_relu_backward,
    bias_relu_forward,
    fused,
    reference_only,
)
from nanotf.functional.fused import numba_bias_relu, numba_kernels  # noqa: E402
from tests.conftest import (  # noqa: E402
    NUMPY,
    RTOL,
    STRICT,
    Backend,
    assert_same_on_strict,
    normal,
    rel_error,
)

OPS = ("bias_relu_forward", "bias_relu_backward")
WIDTHS = (1, 7, 768, 1025)
ROWS = (1, 3, 31, 32, 33, 1000)
SHAPES = [(1,), (1, 1, 4), (2, 3, 5), (4, 7), (2, 33, 9)] + [(r, c) for r in ROWS for c in WIDTHS]


@pytest.fixture(autouse=True)
def kernels_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """The switch on and the Numba kernels registered for NumPy and the stand-in, whatever an
    earlier test left in the registry; the real registry comes back after."""
    monkeypatch.setattr(fused, "_state", {**fused._state, "enabled": True})
    kernels = dict(fused._KERNELS)
    for op in OPS:
        kernels[(op, "numpy")] = numba_kernels.KERNELS[op]
        kernels[(op, "strict")] = numba_kernels.STRICT_KERNELS[op]
    monkeypatch.setattr(fused, "_KERNELS", kernels)
    monkeypatch.setattr(fused, "_LAZY", {**fused._LAZY, "numpy": True, "strict": True})


def data(shape, dtype, seed=0):
    g = np.random.default_rng(seed)
    x = normal(g, shape, dtype)
    return x, normal(g, shape[-1:], dtype), normal(g, shape, dtype)


def run(bk: Backend, x, bias, dout):
    a = bk.asarray
    out, cache = bias_relu_forward(a(x), a(bias))
    return list(bk.host(out, cache.z, *bias_relu_backward(a(dout), cache)))


def fused_and_reference(fn):
    got = fn()
    with reference_only():
        want = fn()
    return got, want


def assert_matches(got, want, dtype):
    """out, z, dx bit for bit; dbias within RTOL of the reference's sum."""
    for g, w, name in zip(got, want, ["out", "z", "dx", "dbias"], strict=True):
        assert g.dtype == w.dtype == np.dtype(dtype) and g.shape == w.shape, name
        if name == "dbias":
            err = rel_error(g, w)
            assert err <= RTOL[np.dtype(dtype)], f"dbias: fused vs reference {err:.3g}"
        else:
            np.testing.assert_array_equal(g, w, err_msg=name)


def test_the_kernels_are_registered_and_run():
    assert numba_kernels.KERNELS["bias_relu_forward"].__wrapped__ is (
        numba_bias_relu.bias_relu_forward)
    x, bias, dout = data((3, 4), np.float32)
    for op in OPS:
        assert fused.kernel_for(op, x) is numba_kernels.KERNELS[op]
        assert fused.kernel_for(op, STRICT.asarray(x)) is numba_kernels.STRICT_KERNELS[op]
    with reference_only():
        assert fused.kernel_for("bias_relu_backward", x) is None


@pytest.mark.parametrize("shape", SHAPES)
def test_kernels_match_the_reference(dtype, shape):
    x, bias, dout = data(shape, dtype)
    got, want = fused_and_reference(lambda: run(NUMPY, x, bias, dout))
    assert_matches(got, want, dtype)


@pytest.mark.parametrize("rows", [1, 33, 1000])
def test_the_bias_gradient_is_the_exact_sum_rounded(rows):
    """float32: the kernel adds in float64, so dbias is within an ulp or two of the exact sum
    of dx (NumPy's float32 row-after-row sum is further off)."""
    x, bias, dout = data((rows, 777), np.float32, seed=rows)
    out, cache = bias_relu_forward(x, bias)
    dx, dbias = bias_relu_backward(dout, cache)
    exact = dx.astype(np.float64).sum(axis=0)
    ulp = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    assert (np.abs(dbias - exact) <= 2 * ulp + 1e-30).all()


def test_no_rows(dtype):
    x, bias = np.zeros((0, 5), dtype), np.ones(5, dtype)
    got, want = fused_and_reference(lambda: run(NUMPY, x, bias, np.zeros((0, 5), dtype)))
    assert_matches(got, want, dtype)
    np.testing.assert_array_equal(got[3], np.zeros(5, dtype))


def test_nan_and_inf_as_the_reference(dtype):
    x, bias, dout = data((40, 9), dtype)
    x[0, :4] = [np.nan, np.inf, -np.inf, -0.0]
    bias[:4] = [1.0, -np.inf, 2.0, -0.0]  # z: nan, nan, -inf, -0 (relu: +0, as np.maximum)
    dout[5, 6] = np.nan
    with np.errstate(invalid="ignore"):  # inf - inf in the reference's NumPy
        got, want = fused_and_reference(lambda: run(NUMPY, x, bias, dout))
    for g, w, name in zip(got, want, ["out", "z", "dx", "dbias"], strict=True):
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w), err_msg=name)
        if name != "dbias":
            np.testing.assert_array_equal(g.view(f"u{g.itemsize}"), w.view(f"u{w.itemsize}"),
                                          err_msg=name)  # the same bits, signs of zeros too
    ok = np.isfinite(want[3])
    assert rel_error(got[3][ok], want[3][ok]) <= RTOL[np.dtype(dtype)]


def test_non_contiguous_input(dtype):
    x, bias, dout = data((40, 9), dtype)
    wide = np.zeros(18, dtype)
    wide[::2] = bias

    def fn():
        xt, dt = np.asfortranarray(x), dout[::-1, ::-1].copy()[::-1, ::-1]  # reversed views
        assert not xt.flags.c_contiguous and not wide[::2].flags.c_contiguous
        out, cache = bias_relu_forward(xt, wide[::2])
        return [out, cache.z, *bias_relu_backward(dt, cache)]

    got, want = fused_and_reference(fn)
    assert_matches(got, want, dtype)
    got2 = run(NUMPY, x, bias, dout)
    for g, w in zip(got, got2, strict=True):
        np.testing.assert_array_equal(g, w)


def test_caches_cross_over(dtype):
    x, bias, dout = data((64, 100), dtype)
    _, fused_cache = bias_relu_forward(x, bias)
    with reference_only():
        _, ref_cache = bias_relu_forward(x, bias)
        want = bias_relu_backward(dout, ref_cache)
        ref_on_fused = bias_relu_backward(dout, fused_cache)
    fused_on_ref = bias_relu_backward(dout, ref_cache)
    assert type(fused_cache) is type(ref_cache)
    for got in (ref_on_fused, fused_on_ref):
        np.testing.assert_array_equal(got[0], want[0])
        assert rel_error(got[1], want[1]) <= RTOL[np.dtype(dtype)]


def test_kernels_refuse_other_dtypes():
    with pytest.raises(TypeError, match=r"float32 or float64 inputs of one dtype, got \['float16'"):
        numba_bias_relu.bias_relu_forward(np.zeros((2, 3), np.float16), np.zeros(3, np.float16))
    with pytest.raises(TypeError, match=r"got \['float32', 'float64'\]"):
        numba_bias_relu.bias_relu_backward(np.zeros(3, np.float32), np.zeros(3))


def test_the_stand_in_equals_numpy(dtype):
    x, bias, dout = data((70, 33), dtype)
    assert_same_on_strict(lambda bk: run(bk, x, bias, dout))


def test_two_runs_are_bitwise_equal(dtype):
    x, bias, dout = data((300, 129), dtype)
    for g, w in zip(run(NUMPY, x, bias, dout), run(NUMPY, x, bias, dout), strict=True):
        np.testing.assert_array_equal(g, w)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="Numba has one thread here")
def test_one_thread_and_two_give_the_same_bits():
    x, bias, dout = data((1000, 257), np.float32)
    before = fused.kernel_threads()
    seen: list[int] = []
    loop = numba_bias_relu._bias_relu_backward

    def spy(*args):  # the number of threads the backward's loop runs on
        seen.append(numba.get_num_threads())
        return loop(*args)

    try:
        numba_bias_relu._bias_relu_backward = spy
        fused.set_kernel_threads(1)
        one = run(NUMPY, x, bias, dout)
        fused.set_kernel_threads(2)
        two = run(NUMPY, x, bias, dout)
    finally:
        fused.set_kernel_threads(before)
        numba_bias_relu._bias_relu_backward = loop
    assert seen == [1, 2]
    for g, w in zip(one, two, strict=True):
        np.testing.assert_array_equal(g, w)
