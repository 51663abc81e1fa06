"""softmax and log_softmax: finite differences, torch, stability, and properties (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nanotf.functional import (
    log_softmax_backward,
    log_softmax_forward,
    softmax_backward,
    softmax_forward,
)
from nanotf.gradcheck import gradcheck
from tests.conftest import (
    Backend,
    assert_all_close,
    assert_dtypes,
    assert_gradcheck,
    assert_same_on_strict,
    normal,
    terms_size,
    torch_reference,
)

OPS = {
    "softmax": (softmax_forward, softmax_backward, torch.softmax),
    "log_softmax": (log_softmax_forward, log_softmax_backward, torch.log_softmax),
}
# (shape, axis): a single element, length-1 rows, batch 1, odd sizes, a middle and a first axis
CASES = [((1,), -1), ((1, 1, 1), -1), ((1, 1, 7), -1), ((2, 3, 5), -1), ((2, 3, 5), 1),
         ((4, 6), 0), ((3, 1, 2, 9), 2)]


def data(shape, dtype, seed=0, spread=3.0):
    g = np.random.default_rng(seed)
    return (spread * g.standard_normal(shape)).astype(dtype), normal(g, shape, dtype)


def run(bk: Backend, op, x, dout, axis):
    forward, backward, _ = OPS[op]
    out, cache = forward(bk.asarray(x), axis=axis)
    return bk.host(out, backward(bk.asarray(dout), cache))


def reference(op, x, dout, axis):
    out, grads = torch_reference(lambda x: OPS[op][2](x, dim=axis), {"x": x}, dout)
    return out, grads["x"]


def floors(op, x, dout, axis):
    """Floors of the results that cancel by design (``terms_size`` in conftest): only dx.

    softmax: dx_i = y_i dout_i - y_i Σ_j dout_j y_j, log_softmax: dx_i = dout_i - y_i Σ_j dout_j.
    Where one y_i ≈ 1 the two terms cancel to ~y_k (y_k ≈ 1e-9 for logits 20 apart), and every
    implementation's dx_i is off by round-off of the terms, so that is the scale.
    """
    y = torch.softmax(torch.from_numpy(x.astype(np.float64)), dim=axis)
    if op == "softmax":
        return [0.0, terms_size(y, dout)]
    return [0.0, max(terms_size(dout), terms_size(y, dout.astype(np.float64).sum(axis=axis)))]


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize(("shape", "axis"), CASES)
def test_gradcheck(fd_backend: Backend, op, shape, axis):
    forward, backward, _ = OPS[op]
    x, _ = data(shape, np.float64)
    inputs = {"x": fd_backend.asarray(x)}
    errors = gradcheck(forward, backward, inputs, forward_kwargs={"axis": axis})
    assert_gradcheck(errors, op)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize(("shape", "axis"), CASES)
def test_matches_torch(xp_params: Backend, dtype, op, shape, axis):
    x, dout = data(shape, dtype)
    got = run(xp_params, op, x, dout, axis)
    names = [f"{op}.out", f"{op}.dx"]
    want = reference(op, x, dout, axis)
    assert_all_close(got, want, dtype, names, floors(op, x, dout, axis))
    assert_dtypes(got, dtype, names)


@pytest.mark.parametrize("op", OPS)
def test_large_logits_are_stable(dtype, op):
    """Logits around ±1e4 (exp overflows in any dtype) still give torch's answer."""
    x, dout = data((3, 8), dtype, spread=3.0)
    x = x + np.array([[1e4], [-1e4], [0.0]], dtype=dtype)
    got = run(Backend("numpy", np), op, x, dout, -1)
    want = reference(op, x, dout, -1)
    assert_all_close(got, want, dtype, [f"{op}.out", f"{op}.dx"], floors(op, x, dout, -1))


def test_strict_equals_numpy():
    x, dout = data((2, 3, 5), np.float32)
    for op in OPS:
        assert_same_on_strict(lambda bk, op=op: run(bk, op, x, dout, -1))


def test_log_softmax_is_log_of_softmax():
    x, _ = data((4, 6), np.float64)
    np.testing.assert_allclose(
        log_softmax_forward(x)[0], np.log(softmax_forward(x)[0]), rtol=1e-13, atol=1e-13
    )


@pytest.mark.parametrize("op", OPS)
def test_integer_input_is_refused(op):
    with pytest.raises(TypeError, match=rf"{op} input must be a floating-point.*got int64"):
        OPS[op][0](np.arange(3))


# -- properties -------------------------------------------------------------------------------

shapes = st.lists(st.integers(1, 6), min_size=1, max_size=4).map(tuple)


@settings(max_examples=40, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**32 - 1), spread=st.sampled_from([0.1, 3.0, 50.0]),
       data_=st.data())
def test_property_matches_torch_on_random_shapes(shape, seed, spread, data_):
    axis = data_.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    for op in OPS:
        x, dout = data(shape, np.float64, seed, spread)
        got = run(Backend("numpy", np), op, x, dout, axis)
        want = reference(op, x, dout, axis)
        names = [f"{op}.out", f"{op}.dx"]
        assert_all_close(got, want, np.float64, names, floors(op, x, dout, axis))


@settings(max_examples=40, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**32 - 1), spread=st.sampled_from([1.0, 1e3, 1e30]),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_property_rows_sum_to_one(shape, seed, spread, dtype):
    x, dout = data(shape, dtype, seed, spread)
    y, cache = softmax_forward(x)
    assert y.dtype == dtype
    assert np.isfinite(y).all() and (y >= 0).all() and (y <= 1).all()
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, rtol=1e-5 if dtype == np.float32 else 1e-12)
    # softmax is shift-invariant, so its gradient sums to zero along the axis
    dx = softmax_backward(dout, cache)
    assert np.isfinite(dx).all()
    scale = np.abs(dout).max() * x.shape[-1]
    assert np.abs(dx.sum(axis=-1)).max() <= scale * (1e-5 if dtype == np.float32 else 1e-13)
