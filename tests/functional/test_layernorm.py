"""layernorm over the last dimension: finite differences, torch's layer_norm, properties, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch.nn.functional as tF
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from nanotf.functional import layernorm_backward, layernorm_forward
from nanotf.gradcheck import gradcheck
from tests.conftest import (
    Backend,
    assert_all_close,
    assert_close,
    assert_dtypes,
    assert_gradcheck,
    assert_same_on_strict,
    normal,
    torch_reference,
)

# a vector, batch 1 and length 1, a width of 2 (x̂ = ±1), odd widths, a 4-D input; the width
# of 1 is tested on its own (x̂ = 0 there, and torch returns round-off times 1/√eps for it)
SHAPES = [(5,), (1, 1, 4), (1, 1, 2), (2, 3, 5), (3, 7), (2, 2, 3, 6)]
# for a width of 2, dx = O(eps / σ²) (1e-13 for eps = 1e-12): below what finite differences
# resolve, so the finite-difference check takes a width of 3 there
GRADCHECK_SHAPES = [(5,), (1, 1, 4), (1, 1, 3), (2, 3, 5), (3, 7), (2, 2, 3, 6)]
EPS = [1e-5, 1e-12]  # torch's default and DistilBERT's
NAMES = ["layernorm.out", "layernorm.dx", "layernorm.dgamma", "layernorm.dbeta"]


def data(shape, dtype, seed=0, offset=0.0):
    """Rows of mean ``offset`` and standard deviation 2 (exactly, before rounding to dtype).

    LayerNorm's condition number is |mean| / std: every implementation, torch's included, loses
    about eps · |mean| / std relative, so rows whose values happen to nearly coincide would
    measure the input, not the code.
    """
    g = np.random.default_rng(seed)
    c = shape[-1]
    z = g.standard_normal(shape)
    if c > 1:
        z = (z - z.mean(axis=-1, keepdims=True)) / z.std(axis=-1, keepdims=True)
    x = (offset + 2.0 * z).astype(dtype)
    gamma = (1.0 + 0.5 * g.standard_normal(c)).astype(dtype)
    beta = normal(g, (c,), dtype)
    return x, gamma, beta, normal(g, shape, dtype)


def floors(x, gamma, dout, eps=1e-5):
    """Floors of the results that cancel by design (``terms_size`` in conftest): only dx.

    dx = rstd · (g - mean(g) - x̂ · mean(g ⊙ x̂)), g = dout ⊙ γ, cancels by design: exactly to 0
    for a width of 1 and to O(eps / σ²) for a width of 2, where torch's value is pure
    round-off. Its error is therefore measured against max |g| · rstd, the size of its terms.
    """
    x64 = x.astype(np.float64)
    rstd = 1.0 / np.sqrt(x64.var(axis=-1, keepdims=True) + eps)
    g = np.abs(dout.astype(np.float64) * gamma.astype(np.float64)).max(axis=-1, keepdims=True)
    return [0.0, float((g * rstd).max()), 0.0, 0.0]


def run(bk: Backend, x, gamma, beta, dout, eps=1e-5):
    out, cache = layernorm_forward(bk.asarray(x), bk.asarray(gamma), bk.asarray(beta), eps=eps)
    return bk.host(out, *layernorm_backward(bk.asarray(dout), cache))


def reference(x, gamma, beta, dout, eps=1e-5):
    out, grads = torch_reference(
        lambda x, g, b: tF.layer_norm(x, (x.shape[-1],), g, b, eps),
        {"x": x, "g": gamma, "b": beta},
        dout,
    )
    return out, grads["x"], grads["g"], grads["b"]


@pytest.mark.parametrize("eps", EPS)
@pytest.mark.parametrize("shape", GRADCHECK_SHAPES)
def test_gradcheck(fd_backend: Backend, shape, eps):
    x, gamma, beta, _ = data(shape, np.float64)
    inputs = {"x": x, "gamma": gamma, "beta": beta}
    errors = gradcheck(
        layernorm_forward,
        layernorm_backward,
        {k: fd_backend.asarray(v) for k, v in inputs.items()},
        forward_kwargs={"eps": eps},
    )
    assert_gradcheck(errors, "layernorm")


@pytest.mark.parametrize("eps", EPS)
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_torch(xp_params: Backend, dtype, shape, eps):
    x, gamma, beta, dout = data(shape, dtype)
    got = run(xp_params, x, gamma, beta, dout, eps)
    want = reference(x, gamma, beta, dout, eps)
    assert_all_close(got, want, dtype, NAMES, floors(x, gamma, dout, eps))
    assert_dtypes(got, dtype, NAMES)


def test_large_mean_small_spread(dtype):
    """Rows far from zero (mean 100, std 2): the two-pass variance does not cancel away."""
    x, gamma, beta, dout = data((4, 16), dtype, offset=100.0)
    got = run(Backend("numpy", np), x, gamma, beta, dout)
    want = reference(x, gamma, beta, dout)
    assert_all_close(got, want, dtype, NAMES, floors(x, gamma, dout))


def test_constant_rows_are_finite():
    """A constant row has zero variance: x̂ = 0, out = β, and eps keeps everything finite."""
    x = np.full((2, 5), 3.0)
    gamma, beta = np.arange(1.0, 6.0), np.arange(5.0)
    got = run(Backend("numpy", np), x, gamma, beta, np.ones_like(x))
    np.testing.assert_array_equal(got[0], np.broadcast_to(beta, x.shape))
    assert all(np.isfinite(a).all() for a in got)
    want = reference(x, gamma, beta, np.ones_like(x))
    assert_all_close(got, want, np.float64, NAMES, floors(x, gamma, np.ones_like(x)))


@pytest.mark.parametrize("eps", EPS)
def test_width_one(xp_params: Backend, dtype, eps):
    """One feature: x̂ = 0 exactly, so out = β, dx = 0, dγ = 0 and dβ = Σ dout."""
    x, gamma, beta, dout = data((2, 3, 1), dtype)
    out, dx, dgamma, dbeta = run(xp_params, x, gamma, beta, dout, eps)
    np.testing.assert_array_equal(out, np.broadcast_to(beta, x.shape))
    np.testing.assert_array_equal(dx, 0.0)
    np.testing.assert_array_equal(dgamma, 0.0)
    want = dout.reshape(-1, 1).astype(np.float64).sum(axis=0)
    assert_close(dbeta, want, dtype, "layernorm.dbeta")
    assert_dtypes((out, dx, dgamma, dbeta), dtype, NAMES)


def test_strict_equals_numpy():
    x, gamma, beta, dout = data((2, 3, 5), np.float32)
    assert_same_on_strict(lambda bk: run(bk, x, gamma, beta, dout))


def test_forward_does_not_modify_its_inputs():
    x, gamma, beta, dout = data((3, 4), np.float64)
    copies = [a.copy() for a in (x, gamma, beta, dout)]
    run(Backend("numpy", np), x, gamma, beta, dout)
    for a, b in zip((x, gamma, beta, dout), copies, strict=True):
        np.testing.assert_array_equal(a, b)


# -- bad input --------------------------------------------------------------------------------


def test_gamma_must_match_the_last_dimension():
    x, gamma, beta, _ = data((2, 5), np.float32)
    with pytest.raises(ValueError, match=r"\(4,\) to match x \(2, 4\), got \(5,\) and \(5,\)"):
        layernorm_forward(x[:, :4], gamma, beta)


def test_integer_input_is_refused():
    _, gamma, beta, _ = data((2, 5), np.float32)
    with pytest.raises(TypeError, match=r"layernorm input must be a floating-point.*got int64"):
        layernorm_forward(np.ones((2, 5), np.int64), gamma, beta)


def test_mixed_dtypes_are_refused():
    x, gamma, beta, _ = data((2, 5), np.float32)
    with pytest.raises(TypeError, match=r"one floating dtype.*x: float32, gamma: float64"):
        layernorm_forward(x, gamma.astype(np.float64), beta)


# -- properties -------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    shape=st.tuples(st.lists(st.integers(1, 5), max_size=3), st.integers(2, 9)).map(
        lambda t: (*t[0], t[1])
    ),
    seed=st.integers(0, 2**32 - 1),
    offset=st.sampled_from([0.0, 10.0, -1e3]),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_property_matches_torch_on_random_shapes(shape, seed, offset, dtype):
    # float32 rows of mean -1000 and std 2 lose 500 · 6e-8 = 3e-5 in any implementation
    assume(dtype == np.float64 or abs(offset) <= 10.0)
    x, gamma, beta, dout = data(shape, dtype, seed, offset)
    got = run(Backend("numpy", np), x, gamma, beta, dout)
    want = reference(x, gamma, beta, dout)
    assert_all_close(got, want, dtype, NAMES, floors(x, gamma, dout))
    assert_dtypes(got, dtype, NAMES)
