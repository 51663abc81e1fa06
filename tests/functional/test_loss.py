"""cross_entropy: ignore_index, label smoothing and both reductions against torch; errors."""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import pytest
import torch
import torch.nn.functional as tF
from hypothesis import given, settings
from hypothesis import strategies as st

from nanotf.functional import cross_entropy_backward, cross_entropy_forward, reference_only
from nanotf.gradcheck import gradcheck
from tests.conftest import (
    Backend,
    assert_all_close,
    assert_dtypes,
    assert_gradcheck,
    assert_same_on_strict,
)

# (logits shape, ignore_index or None for none ignored): batch 1, length 1, 2-D and 3-D logits
CASES = [((1, 2), None), ((1, 1, 5), None), ((6, 4), -100), ((2, 5, 7), 0), ((3, 4, 3), 2)]
SMOOTHING = [0.0, 0.1, 1.0]
REDUCTIONS = ["mean", "sum"]


def data(shape, dtype, ignore_index, seed=0):
    g = np.random.default_rng(seed)
    logits = (2.0 * g.standard_normal(shape)).astype(dtype)
    n_classes = shape[-1]
    targets = g.integers(0, n_classes, size=shape[:-1])
    if ignore_index is not None:
        # ignore about a third of the positions, but never all of them
        flat = targets.reshape(-1)
        drop = g.random(flat.size) < 0.35
        drop[0] = False
        flat[drop] = ignore_index
    dloss = np.asarray(g.standard_normal(), dtype=dtype)
    return logits, targets, dloss


def run(bk: Backend, logits, targets, dloss, **kw):
    loss, cache = cross_entropy_forward(bk.asarray(logits), bk.asarray(targets), **kw)
    return bk.host(loss, cross_entropy_backward(bk.asarray(dloss), cache))


def reference(logits, targets, dloss, ignore_index=-100, label_smoothing=0.0, reduction="mean"):
    x = torch.from_numpy(logits.reshape(-1, logits.shape[-1])).requires_grad_(True)
    y = torch.from_numpy(targets.reshape(-1))
    loss = tF.cross_entropy(
        x, y, ignore_index=ignore_index, label_smoothing=label_smoothing, reduction=reduction
    )
    (loss * torch.from_numpy(dloss)).sum().backward()
    return loss.detach().numpy(), x.grad.numpy().reshape(logits.shape)


def kwargs(ignore_index, smoothing, reduction):
    kw = {"label_smoothing": smoothing, "reduction": reduction}
    if ignore_index is not None:
        kw["ignore_index"] = ignore_index
    return kw


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", SMOOTHING)
@pytest.mark.parametrize(("shape", "ignore_index"), CASES)
def test_gradcheck(fd_backend: Backend, shape, ignore_index, smoothing, reduction):
    logits, targets, _ = data(shape, np.float64, ignore_index)
    errors = gradcheck(
        cross_entropy_forward,
        cross_entropy_backward,
        {"logits": fd_backend.asarray(logits), "targets": fd_backend.asarray(targets)},
        forward_kwargs=kwargs(ignore_index, smoothing, reduction),
    )
    assert_gradcheck(errors, "cross_entropy")


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", SMOOTHING)
@pytest.mark.parametrize(("shape", "ignore_index"), CASES)
def test_matches_torch(xp_params: Backend, dtype, shape, ignore_index, smoothing, reduction):
    logits, targets, dloss = data(shape, dtype, ignore_index)
    kw = kwargs(ignore_index, smoothing, reduction)
    got = run(xp_params, logits, targets, dloss, **kw)
    names = ["cross_entropy.loss", "cross_entropy.dlogits"]
    assert_all_close(got, reference(logits, targets, dloss, **kw), dtype, names)
    assert_dtypes(got, dtype, names)
    assert got[0].shape == ()


def test_ignored_positions_get_no_gradient():
    logits, targets, dloss = data((4, 6, 5), np.float64, 0)
    _, dlogits = run(Backend("numpy", np), logits, targets, dloss, ignore_index=0,
                     label_smoothing=0.1)
    np.testing.assert_array_equal(dlogits[targets == 0], 0.0)
    assert (dlogits[targets != 0] != 0).all()


def test_all_ignored_with_sum_is_zero_like_torch():
    logits = np.random.default_rng(0).standard_normal((3, 4))
    targets = np.full(3, -100)
    loss, dlogits = run(Backend("numpy", np), logits, targets, np.asarray(1.0), reduction="sum")
    assert loss == 0.0
    np.testing.assert_array_equal(dlogits, 0.0)
    assert float(reference(logits, targets, np.asarray(1.0), reduction="sum")[0]) == 0.0


def test_python_float_upstream_gradient_keeps_float32():
    logits, targets, _ = data((3, 4), np.float32, None)
    _, cache = cross_entropy_forward(logits, targets)
    assert cross_entropy_backward(1.0, cache).dtype == np.float32


@pytest.mark.parametrize("fused_on", [True, False])
def test_numpy_scalar_smoothing_keeps_the_logits_dtype(fused_on):
    """label_smoothing given as a NumPy float64 (or float32) scalar: the loss and gradient stay
    float32 and equal those of the same value given as a Python float."""
    logits = np.random.default_rng(0).standard_normal((6, 5)).astype(np.float32)
    targets = np.array([0, 1, 2, 3, 4, 1])
    with nullcontext() if fused_on else reference_only():
        want, cache = cross_entropy_forward(logits, targets, label_smoothing=0.25)
        want_grad = cross_entropy_backward(np.float32(1.0), cache)
        for eps in (np.float64(0.25), np.float32(0.25)):
            loss, cache = cross_entropy_forward(logits, targets, label_smoothing=eps)
            grad = cross_entropy_backward(np.float32(1.0), cache)
            assert loss.dtype == np.float32 and grad.dtype == np.float32
            np.testing.assert_array_equal(loss, want)
            np.testing.assert_array_equal(grad, want_grad)


def test_strict_equals_numpy():
    logits, targets, dloss = data((2, 5, 7), np.float32, 0)
    assert_same_on_strict(
        lambda bk: run(bk, logits, targets, dloss, ignore_index=0, label_smoothing=0.1)
    )


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [-1, 5, 7])
def test_targets_out_of_range(xp_params: Backend, bad):
    logits = xp_params.asarray(np.zeros((3, 5), np.float32))
    targets = xp_params.asarray(np.array([0, bad, 1]))
    with pytest.raises(IndexError, match=rf"targets must lie in \[0, 5\) \(or -100\), got.* {bad}"):
        cross_entropy_forward(logits, targets)


def test_all_targets_ignored_with_mean():
    with pytest.raises(ValueError, match=r"all 3 targets equal ignore_index=-100"):
        cross_entropy_forward(np.zeros((3, 5), np.float32), np.full(3, -100))


def test_targets_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"targets must have shape \(2, 3\).*got \(6,\)"):
        cross_entropy_forward(np.zeros((2, 3, 5), np.float32), np.zeros(6, np.int64))


def test_float_targets_are_refused():
    with pytest.raises(TypeError, match=r"targets must be an integer array, got float32"):
        cross_entropy_forward(np.zeros((3, 5), np.float32), np.zeros(3, np.float32))


def test_integer_logits_are_refused():
    with pytest.raises(TypeError, match=r"logits must be a floating-point array.*got int64"):
        cross_entropy_forward(np.zeros((3, 5), np.int64), np.zeros(3, np.int64))


@pytest.mark.parametrize("smoothing", [-0.1, 1.1])
def test_label_smoothing_outside_unit_interval(smoothing):
    with pytest.raises(ValueError, match=rf"label_smoothing must be in \[0, 1\], got {smoothing}"):
        cross_entropy_forward(np.zeros((3, 5)), np.zeros(3, np.int64), label_smoothing=smoothing)


def test_unknown_reduction():
    with pytest.raises(ValueError, match=r"reduction must be 'mean' or 'sum', got 'none'"):
        cross_entropy_forward(np.zeros((3, 5)), np.zeros(3, np.int64), reduction="none")


# -- properties -------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 12),
    n_classes=st.integers(1, 9),
    seed=st.integers(0, 2**32 - 1),
    smoothing=st.floats(0.0, 1.0),
    ignore_frac=st.floats(0.0, 0.9),
    reduction=st.sampled_from(REDUCTIONS),
)
def test_property_matches_torch(n, n_classes, seed, smoothing, ignore_frac, reduction):
    g = np.random.default_rng(seed)
    logits = 3.0 * g.standard_normal((n, n_classes))
    targets = g.integers(0, n_classes, size=n)
    targets[g.random(n) < ignore_frac] = -100
    targets[0] = 0  # at least one target counts
    dloss = np.asarray(g.standard_normal())
    kw = {"label_smoothing": smoothing, "reduction": reduction}
    got = run(Backend("numpy", np), logits, targets, dloss, **kw)
    names = ["cross_entropy.loss", "cross_entropy.dlogits"]
    assert_all_close(got, reference(logits, targets, dloss, **kw), np.float64, names)
