"""Bias + ReLU (``nanotf.functional.bias_relu``), the reference op, and FeedForward's use of it.

* Finite differences in float64 (``z = x + bias`` kept away from ReLU's kink by more than the
  step); forward and backward against ``torch.relu(x + b)`` on NumPy, the strict stand-in and
  CuPy (float64 1e-12, float32 1e-6 normwise relative; ``out`` and ``dx`` exactly, as they
  involve one addition and a selection); NaN, zero and empty rows as torch has them; bad input.
* FeedForward adds linear1's bias inside the activation's op: its output, saved intermediates
  and every gradient equal those of the layers run one after the other (Linear, then
  Activation), with the fused kernels on and off, for ReLU and both GELUs; a first layer
  without bias keeps the old path.

The Numba kernels behind the op: tests/functional/test_fused_numba_bias_relu.py.
"""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import pytest
import torch

import nanotf
from nanotf.functional import bias_relu_backward, bias_relu_forward, fused, reference_only
from nanotf.functional.activations import ReluCache
from nanotf.functional.bias_relu import BiasReluCache
from nanotf.gradcheck import gradcheck
from nanotf.nn import Activation, FeedForward
from tests.conftest import (
    RTOL,
    Backend,
    assert_dtypes,
    assert_gradcheck,
    assert_same_on_strict,
    normal,
    rel_error,
    torch_reference,
)
from tests.functional.test_fused import host_kernel_libs, kernel_backend  # noqa: F401 (fixtures)

SHAPES = [(1,), (1, 1, 4), (2, 3, 5), (4, 7), (3, 1), (2, 2, 33)]
#: tighter than the suite's RTOL: out and dx are exact, dbias is a plain sum
TOL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-6}


def relu_data(shape, dtype, seed=0, margin=0.1):
    """x, bias and dout with ``z = x + bias`` at least ``margin`` away from 0 (either sign)."""
    g = np.random.default_rng(seed)
    bias = g.standard_normal(shape[-1])
    z = g.choice([-1.0, 1.0], size=shape) * (margin + np.abs(g.standard_normal(shape)))
    return (z - bias).astype(dtype), bias.astype(dtype), normal(g, shape, dtype)


def run_bias_relu(bk: Backend, x, bias, dout):
    out, cache = bias_relu_forward(bk.asarray(x), bk.asarray(bias))
    return bk.host(out, cache.z, *bias_relu_backward(bk.asarray(dout), cache))


@pytest.mark.parametrize("shape", SHAPES)
def test_bias_relu_gradcheck(fd_backend: Backend, shape):
    x, bias, _ = relu_data(shape, np.float64)
    errors = gradcheck(bias_relu_forward, bias_relu_backward,
                       {"x": fd_backend.asarray(x), "bias": fd_backend.asarray(bias)})
    assert set(errors) == {"x", "bias"}
    assert_gradcheck(errors, "bias_relu")


@pytest.mark.parametrize("shape", SHAPES)
def test_bias_relu_matches_torch(xp_params: Backend, dtype, shape):
    x, bias, dout = relu_data(shape, dtype, margin=0.0)
    out, z, dx, dbias = run_bias_relu(xp_params, x, bias, dout)
    t_out, grads = torch_reference(lambda x, b: torch.relu(x + b), {"x": x, "b": bias}, dout)
    np.testing.assert_array_equal(out, t_out)
    np.testing.assert_array_equal(dx, grads["x"])
    np.testing.assert_array_equal(z, x + bias)
    err = rel_error(dbias, grads["b"])
    assert err <= TOL[np.dtype(dtype)], f"bias_relu.dbias: {err:.3g} ({np.dtype(dtype)})"
    assert_dtypes([out, z, dx, dbias], dtype, ["out", "z", "dx", "dbias"])
    assert dbias.shape == bias.shape


def test_bias_relu_cache():
    x, bias, _ = relu_data((3, 4), np.float32)
    out, cache = bias_relu_forward(x, bias)
    assert type(cache) is BiasReluCache and type(cache.relu) is ReluCache
    assert cache.relu.out is out
    np.testing.assert_array_equal(cache.z, x + bias)


def test_bias_relu_nan_zero_and_inf_like_torch():
    """NaN stays NaN and passes dout through (torch's threshold_backward); z = 0 gets
    gradient 0; z = ±inf as any other value. (A dout of inf where z <= 0 gives NaN here,
    inf · 0 as in ``relu_backward``, where torch selects 0: dout is finite in the suite.)"""
    x = np.array([[np.nan, -1.0, 2.0, np.inf], [1.0, -3.0, -2.0, -np.inf]])
    bias = np.array([0.5, 1.0, -2.0, 1.0])  # z: [[nan, 0, 0, inf], [1.5, -2, -4, -inf]]
    dout = np.array([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]])
    for fused_on in (True, False):
        with reference_only() if not fused_on else nullcontext():
            out, cache = bias_relu_forward(x, bias)
            dx, dbias = bias_relu_backward(dout, cache)
        t_out, grads = torch_reference(lambda x, b: torch.relu(x + b), {"x": x, "b": bias}, dout)
        np.testing.assert_array_equal(out, t_out)
        np.testing.assert_array_equal(dx, grads["x"])
        np.testing.assert_array_equal(dbias, grads["b"])


def test_bias_relu_of_no_rows_gives_a_zero_bias_gradient(dtype):
    x, bias = np.zeros((0, 3), dtype), np.ones(3, dtype)
    out, cache = bias_relu_forward(x, bias)
    dx, dbias = bias_relu_backward(np.zeros((0, 3), dtype), cache)
    assert out.shape == dx.shape == (0, 3)
    np.testing.assert_array_equal(dbias, np.zeros(3, dtype))
    assert dbias.dtype == np.dtype(dtype)


def test_bias_relu_strict_equals_numpy():
    x, bias, dout = relu_data((2, 3, 5), np.float32)
    assert_same_on_strict(lambda bk: run_bias_relu(bk, x, bias, dout))


def test_bias_relu_does_not_modify_its_inputs():
    x, bias, dout = relu_data((3, 4), np.float64)
    before = (x.copy(), bias.copy(), dout.copy())
    out, cache = bias_relu_forward(x, bias)
    bias_relu_backward(dout, cache)
    for a, b in zip((x, bias, dout), before, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda x: bias_relu_forward(x, np.zeros((2, 3), np.float32)), ValueError,
     r"^bias_relu bias must have shape \(3,\) to match x \(2, 3\), got \(2, 3\)$"),
    (lambda x: bias_relu_forward(x, np.zeros(2, np.float32)), ValueError,
     r"^bias_relu bias must have shape \(3,\) to match x \(2, 3\), got \(2,\)$"),
    (lambda x: bias_relu_forward(x, np.zeros(3)), TypeError,
     r"^bias_relu inputs must share one floating dtype, got x: float32, bias: float64$"),
    (lambda x: bias_relu_forward(np.zeros((2, 3), np.int64), np.zeros(3)), TypeError,
     r"^bias_relu input must be a floating-point array .*int64"),
    (lambda x: bias_relu_forward(x, [0.0, 0.0, 0.0]), TypeError,
     r"^bias_relu bias must be a floating-point array .*got list"),
    (lambda x: bias_relu_forward(np.zeros((2, 0), np.float32), np.zeros(0, np.float32)),
     ValueError, r"bias_relu input must not be empty along axis -1 .*got shape \(2, 0\)"),
    (lambda x: bias_relu_forward(np.float32(1.0), np.zeros(1, np.float32)), ValueError,
     r"bias_relu input must have an axis -1 .*got shape \(\)"),
    (lambda x: bias_relu_backward(np.zeros((3, 2), np.float32), bias_relu_forward(
        x, np.zeros(3, np.float32))[1]), ValueError, r"^bias_relu_backward: dout must have"),
    (lambda x: bias_relu_backward(np.zeros((2, 3)), bias_relu_forward(
        x, np.zeros(3, np.float32))[1]), TypeError, r"^bias_relu_backward: dout must .*float32"),
])
def test_bias_relu_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call(np.zeros((2, 3), np.float32))


# -- FeedForward: linear1's bias added inside the activation's op -----------------------------


def unfolded(ff: FeedForward, x, dout):
    """What FeedForward computed before the fold: linear1 and the activation as modules, one
    after the other (dropout 0). Returns out, pre, hidden, dx, dpre, dhidden and the grads."""
    first, second = ff.linear1, ff.linear2
    act = Activation(ff.activation.name)
    pre = first.forward(x)
    hidden = act.forward(pre)
    out = second.forward(hidden)
    dhidden = second.backward(dout)
    dpre = act.backward(dhidden)
    dx = first.backward(dpre)
    grads = {n: p.grad.copy() for n, p in ff.named_parameters()}
    return [out, pre, hidden, dx, dpre, dhidden], grads


def folded(ff: FeedForward, x, dout):
    out = ff.forward(x)
    dx = ff.backward(dout)
    saved = [ff.intermediate(n) for n in ("pre_activation", "hidden")]
    saved_grads = [ff.intermediate_grad(n) for n in ("pre_activation", "hidden")]
    grads = {n: p.grad.copy() for n, p in ff.named_parameters()}
    return [out, *saved, dx, *saved_grads], grads


@pytest.mark.parametrize("fused_on", [True, False], ids=["fused", "reference"])
@pytest.mark.parametrize("activation", ["relu", "gelu", "gelu_new"])
def test_feedforward_folds_the_first_bias_into_the_activation(activation, fused_on, dtype):
    nanotf.set_default_dtype(dtype)
    ff = FeedForward(16, 40, activation, dropout=0.0)
    g = np.random.default_rng(1)
    x, dout = normal(g, (3, 5, 16), dtype), normal(g, (3, 5, 16), dtype)
    names = ["out", "pre_activation", "hidden", "dx", "pre_activation.grad", "hidden.grad"]
    with nullcontext() if fused_on else reference_only():
        ff.zero_grad()
        want, want_grads = unfolded(ff, x, dout)
        ff.zero_grad()
        got, got_grads = folded(ff, x, dout)
    assert list(got_grads) == ["linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias"]
    tol = TOL[np.dtype(dtype)]
    for g_, w, name in zip(got, want, names, strict=True):
        assert g_.dtype == w.dtype == np.dtype(dtype) and g_.shape == w.shape, name
        assert rel_error(g_, w) <= tol, f"{name}: {rel_error(g_, w):.3g}"
    for name, w in want_grads.items():
        if name == "linear1.bias" and fused_on:  # float64 block sums in the kernel
            assert rel_error(got_grads[name], w) <= tol, name
        else:  # the same operations in the same order
            np.testing.assert_array_equal(got_grads[name], w, err_msg=name)
    if not fused_on:  # the reference: bit for bit what the layers gave one after the other
        for g_, w, name in zip(got, want, names, strict=True):
            np.testing.assert_array_equal(g_, w, err_msg=name)


def test_feedforward_adds_into_the_gradients_and_keeps_its_names():
    nanotf.set_default_dtype(np.float64)
    ff = FeedForward(4, 6, "relu")
    x = normal(np.random.default_rng(2), (2, 4))
    ff.forward(x)
    ff.backward(np.ones((2, 4)))
    once = {n: p.grad.copy() for n, p in ff.named_parameters()}
    ff.forward(x)
    ff.backward(np.ones((2, 4)))
    for n, p in ff.named_parameters():  # backward passes add, as Linear.backward does
        np.testing.assert_allclose(p.grad, 2 * once[n], rtol=1e-15, err_msg=n)
    assert list(ff.state_dict()) == ["linear1.weight", "linear1.bias", "linear2.weight",
                                     "linear2.bias"]


def test_feedforward_without_a_first_bias_keeps_the_layers_path():
    nanotf.set_default_dtype(np.float64)
    ff = FeedForward(4, 6, "gelu")
    ff.linear1.bias = None
    g = np.random.default_rng(3)
    x, dout = normal(g, (2, 3, 4)), normal(g, (2, 3, 4))
    ff.zero_grad()
    want, want_grads = unfolded(ff, x, dout)
    ff.zero_grad()
    got, got_grads = folded(ff, x, dout)
    assert "linear1.bias" not in got_grads
    for g_, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g_, w)
    for name, w in want_grads.items():
        np.testing.assert_array_equal(got_grads[name], w, err_msg=name)


# -- the CuPy kernels (on the GPU, and compiled for the host with NumPy standing in for CuPy) --


@pytest.mark.parametrize("shape", [(1,), (1, 1, 4), (2, 3, 5), (4, 7), (1, 1025), (3, 768),
                                   (0, 3), (33, 9)])
def test_cupy_kernels_match_the_reference(kernel_backend: Backend, dtype,  # noqa: F811
                                          shape):
    bk = kernel_backend
    x, bias, dout = relu_data(shape, dtype, margin=0.0)
    x[..., 0] = -bias[0]  # z = 0 exactly in the first column

    def run():
        return run_bias_relu(bk, x, bias, dout)

    assert fused.kernel_for("bias_relu_forward", bk.asarray(x)) is not None
    got = run()
    with reference_only():
        want = run()
    for g, w, name in zip(got, want, ["out", "z", "dx", "dbias"], strict=True):
        assert g.dtype == w.dtype == np.dtype(dtype) and g.shape == w.shape, name
        if name == "dbias":  # CuPy's sum against NumPy's
            assert rel_error(g, w) <= RTOL[np.dtype(dtype)], name
        else:
            np.testing.assert_array_equal(g, w, err_msg=name)
