"""The Numba kernels of cross-entropy (``nanotf.functional.fused.numba_loss``) against the
reference op (``cross_entropy_forward`` / ``cross_entropy_backward`` inside
``reference_only()``), on NumPy arrays and on the strict stand-in.

* The loss, the cache's probabilities and the gradient against the reference, normwise relative
  (``rel_error``) within ``TOL``: float64 1e-12, float32 1e-6 (the kernel's softmax is
  ``e / Σ e``, the reference's ``exp(log p)``; both within a few ulps of the exact one); the rest
  of the cache (targets, valid, denom, smoothing, shape) and every dtype and type exactly the
  reference's. Over float32 and float64, reductions mean and sum, smoothing 0, 0.1 and 1,
  targets ignored or not, one row, V = 1, V = 8000, widths that are no multiple of the lanes,
  logits that are not C-contiguous, a 0-d and a Python-number upstream gradient.
* Ignored rows whose logits are NaN or inf: the same finite results as the reference, a loss of
  exactly 0 and a gradient of exactly 0 there; a NaN in a counted row makes the loss NaN, as in
  the reference.
* A fused forward's cache feeds the reference backward, and the other way round.
* Determinism: two runs are bitwise equal; the stand-in gives NumPy's bits, through the stand-in's
  kernels, with no implicit host sync.

Skipped, with the reason, where Numba is not installed (it is the optional ``fast`` extra).
"""

from __future__ import annotations

import numpy as np
import pytest

numba = pytest.importorskip("numba", reason="Numba is not installed (the optional 'fast' extra)")

from nanotf.checks import ids_checked_on_host  # noqa: E402  (after the skip)
from nanotf.functional import (  # noqa: E402
    cross_entropy_backward,
    cross_entropy_forward,
    fused,
    reference_only,
)
from nanotf.functional.fused import numba_kernels, numba_loss  # noqa: E402
from nanotf.testing import strict as strict_mod  # noqa: E402
from nanotf.testing.strict import count_syncs, refuse_syncs  # noqa: E402
from tests.conftest import NUMPY, STRICT, Backend, assert_same_on_strict, rel_error  # noqa: E402

OPS = ("cross_entropy_forward", "cross_entropy_backward")
#: normwise relative tolerance of the kernels against the reference
TOL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-6}
# (logits shape, ignore_index or None for none ignored): one row, V = 1, widths below, at and
# above the lanes (64) and no multiple of them, a realistic vocabulary
CASES = [((1, 5), None), ((1, 1), None), ((4, 1), 7), ((6, 4), -100), ((2, 5, 7), 0),
         ((3, 4, 3), 2), ((3, 64), 0), ((5, 1025), 0), ((2, 3, 130), None), ((2, 16, 8000), 0)]
SMOOTHING = [0.0, 0.1, 1.0]
REDUCTIONS = ["mean", "sum"]


@pytest.fixture(autouse=True)
def kernels_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """The switch on and Numba's cross-entropy kernels registered for NumPy and the stand-in,
    for each test; the real registry comes back after."""
    monkeypatch.setattr(fused, "_state", {**fused._state, "enabled": True})
    kernels = dict(fused._KERNELS)
    for op in OPS:
        kernels[(op, "numpy")] = numba_kernels.KERNELS[op]
        kernels[(op, "strict")] = numba_kernels.STRICT_KERNELS[op]
    monkeypatch.setattr(fused, "_KERNELS", kernels)
    monkeypatch.setattr(fused, "_LAZY", {**fused._LAZY, "numpy": True, "strict": True})


def data(shape, dtype, ignore_index, seed=0):
    """Logits of spread 2, targets in [0, V) with about a third ignored (never all), dloss."""
    g = np.random.default_rng(seed)
    logits = (2.0 * g.standard_normal(shape)).astype(dtype)
    targets = g.integers(0, shape[-1], size=shape[:-1])
    if ignore_index is not None:
        flat = targets.reshape(-1)
        drop = g.random(flat.size) < 0.35
        drop[0] = False
        flat[drop] = ignore_index
    return logits, targets, np.asarray(g.standard_normal(), dtype=dtype)


def run(bk: Backend, logits, targets, dloss, **kw):
    """Loss, cache and gradient, as host arrays (the cache's arrays too)."""
    loss, cache = cross_entropy_forward(bk.asarray(logits), bk.asarray(targets), **kw)
    d = dloss if isinstance(dloss, float) else bk.asarray(dloss)
    dlogits = cross_entropy_backward(d, cache)
    host = bk.host(loss, cache.probs, cache.targets, cache.valid, dlogits)
    return (*host, cache)


def fused_and_reference(run_once):
    got = run_once()
    with reference_only():
        want = run_once()
    return got, want


def assert_matches(got, want, dtype) -> None:
    """Loss, probs and dlogits within TOL; targets and valid equal; the cache's other fields,
    dtypes, shapes and types exactly the reference's."""
    (loss, probs, targets, valid, dlogits, cache) = got
    (loss_r, probs_r, targets_r, valid_r, dlogits_r, cache_r) = want
    tol = TOL[np.dtype(dtype)]
    for name, g, w in (("loss", loss, loss_r), ("probs", probs, probs_r),
                       ("dlogits", dlogits, dlogits_r)):
        assert g.dtype == w.dtype == np.dtype(dtype), f"{name}: {g.dtype} vs {w.dtype}"
        assert g.shape == w.shape, f"{name}: {g.shape} vs {w.shape}"
        err = rel_error(g, w)
        assert err <= tol, f"{name}: fused vs reference {err:.3g} ({np.dtype(dtype)})"
    for name, g, w in (("targets", targets, targets_r), ("valid", valid, valid_r)):
        assert g.dtype == w.dtype and g.shape == w.shape, name
        np.testing.assert_array_equal(g, w, err_msg=name)
    assert type(cache.denom) is type(cache_r.denom)
    if isinstance(cache_r.denom, int):
        assert cache.denom == cache_r.denom
    else:
        np.testing.assert_array_equal(cache.denom.get(), cache_r.denom.get())
    assert cache.label_smoothing == cache_r.label_smoothing
    assert cache.shape == cache_r.shape
    assert type(cache.probs) is type(cache_r.probs)


def kwargs(ignore_index, smoothing, reduction):
    kw = {"label_smoothing": smoothing, "reduction": reduction}
    if ignore_index is not None:
        kw["ignore_index"] = ignore_index
    return kw


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", SMOOTHING)
@pytest.mark.parametrize(("shape", "ignore_index"), CASES)
def test_matches_reference(dtype, shape, ignore_index, smoothing, reduction):
    logits, targets, dloss = data(shape, dtype, ignore_index)
    kw = kwargs(ignore_index, smoothing, reduction)
    got, want = fused_and_reference(lambda: run(NUMPY, logits, targets, dloss, **kw))
    assert_matches(got, want, dtype)
    if ignore_index is not None:
        ignored = (targets == ignore_index).reshape(-1)
        np.testing.assert_array_equal(got[4].reshape(-1, shape[-1])[ignored], 0.0)
        np.testing.assert_array_equal(got[1][ignored], want[1][ignored])  # the uniform rows


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_a_python_number_as_the_upstream_gradient(dtype, smoothing):
    logits, targets, _ = data((3, 7, 11), dtype, 0, seed=1)
    got, want = fused_and_reference(
        lambda: run(NUMPY, logits, targets, 0.37, ignore_index=0, label_smoothing=smoothing))
    assert_matches(got, want, dtype)


@pytest.mark.parametrize("smoothing", SMOOTHING)
def test_nan_and_inf_in_ignored_rows_reach_nothing(dtype, smoothing):
    logits, targets, dloss = data((4, 6, 129), dtype, 0, seed=2)
    ignored = targets == 0
    logits[ignored] = np.nan
    rows = np.argwhere(ignored)
    logits[tuple(rows[0])][3] = np.inf
    logits[tuple(rows[1])][:] = -np.inf
    kw = dict(ignore_index=0, label_smoothing=smoothing)
    got, want = fused_and_reference(lambda: run(NUMPY, logits, targets, dloss, **kw))
    assert_matches(got, want, dtype)  # rel_error refuses NaN and inf: everything is finite
    np.testing.assert_array_equal(got[4][ignored], 0.0)
    assert not np.signbit(got[4][ignored]).any()  # +0, as the reference's copyto


def test_nan_in_a_counted_row_makes_the_loss_nan(dtype):
    logits, targets, dloss = data((3, 9), dtype, None, seed=3)
    logits[1, 4] = np.nan
    got, want = fused_and_reference(lambda: run(NUMPY, logits, targets, dloss))
    assert np.isnan(got[0]) and np.isnan(want[0])
    assert np.isnan(got[4][1]).all() and np.isnan(want[4][1]).all()
    np.testing.assert_array_equal(np.isnan(got[1]), np.isnan(want[1]))


def test_every_target_ignored_with_sum(dtype):
    logits, _, dloss = data((2, 3, 5), dtype, None)
    targets = np.full((2, 3), 4)
    logits[...] = np.nan
    got, want = fused_and_reference(
        lambda: run(NUMPY, logits, targets, dloss, ignore_index=4, reduction="sum"))
    assert got[0] == 0.0 and want[0] == 0.0
    np.testing.assert_array_equal(got[4], 0.0)
    assert_matches(got, want, dtype)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_logits_that_are_not_contiguous(dtype, smoothing):
    logits, targets, dloss = data((7, 3, 130), dtype, 0, seed=4)
    views = [logits.transpose(1, 0, 2).copy().transpose(1, 0, 2),  # strided rows
             np.asfortranarray(logits), logits[..., ::-1]]
    kw = dict(ignore_index=0, label_smoothing=smoothing)
    for view in views:
        assert not view.flags.c_contiguous
        got, want = fused_and_reference(lambda v=view: run(NUMPY, v, targets, dloss, **kw))
        assert_matches(got, want, dtype)
    strided_targets = np.repeat(targets, 2, axis=1)[:, ::2]
    got, want = fused_and_reference(
        lambda: run(NUMPY, logits, strided_targets, dloss, ignore_index=0))
    assert_matches(got, want, dtype)


def test_caches_cross_over(dtype):
    """A fused forward's cache feeds the reference backward, and the other way round."""
    logits, targets, dloss = data((4, 5, 300), dtype, 0, seed=5)
    kw = dict(ignore_index=0, label_smoothing=0.1)
    _, fused_cache = cross_entropy_forward(logits, targets, **kw)
    with reference_only():
        _, ref_cache = cross_entropy_forward(logits, targets, **kw)
        want = cross_entropy_backward(dloss, ref_cache)
        ref_on_fused = cross_entropy_backward(dloss, fused_cache)
    fused_on_ref = cross_entropy_backward(dloss, ref_cache)
    for got in (ref_on_fused, fused_on_ref):
        assert got.dtype == want.dtype and got.shape == want.shape
        assert rel_error(got, want) <= TOL[np.dtype(dtype)]
    # the backward is the reference's steps in the reference's order: the same bits
    np.testing.assert_array_equal(fused_on_ref, want)


def test_two_runs_are_bitwise_equal(dtype):
    logits, targets, dloss = data((3, 16, 1000), dtype, 0, seed=6)
    kw = dict(ignore_index=0, label_smoothing=0.1)
    first, second = (run(NUMPY, logits, targets, dloss, **kw)[:5] for _ in range(2))
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_the_stand_in_gives_the_numpy_kernels_bits(dtype, smoothing, reduction):
    logits, targets, dloss = data((2, 5, 257), dtype, 0, seed=7)
    kw = dict(ignore_index=0, label_smoothing=smoothing, reduction=reduction)
    calls: list[str] = []
    for op in OPS:
        kernel = fused._KERNELS[(op, "strict")]

        def counted(*args, _op=op, _kernel=kernel):
            calls.append(_op)
            return _kernel(*args)

        fused._KERNELS[(op, "strict")] = counted

    def both(bk: Backend):
        loss, probs, targets_safe, valid, dlogits, _ = run(bk, logits, targets, dloss, **kw)
        again = run(bk, logits, targets, 0.5, **kw)[4]  # a Python number as dloss
        return loss, probs, targets_safe, valid, dlogits, again

    assert_same_on_strict(both)
    assert calls == [OPS[0], OPS[1], OPS[0], OPS[1]]


def test_the_stand_in_makes_no_host_sync():
    logits, targets, _ = data((3, 5, 70), np.float32, 0, seed=8)
    dev_logits, dev_targets = STRICT.asarray(logits), STRICT.asarray(targets)
    want_loss, want_cache = cross_entropy_forward(logits, targets, ignore_index=0)
    want = cross_entropy_backward(1.0, want_cache)
    with count_syncs() as counted, refuse_syncs(), ids_checked_on_host():
        loss, cache = cross_entropy_forward(dev_logits, dev_targets, ignore_index=0)
        dlogits = cross_entropy_backward(1.0, cache)
    assert (counted.implicit, counted.transfers) == (0, 0)
    assert isinstance(cache.denom, strict_mod.StrictArray)
    np.testing.assert_array_equal(loss.get(), want_loss)
    np.testing.assert_array_equal(dlogits.get(), want)


def test_the_kernels_refuse_what_the_loops_cannot_take():
    x = np.zeros((2, 3), np.float16)
    with pytest.raises(TypeError, match=r"float32 or float64 input, got float16"):
        numba_loss.cross_entropy_forward(x, np.zeros(2, int), np.ones(2, bool), 0.0)
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(IndexError, match=r"targets in \[0, 3\).*got \[0, 3\]"):
        numba_loss.cross_entropy_forward(x, np.array([0, 3]), np.ones(2, bool), 0.0)
    with pytest.raises(IndexError, match=r"got \[-1, 0\]"):
        numba_loss.cross_entropy_backward(x, np.array([-1, 0]), np.ones(2, bool), 1.0, 0.0)
    with pytest.raises(ValueError, match=r"shape \(2,\), got \(3,\) and \(2,\)"):
        numba_loss.cross_entropy_backward(x, np.zeros(3, int), np.ones(2, bool), 1.0, 0.0)
