"""Inverted dropout: a given mask against torch's x * mask / (1 - p), identities, statistics."""

from __future__ import annotations

import numpy as np
import pytest

import nanotf
from nanotf.functional import dropout_backward, dropout_forward
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

SHAPES = [(1,), (1, 1, 5), (2, 3, 4), (6, 7)]
PS = [0.1, 0.5, 0.9]


def data(shape, dtype, p, seed=0):
    g = np.random.default_rng(seed)
    x = normal(g, shape, dtype)
    dout = normal(g, shape, dtype)
    mask = g.random(shape) >= p
    return x, dout, mask


def run(bk: Backend, x, dout, p, mask=None, training=True, seed=None):
    rng = None if seed is None else bk.rng(seed)
    out, cache = dropout_forward(
        bk.asarray(x), p, training=training, rng=rng, mask=bk.asarray(mask)
    )
    return bk.host(out, dropout_backward(bk.asarray(dout), cache))


@pytest.mark.parametrize("p", PS)
@pytest.mark.parametrize("shape", SHAPES)
def test_gradcheck_with_a_given_mask(fd_backend: Backend, shape, p):
    x, _, mask = data(shape, np.float64, p)
    errors = gradcheck(
        dropout_forward,
        dropout_backward,
        {"x": fd_backend.asarray(x)},
        forward_kwargs={"p": p, "mask": fd_backend.asarray(mask)},
    )
    assert_gradcheck(errors, "dropout")


def test_gradcheck_with_a_drawn_mask(fd_backend: Backend):
    """A fresh generator with one seed per call draws the same mask every time."""
    x = fd_backend.asarray(normal(np.random.default_rng(0), (3, 5)))

    def forward(x):
        return dropout_forward(x, 0.4, rng=fd_backend.rng(5))

    assert_gradcheck(gradcheck(forward, dropout_backward, {"x": x}), "dropout")


@pytest.mark.parametrize("p", PS)
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_torch_with_a_given_mask(xp_params: Backend, dtype, shape, p):
    x, dout, mask = data(shape, dtype, p)
    got = run(xp_params, x, dout, p, mask)
    # torch.nn.functional.dropout cannot take a mask, so the reference is its definition
    out, grads = torch_reference(lambda x, m: x * m / (1 - p), {"x": x, "m": mask}, dout)
    names = ["dropout.out", "dropout.dx"]
    assert_all_close(got, (out, grads["x"]), dtype, names)
    assert_dtypes(got, dtype, names)


def test_strict_equals_numpy():
    x, dout, mask = data((3, 4), np.float32, 0.3)
    assert_same_on_strict(lambda bk: run(bk, x, dout, 0.3, mask))
    assert_same_on_strict(lambda bk: run(bk, x, dout, 0.3, seed=7))


@pytest.mark.parametrize(("p", "training"), [(0.0, True), (0.5, False), (1.0, False)])
def test_identity_for_p0_and_in_eval(xp_params: Backend, dtype, p, training):
    x, dout, _ = data((2, 3, 4), dtype, 0.5)
    out, dx = run(xp_params, x, dout, p, training=training, seed=0)
    np.testing.assert_array_equal(out, x)
    np.testing.assert_array_equal(dx, dout)
    assert_dtypes((out, dx), dtype, ["out", "dx"])


def test_p1_drops_everything(xp_params: Backend, dtype):
    x, dout, _ = data((2, 3, 4), dtype, 0.5)
    out, dx = run(xp_params, x, dout, 1.0, seed=0)
    np.testing.assert_array_equal(out, 0.0)
    np.testing.assert_array_equal(dx, 0.0)
    assert np.isfinite(out).all()
    assert_dtypes((out, dx), dtype, ["out", "dx"])


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_statistics(xp_params: Backend, dtype, p):
    """About 1 - p of the entries are kept, each scaled by exactly 1 / (1 - p), so E[out] = x."""
    n = 400_000
    x = np.ones(n, dtype)
    out, _ = run(xp_params, x, x, p, seed=1234)
    kept = out != 0
    frac = kept.mean()
    sigma = np.sqrt(p * (1 - p) / n)  # binomial standard deviation of the fraction
    assert abs(frac - (1 - p)) < 5 * sigma, f"kept {frac:.5f}, expected {1 - p} ± {5 * sigma:.5f}"
    np.testing.assert_allclose(out[kept], 1.0 / (1.0 - p), rtol=1e-6)
    # neighbouring draws are independent: kept-after-kept happens (1 - p)² of the time
    pairs = (kept[:-1] & kept[1:]).mean()
    assert abs(pairs - (1 - p) ** 2) < 6 * np.sqrt((1 - p) ** 2 * (1 - (1 - p) ** 2) / n)


def test_backend_generator_is_seeded():
    """Without ``rng`` the backend's generator is used: manual_seed makes draws repeat."""
    x = np.ones((50, 50), np.float32)
    nanotf.manual_seed(3)
    a, _ = dropout_forward(x, 0.5)
    b, _ = dropout_forward(x, 0.5)
    nanotf.manual_seed(3)
    c, _ = dropout_forward(x, 0.5)
    np.testing.assert_array_equal(a, c)
    assert (a != b).any()


def test_backward_reuses_the_forward_mask():
    x = np.ones((20, 20))
    out, cache = dropout_forward(x, 0.5, rng=np.random.default_rng(0))
    dx = dropout_backward(np.ones_like(x), cache)
    np.testing.assert_array_equal(dx, out)


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan")])
def test_p_outside_unit_interval(p):
    with pytest.raises(ValueError, match=rf"probability must be in \[0, 1\], got {p}"):
        dropout_forward(np.ones(3, np.float32), p)


def test_mask_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"mask must have shape \(2, 3\), got \(3, 2\)"):
        dropout_forward(np.ones((2, 3)), 0.5, mask=np.ones((3, 2), bool))


def test_integer_input_is_refused():
    with pytest.raises(TypeError, match=r"dropout input must be a floating-point.*got int64"):
        dropout_forward(np.ones(3, np.int64), 0.5)
