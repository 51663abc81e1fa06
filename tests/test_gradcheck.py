"""nanotf.gradcheck: it passes correct backwards, catches wrong ones, and refuses float32.

A gradient check that cannot fail is worse than none, so most tests here hand it a backward
with a known mistake (scaled by 1.01, transposed, a missing term) and require a large error.
"""

from __future__ import annotations

import numpy as np
import pytest

from nanotf.functional import (
    layernorm_backward,
    layernorm_forward,
    linear_backward,
    linear_forward,
    softmax_backward,
    softmax_forward,
)
from nanotf.gradcheck import gradcheck, gradcheck_module, numerical_gradient, relative_error
from tests.conftest import GRADCHECK_RTOL, STRICT, Backend, make_backend

WRONG = 1e-3  # a wrong backward must be off by more than this (the ones here are off by ≥ 1e-2)


def linear_inputs(n_in=4, n_out=4, seed=0):
    g = np.random.default_rng(seed)
    return {
        "x": g.standard_normal((2, 3, n_in)),
        "weight": g.standard_normal((n_out, n_in)),
        "bias": g.standard_normal(n_out),
    }


def test_correct_backward_passes():
    errors = gradcheck(linear_forward, linear_backward, linear_inputs())
    assert set(errors) == {"x", "weight", "bias"}
    assert max(errors.values()) <= GRADCHECK_RTOL


def test_backward_scaled_by_1_01_is_caught():
    def backward(dout, cache):
        dx, dw, db = linear_backward(dout, cache)
        return dx, 1.01 * dw, db

    errors = gradcheck(linear_forward, backward, linear_inputs())
    assert errors["weight"] == pytest.approx(0.01 / 1.01, rel=1e-6)
    assert max(errors["x"], errors["bias"]) <= GRADCHECK_RTOL


def test_transposed_gradient_is_caught():
    """A square weight: dW.T has the right shape and the wrong values."""

    def backward(dout, cache):
        dx, dw, db = linear_backward(dout, cache)
        return dx, dw.T, db

    errors = gradcheck(linear_forward, backward, linear_inputs(4, 4))
    assert errors["weight"] > 0.1


def test_missing_term_is_caught():
    """softmax's backward without the - y Σ dout y term; LayerNorm's without the mean of g."""

    def softmax_wrong(dout, cache):
        y, _ = cache
        return dout * y

    x = np.random.default_rng(0).standard_normal((3, 5))
    assert gradcheck(softmax_forward, softmax_wrong, {"x": x})["x"] > WRONG

    def layernorm_wrong(dout, cache):
        xhat, rstd, gamma = cache
        g = dout * gamma
        dx = rstd * (g - xhat * (g * xhat).mean(axis=-1, keepdims=True))
        _, dgamma, dbeta = layernorm_backward(dout, cache)
        return dx, dgamma, dbeta

    g = np.random.default_rng(1)
    inputs = {"x": g.standard_normal((3, 5)), "gamma": g.standard_normal(5),
              "beta": g.standard_normal(5)}
    errors = gradcheck(layernorm_forward, layernorm_wrong, inputs)
    assert errors["x"] > WRONG and errors["gamma"] <= GRADCHECK_RTOL


def test_wrt_selects_inputs_in_the_backward_order():
    errors = gradcheck(linear_forward, linear_backward, linear_inputs(), wrt=["x"])
    assert list(errors) == ["x"] and errors["x"] <= GRADCHECK_RTOL


def test_refuses_float32():
    inputs = {k: v.astype(np.float32) for k, v in linear_inputs().items()}
    with pytest.raises(TypeError, match=r"needs float64 arrays.*got x of dtype float32"):
        gradcheck(linear_forward, linear_backward, inputs)


def test_unknown_wrt():
    with pytest.raises(KeyError, match=r"wrt names 'w', which is not among the inputs"):
        gradcheck(linear_forward, linear_backward, linear_inputs(), wrt=["w"])


def test_too_few_gradients():
    with pytest.raises(ValueError, match=r"backward returned 1 gradients for 3 inputs"):
        gradcheck(linear_forward, lambda dout, cache: linear_backward(dout, cache)[0],
                  linear_inputs())


@pytest.mark.parametrize("name", ["strict", pytest.param("cupy", marks=pytest.mark.gpu)])
def test_runs_on_device_arrays(name):
    """Same errors as on NumPy: gradcheck itself never hands a device array to NumPy."""
    bk: Backend = make_backend(name)
    inputs = linear_inputs(3, 2)
    want = gradcheck(linear_forward, linear_backward, inputs)
    got = gradcheck(linear_forward, linear_backward, {k: bk.asarray(v) for k, v in inputs.items()})
    assert got.keys() == want.keys()
    for k in want:
        assert got[k] == pytest.approx(want[k], rel=1e-3, abs=1e-14)
        assert got[k] <= GRADCHECK_RTOL


# -- numerical_gradient and relative_error ----------------------------------------------------


def test_numerical_gradient_restores_its_input():
    x = np.random.default_rng(0).standard_normal((3, 4))
    before = x.copy()
    numerical_gradient(lambda: np.sin(x), x, np.ones_like(x))
    np.testing.assert_array_equal(x, before)


def test_numerical_gradient_of_known_functions():
    x = np.random.default_rng(0).standard_normal((2, 3))
    dout = np.random.default_rng(1).standard_normal((2, 3))
    num = numerical_gradient(lambda: np.sin(x), x, dout)
    assert relative_error(num, dout * np.cos(x)) <= 1e-12
    num = numerical_gradient(lambda: (x**2).sum(), x, np.asarray(1.0))  # a scalar output
    assert relative_error(num, 2 * x) <= 1e-12


def test_numerical_gradient_at_some_indices():
    x = np.random.default_rng(0).standard_normal(6)
    num = numerical_gradient(lambda: x**2, x, np.ones(6), indices=[1, 4])
    np.testing.assert_array_equal(num[[0, 2, 3, 5]], 0.0)
    np.testing.assert_allclose(num[[1, 4]], 2 * x[[1, 4]], rtol=1e-12)


def test_non_contiguous_input():
    """A transposed view: perturbing a flat reshape of it would perturb a copy (error 1)."""
    x = np.random.default_rng(0).standard_normal((5, 3)).T
    assert not x.flags.c_contiguous
    assert gradcheck(softmax_forward, softmax_backward, {"x": x})["x"] <= GRADCHECK_RTOL


def test_op_returning_its_input():
    """An identity op returns x itself; each perturbed output must be kept as a copy."""
    from nanotf.functional import dropout_backward, dropout_forward

    x = np.random.default_rng(0).standard_normal((3, 4))
    for kw in ({"p": 0.5, "training": False}, {"p": 0.0}):
        errors = gradcheck(dropout_forward, dropout_backward, {"x": x}, forward_kwargs=kw)
        assert errors["x"] <= GRADCHECK_RTOL


def test_relative_error():
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0
    assert relative_error(np.array([1.0, 2.0]), np.array([1.0, 2.2])) == pytest.approx(0.2 / 2.2)
    assert relative_error(np.array([0.0]), np.array([1e-12]), floor=1.0) == pytest.approx(1e-12)
    assert relative_error(STRICT.asarray(np.ones(2)), np.ones(2)) == 0.0
    with pytest.raises(ValueError, match=r"shapes differ: analytic \(2,\), numerical \(3,\)"):
        relative_error(np.zeros(2), np.zeros(3))


# -- gradcheck_module on a hand-made, duck-typed module ---------------------------------------


class Param:
    def __init__(self, data):
        self.data = data
        self.grad = np.zeros_like(data)


class TinyMLP:
    """``y = tanh(x W1ᵀ + b1) W2ᵀ``, with the Module interface gradcheck_module relies on.

    ``bug`` plants a mistake in one gradient: "scale" (×1.01), "transpose", "forget_bias".
    """

    def __init__(self, n_in=3, n_hidden=4, n_out=3, dtype=np.float64, bug=None, seed=0):
        g = np.random.default_rng(seed)
        self.w1 = Param(g.standard_normal((n_hidden, n_in)).astype(dtype))
        self.b1 = Param(g.standard_normal(n_hidden).astype(dtype))
        self.w2 = Param(g.standard_normal((n_out, n_hidden)).astype(dtype))
        self.bug = bug

    def named_parameters(self):
        yield "fc1.weight", self.w1
        yield "fc1.bias", self.b1
        yield "fc2.weight", self.w2

    def zero_grad(self):
        for _, p in self.named_parameters():
            p.grad[...] = 0.0

    def forward(self, x):
        a, self.c1 = linear_forward(x, self.w1.data, self.b1.data)
        self.h = np.tanh(a)
        out, self.c2 = linear_forward(self.h, self.w2.data)
        return out

    def backward(self, dout):
        dh, dw2, _ = linear_backward(dout, self.c2)
        da = dh * (1.0 - self.h**2)
        dx, dw1, db1 = linear_backward(da, self.c1)
        if self.bug == "scale":
            dw2 = 1.01 * dw2
        if self.bug == "transpose":
            dw1 = dw1.T.reshape(dw1.shape)
        if self.bug == "forget_bias":
            db1 = 0.0 * db1
        self.w1.grad += dw1
        self.b1.grad += db1
        self.w2.grad += dw2
        return dx


def module_input(seed=1):
    return np.random.default_rng(seed).standard_normal((2, 5, 3))


def test_gradcheck_module_passes_a_correct_module():
    errors = gradcheck_module(TinyMLP(), module_input())
    assert set(errors) == {"fc1.weight", "fc1.bias", "fc2.weight", "input.0"}
    assert max(errors.values()) <= GRADCHECK_RTOL


@pytest.mark.parametrize(("bug", "name"), [("scale", "fc2.weight"), ("transpose", "fc1.weight"),
                                          ("forget_bias", "fc1.bias")])
def test_gradcheck_module_catches_a_wrong_gradient(bug, name):
    errors = gradcheck_module(TinyMLP(bug=bug), module_input())
    assert errors[name] > WRONG
    assert all(e <= GRADCHECK_RTOL for n, e in errors.items() if n != name)


def test_gradcheck_module_samples_elements():
    errors = gradcheck_module(TinyMLP(n_in=6, n_hidden=8), np.ones((2, 6)) * 0.3,
                              max_per_tensor=5)
    assert max(errors.values()) <= GRADCHECK_RTOL
    errors = gradcheck_module(TinyMLP(n_in=6, n_hidden=8, bug="scale"), np.ones((2, 6)) * 0.3,
                              max_per_tensor=5)
    assert errors["fc2.weight"] > WRONG


def test_gradcheck_module_without_inputs():
    errors = gradcheck_module(TinyMLP(), module_input(), check_inputs=False)
    assert "input.0" not in errors and max(errors.values()) <= GRADCHECK_RTOL


def test_gradcheck_module_leaves_parameters_unchanged():
    m = TinyMLP()
    before = [p.data.copy() for _, p in m.named_parameters()]
    gradcheck_module(m, module_input())
    for (_, p), b in zip(m.named_parameters(), before, strict=True):
        np.testing.assert_array_equal(p.data, b)


def test_gradcheck_module_refuses_float32():
    with pytest.raises(TypeError, match=r"needs float64 arrays.*got fc1.weight of dtype float32"):
        gradcheck_module(TinyMLP(dtype=np.float32), module_input())
    with pytest.raises(TypeError, match=r"got input.0 of dtype float32"):
        gradcheck_module(TinyMLP(), module_input().astype(np.float32))
