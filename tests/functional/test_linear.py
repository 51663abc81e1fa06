"""linear_forward / linear_backward: finite differences, torch.nn.functional.linear, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as tF

from nanotf.functional import linear_backward, linear_forward
from nanotf.gradcheck import gradcheck
from tests.conftest import (
    Backend,
    assert_all_close,
    assert_dtypes,
    assert_gradcheck,
    assert_same_on_strict,
    normal,
    torch_reference,
)

# (shape of x, out_features): a vector, batch 1, sequence length 1, odd widths, 4-D input
SHAPES = [((4,), 3), ((1, 1, 5), 2), ((2, 3, 4), 6), ((3, 1, 7), 1), ((2, 2, 3, 5), 4)]
NAMES = ["linear.out", "linear.dx", "linear.dW", "linear.db"]


def data(shape, n_out, dtype, bias=True, seed=0):
    g = np.random.default_rng(seed)
    x = normal(g, shape, dtype)
    w = normal(g, (n_out, shape[-1]), dtype)
    b = normal(g, (n_out,), dtype) if bias else None
    dout = normal(g, (*shape[:-1], n_out), dtype)
    return x, w, b, dout


def run(bk: Backend, x, w, b, dout):
    out, cache = linear_forward(bk.asarray(x), bk.asarray(w), bk.asarray(b))
    dx, dw, db = linear_backward(bk.asarray(dout), cache)
    return bk.host(out, dx, dw, db)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize(("shape", "n_out"), SHAPES)
def test_gradcheck(fd_backend: Backend, shape, n_out, bias):
    x, w, b, _ = data(shape, n_out, np.float64, bias)
    inputs = {"x": fd_backend.asarray(x), "weight": fd_backend.asarray(w)}
    if bias:
        inputs["bias"] = fd_backend.asarray(b)
    assert_gradcheck(gradcheck(linear_forward, linear_backward, inputs), "linear")


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize(("shape", "n_out"), SHAPES)
def test_matches_torch(xp_params: Backend, dtype, shape, n_out, bias):
    x, w, b, dout = data(shape, n_out, dtype, bias)
    got = run(xp_params, x, w, b, dout)
    inputs = {"x": x, "w": w} | ({"b": b} if bias else {})
    out, grads = torch_reference(lambda x, w, b=None: tF.linear(x, w, b), inputs, dout)
    want = (out, grads["x"], grads["w"], grads.get("b"))
    n = 4 if bias else 3
    assert_all_close(got[:n], want[:n], dtype, NAMES[:n])
    assert_dtypes(got[:n], dtype, NAMES[:n])
    if not bias:
        assert got[3] is None


def test_strict_equals_numpy():
    x, w, b, dout = data((2, 3, 4), 5, np.float32)
    assert_same_on_strict(lambda bk: run(bk, x, w, b, dout))
    assert_same_on_strict(lambda bk: run(bk, x, w, None, dout))


def test_weight_is_out_by_in_as_in_torch():
    """A torch nn.Linear's state (weight (out, in), bias) plugs in without a transpose."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(4, 3).double()
    x = np.random.default_rng(1).standard_normal((2, 4))
    out, _ = linear_forward(x, lin.weight.detach().numpy(), lin.bias.detach().numpy())
    np.testing.assert_allclose(out, lin(torch.from_numpy(x)).detach().numpy(), rtol=1e-12)


# -- bad input --------------------------------------------------------------------------------


def test_last_dimension_must_match_weight():
    x, w, b, _ = data((2, 3), 5, np.float32)
    with pytest.raises(ValueError, match=r"in_features=3.*got x of shape \(2, 4\)"):
        linear_forward(np.zeros((2, 4), np.float32), w, b)


def test_bias_shape():
    x, w, _, _ = data((2, 3), 5, np.float32)
    with pytest.raises(ValueError, match=r"bias must have shape \(5,\), got \(3,\)"):
        linear_forward(x, w, np.zeros(3, np.float32))


def test_integer_input_is_refused():
    _, w, b, _ = data((2, 3), 5, np.float32)
    with pytest.raises(TypeError, match=r"linear input x must be a floating-point.*got int64"):
        linear_forward(np.ones((2, 3), dtype=np.int64), w, b)


def test_integer_weight_is_refused():
    with pytest.raises(TypeError, match=r"linear weight must be a floating-point.*got int32"):
        linear_forward(np.ones((2, 3), np.float32), np.ones((5, 3), dtype=np.int32))


def test_mixed_dtypes_are_refused():
    x, w, b, _ = data((2, 3), 5, np.float32)
    with pytest.raises(TypeError, match=r"one floating dtype.*x: float32, weight: float64"):
        linear_forward(x, w.astype(np.float64), b)


def test_weight_must_be_2d():
    with pytest.raises(ValueError, match=r"weight must have 2 dimensions, got shape \(3,\)"):
        linear_forward(np.ones((2, 3), np.float32), np.ones(3, np.float32))
