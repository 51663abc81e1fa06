"""ReLU and GELU (exact erf form and tanh approximation): finite differences, torch, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as tF

from nanotf.functional import gelu_backward, gelu_forward, relu_backward, relu_forward
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

SHAPES = [(1,), (1, 1, 4), (2, 3, 5), (4, 7)]
GELU = ["none", "tanh"]


def away_from_zero(shape, dtype=np.float64, seed=0):
    """Values in ±[0.1, 3): the finite-difference stencil (±2e-3) never crosses ReLU's kink."""
    g = np.random.default_rng(seed)
    return (g.choice([-1.0, 1.0], size=shape) * g.uniform(0.1, 3.0, size=shape)).astype(dtype)


def wide(shape, dtype=np.float64, seed=0):
    """Normal values plus the tails and exact zeros, where GELU's two forms differ most."""
    g = np.random.default_rng(seed)
    x = 3.0 * g.standard_normal(shape)
    flat = x.reshape(-1)
    flat[: min(4, flat.size)] = [0.0, -7.5, 9.0, -30.0][: min(4, flat.size)]
    return x.astype(dtype)


def run_relu(bk: Backend, x, dout):
    out, cache = relu_forward(bk.asarray(x))
    return bk.host(out, relu_backward(bk.asarray(dout), cache))


def run_gelu(bk: Backend, x, dout, approximate):
    out, cache = gelu_forward(bk.asarray(x), approximate=approximate)
    return bk.host(out, gelu_backward(bk.asarray(dout), cache))


@pytest.mark.parametrize("shape", SHAPES)
def test_relu_gradcheck(fd_backend: Backend, shape):
    x = fd_backend.asarray(away_from_zero(shape))
    assert_gradcheck(gradcheck(relu_forward, relu_backward, {"x": x}), "relu")


@pytest.mark.parametrize("approximate", GELU)
@pytest.mark.parametrize("shape", SHAPES)
def test_gelu_gradcheck(fd_backend: Backend, shape, approximate):
    x = fd_backend.asarray(wide(shape))
    errors = gradcheck(
        gelu_forward, gelu_backward, {"x": x}, forward_kwargs={"approximate": approximate}
    )
    assert_gradcheck(errors, f"gelu_{approximate}")


@pytest.mark.parametrize("shape", SHAPES)
def test_relu_matches_torch(xp_params: Backend, dtype, shape):
    x = wide(shape, dtype)
    dout = normal(np.random.default_rng(1), shape, dtype)
    got = run_relu(xp_params, x, dout)
    out, grads = torch_reference(torch.relu, {"input": x}, dout)
    names = ["relu.out", "relu.dx"]
    assert_all_close(got, (out, grads["input"]), dtype, names)
    assert_dtypes(got, dtype, names)


@pytest.mark.parametrize("approximate", GELU)
@pytest.mark.parametrize("shape", SHAPES)
def test_gelu_matches_torch(xp_params: Backend, dtype, shape, approximate):
    x = wide(shape, dtype)
    dout = normal(np.random.default_rng(1), shape, dtype)
    got = run_gelu(xp_params, x, dout, approximate)
    out, grads = torch_reference(
        lambda x: tF.gelu(x, approximate=approximate), {"x": x}, dout
    )
    names = [f"gelu_{approximate}.out", f"gelu_{approximate}.dx"]
    assert_all_close(got, (out, grads["x"]), dtype, names)
    assert_dtypes(got, dtype, names)


@pytest.mark.parametrize("approximate", GELU)
def test_gelu_matches_torch_on_a_dense_grid(approximate):
    """Every region of erf / tanh at once: [-10, 10] in steps of 1/64, float64."""
    x = np.arange(-640, 641) / 64.0
    dout = np.ones_like(x)
    got = run_gelu(Backend("numpy", np), x, dout, approximate)
    out, grads = torch_reference(lambda x: tF.gelu(x, approximate=approximate), {"x": x}, dout)
    names = [f"gelu_{approximate}.out", f"gelu_{approximate}.dx"]
    assert_all_close(got, (out, grads["x"]), np.float64, names)


def test_relu_zero_has_zero_gradient_like_torch():
    out, cache = relu_forward(np.array([-1.0, 0.0, 2.0]))
    np.testing.assert_array_equal(out, [0.0, 0.0, 2.0])
    np.testing.assert_array_equal(relu_backward(np.ones(3), cache), [0.0, 0.0, 1.0])


def test_strict_equals_numpy():
    x = wide((2, 3, 5), np.float32)
    dout = normal(np.random.default_rng(1), x.shape, np.float32)
    assert_same_on_strict(lambda bk: run_relu(bk, x, dout))
    for approximate in GELU:
        assert_same_on_strict(lambda bk, a=approximate: run_gelu(bk, x, dout, a))


def test_forward_does_not_modify_its_input():
    x = wide((3, 4))
    before = x.copy()
    for approximate in GELU:
        out, cache = gelu_forward(x, approximate)
        gelu_backward(np.ones_like(x), cache)
    relu_backward(np.ones_like(x), relu_forward(x)[1])
    np.testing.assert_array_equal(x, before)


# -- bad input --------------------------------------------------------------------------------


def test_gelu_unknown_approximation():
    with pytest.raises(ValueError, match=r"'none' or 'tanh', got 'erf'"):
        gelu_forward(np.zeros(3, np.float32), approximate="erf")


@pytest.mark.parametrize(
    "forward", [relu_forward, gelu_forward, lambda x: gelu_forward(x, "tanh")],
    ids=["relu", "gelu", "gelu_tanh"],
)
def test_integer_input_is_refused(forward):
    with pytest.raises(TypeError, match=r"input must be a floating-point array.*got int64"):
        forward(np.arange(3, dtype=np.int64))


def test_relu_passes_nan_through_like_torch() -> None:
    """A diverging run must show its NaNs: relu(NaN) is NaN in torch, and here."""
    import torch

    x = np.array([-1.0, 0.0, 2.0, np.nan], dtype=np.float32)
    out, _ = relu_forward(x)
    ref = torch.relu(torch.tensor(x)).numpy()
    np.testing.assert_array_equal(out, ref)  # NaN positions compare equal here
    assert np.isnan(out[3])
