"""nanotf.optim against torch.optim: every parameter after every step, state dicts, schedules,
gradient clipping and every input check."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nanotf.nn import Parameter
from nanotf.optim import (
    SGD,
    Adam,
    AdamW,
    LRScheduler,
    clip_grad_norm,
    cosine_lr,
    noam_lr,
)
from nanotf.testing import strict
from tests.conftest import terms_size

# Tolerances against PyTorch. nanotf evaluates the same formulas in the same order, but PyTorch's
# CPU kernels fuse some multiply-adds (one rounding instead of two), so results differ in the last
# bit or two and that difference is carried from step to step. Relative to the reference value:
F32_RTOL = 1e-6
F64_RTOL = 1e-12
# ... plus an absolute floor scaled by the largest |θ| of the parameter, because elements that
# pass near zero have a tiny value but carry the rounding error of the O(max|θ|) and O(lr) terms
# that were added to reach it: relative to themselves, their error is meaningless (the suite's
# rule for quantities that vanish, applied elementwise: ``terms_size`` in tests/conftest.py).
F32_ATOL_SCALE = 1e-7
F64_ATOL_SCALE = 1e-13
# Learning-rate schedules are computed in float64; torch's CosineAnnealingLR uses a recursive
# (multiplicative) form whose rounding accumulates over the steps.
SCHED_RTOL = 1e-12

SHAPES = [(7,), (3, 5), (2, 3, 4), (1,)]
STEPS = 20
ZERO_GRAD_PARAM = 1  # this parameter gets an all-zero gradient on every third step

CONFIGS = {
    "sgd": ("SGD", dict(lr=0.1)),
    "sgd-momentum": ("SGD", dict(lr=0.05, momentum=0.9)),
    "sgd-dampening": ("SGD", dict(lr=0.05, momentum=0.8, dampening=0.3)),
    "sgd-nesterov": ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    "sgd-weight-decay": ("SGD", dict(lr=0.1, weight_decay=0.05)),
    "sgd-all": ("SGD", dict(lr=0.03, momentum=0.7, nesterov=True, weight_decay=0.02)),
    "adam": ("Adam", dict()),
    "adam-weight-decay": ("Adam", dict(lr=0.01, weight_decay=0.1)),
    "adam-transformer": ("Adam", dict(lr=0.02, betas=(0.9, 0.98), eps=1e-9)),
    "adam-varied": ("Adam", dict(lr=0.05, betas=(0.5, 0.9), eps=1e-6, weight_decay=0.01)),
    "adamw": ("AdamW", dict(lr=0.01)),
    "adamw-no-weight-decay": ("AdamW", dict(lr=0.01, weight_decay=0.0)),
    "adamw-varied": ("AdamW", dict(lr=0.003, betas=(0.8, 0.99), eps=1e-7, weight_decay=0.3)),
}
OURS = {"SGD": SGD, "Adam": Adam, "AdamW": AdamW}


def make_pair(kind: str, kwargs: dict, dtype, seed: int = 0, shapes=SHAPES):
    """The same parameters as nanotf Parameters + optimizer and torch tensors + optimizer."""
    rng = np.random.default_rng(seed)
    init = [rng.standard_normal(s).astype(dtype) for s in shapes]
    params = [Parameter(a.copy()) for a in init]
    tensors = [torch.tensor(a.copy(), requires_grad=True) for a in init]
    ours = OURS[kind](params, **kwargs)
    # foreach=False: PyTorch's per-tensor loop, the code nanotf mirrors (its CPU default too)
    theirs = getattr(torch.optim, kind)(tensors, **kwargs, foreach=False)
    return params, tensors, ours, theirs


def random_grads(rng, params, step: int) -> list[np.ndarray]:
    grads = [rng.standard_normal(p.shape).astype(p.dtype) for p in params]
    if step % 3 == 0:
        grads[ZERO_GRAD_PARAM][...] = 0
    return grads


def set_grads(params, tensors, grads) -> None:
    for p, t, g in zip(params, tensors, grads, strict=True):
        p.grad[...] = g
        t.grad = torch.tensor(g.copy())


def tolerances(dtype) -> tuple[float, float]:
    if np.dtype(dtype) == np.float32:
        return F32_RTOL, F32_ATOL_SCALE
    return F64_RTOL, F64_ATOL_SCALE


def assert_close_to_torch(params, tensors, dtype, context: str) -> None:
    rtol, atol_scale = tolerances(dtype)
    for i, (p, t) in enumerate(zip(params, tensors, strict=True)):
        ref = t.detach().numpy()
        assert p.data.dtype == ref.dtype
        np.testing.assert_allclose(
            p.data,
            ref,
            rtol=rtol,
            atol=atol_scale * terms_size(ref),
            err_msg=f"{context}, params[{i}] {p.shape}",
        )


# -- every optimizer against torch.optim ---------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_matches_torch_every_step(name, dtype):
    kind, kwargs = CONFIGS[name]
    params, tensors, ours, theirs = make_pair(kind, kwargs, dtype)
    rng = np.random.default_rng(1)
    for step in range(1, STEPS + 1):
        set_grads(params, tensors, random_grads(rng, params, step))
        ours.step()
        theirs.step()
        assert_close_to_torch(params, tensors, dtype, f"{name} step {step}")


@pytest.mark.parametrize("name", ["sgd-all", "adam-varied", "adamw-varied"])
def test_lr_set_between_steps_matches_torch(name):
    """A schedule sets ``optimizer.lr``; torch reads ``param_groups[0]['lr']``."""
    kind, kwargs = CONFIGS[name]
    params, tensors, ours, theirs = make_pair(kind, kwargs, np.float64)
    rng = np.random.default_rng(2)
    for step in range(1, STEPS + 1):
        lr = kwargs.get("lr", 1e-3) * (1 + math.sin(step))
        ours.lr = lr
        theirs.param_groups[0]["lr"] = lr
        set_grads(params, tensors, random_grads(rng, params, step))
        ours.step()
        theirs.step()
        assert_close_to_torch(params, tensors, np.float64, f"{name} step {step}")


def test_all_zero_gradient_still_updates():
    """As in torch: momentum and weight decay keep moving a parameter whose gradient is 0."""
    for opt_cls, kwargs in [
        (SGD, dict(lr=0.1, weight_decay=0.1)),
        (Adam, dict(weight_decay=0.1)),
        (AdamW, dict()),
    ]:
        p = Parameter(np.ones((3, 2), dtype=np.float32))
        opt = opt_cls([p], **kwargs)
        opt.step()
        assert np.all(p.data < 1), opt_cls.__name__
    p = Parameter(np.ones(4, dtype=np.float32))
    opt = SGD([p], lr=0.1, momentum=0.9)
    p.grad[...] = 1.0
    opt.step()
    before = p.data.copy()
    opt.zero_grad()
    opt.step()  # gradient 0, but the momentum buffer still moves θ
    np.testing.assert_allclose(before - p.data, 0.1 * 0.9, rtol=1e-6)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_updates_in_place(name):
    kind, kwargs = CONFIGS[name]
    params, _, ours, _ = make_pair(kind, kwargs, np.float32)
    data = [p.data for p in params]
    grads = [p.grad for p in params]
    rng = np.random.default_rng(3)
    ours.step()
    state = {k: list(v) for k, v in ours.state.items()}
    for _ in range(3):
        for p in params:
            p.grad[...] = rng.standard_normal(p.shape)
        ours.step()
    assert all(p.data is d for p, d in zip(params, data, strict=True))
    assert all(p.grad is g for p, g in zip(params, grads, strict=True))
    for k, arrays in ours.state.items():
        assert all(a is b for a, b in zip(arrays, state[k], strict=True)), k


@pytest.mark.parametrize("name", ["sgd-all", "sgd-dampening", "adam-varied", "adamw-varied"])
def test_step_allocates_no_parameter_sized_arrays(name):
    """A steady-state step allocates nothing the size of a parameter (NumPy reports its array
    allocations to tracemalloc)."""
    kind, kwargs = CONFIGS[name]
    shapes = [(300, 400), (120_000,), (10, 20, 30)]
    params, _, ours, _ = make_pair(kind, kwargs, np.float32, shapes=shapes)
    for p in params:
        p.grad[...] = 0.5
    ours.step()
    ours.step()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        ours.step()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    smallest = min(p.data.nbytes for p in params)
    assert peak - base < smallest / 10, f"a step allocated {peak - base} bytes"


def test_zero_grad():
    params, _, ours, _ = make_pair("Adam", {}, np.float32)
    for p in params:
        p.grad[...] = 1.0
    ours.zero_grad()
    assert all(not p.grad.any() for p in params)


# -- state_dict round trip ----------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CONFIGS))
def test_state_dict_round_trip_is_bitwise(name, tmp_path):
    """10 steps, save to .npz, new optimizer (other lr), load, 10 more == 20 uninterrupted."""
    kind, kwargs = CONFIGS[name]
    rng = np.random.default_rng(4)
    grads = [[rng.standard_normal(s).astype(np.float32) for s in SHAPES] for _ in range(20)]

    params, _, straight, _ = make_pair(kind, kwargs, np.float32)
    for gs in grads:
        for p, g in zip(params, gs, strict=True):
            p.grad[...] = g
        straight.step()

    first, _, opt, _ = make_pair(kind, kwargs, np.float32)
    for gs in grads[:10]:
        for p, g in zip(first, gs, strict=True):
            p.grad[...] = g
        opt.step()
    path = tmp_path / "optim.npz"
    np.savez(path, **opt.state_dict())
    weights = [p.data.copy() for p in first]

    resumed = [Parameter(w) for w in weights]
    opt2 = OURS[kind](resumed, lr=0.123)  # hyperparameters come back from the state dict
    with np.load(path) as saved:
        opt2.load_state_dict(dict(saved))
    assert opt2.lr == opt.lr and opt2.step_count == 10
    for gs in grads[10:]:
        for p, g in zip(resumed, gs, strict=True):
            p.grad[...] = g
        opt2.step()
    for a, b in zip(params, resumed, strict=True):
        np.testing.assert_array_equal(a.data, b.data)


def test_state_dict_is_flat_host_copy():
    params, _, opt, _ = make_pair("Adam", dict(lr=0.01), np.float32)
    for p in params:
        p.grad[...] = 1.0
    opt.step()
    sd = opt.state_dict()
    assert sd["step"] == 1 and sd["num_params"] == len(SHAPES) and sd["lr"] == 0.01
    assert {"exp_avg.0", "exp_avg_sq.3", "beta1", "beta2", "eps", "weight_decay"} <= set(sd)
    for key, value in sd.items():
        assert isinstance(value, (np.ndarray, int, float)), key
    saved = sd["exp_avg.0"].copy()
    opt.step()
    np.testing.assert_array_equal(sd["exp_avg.0"], saved)  # later steps leave it alone
    sgd = SGD(params, lr=0.1)  # no momentum: no buffers
    assert set(sgd.state_dict()) == {
        "step",
        "num_params",
        "lr",
        "momentum",
        "dampening",
        "weight_decay",
        "nesterov",
    }


def test_load_state_dict_errors():
    params, _, opt, _ = make_pair("Adam", {}, np.float32)
    sd = opt.state_dict()
    with pytest.raises(ValueError, match=r"expected a state for 3 parameters, given one for 4"):
        Adam(params[:3]).load_state_dict(sd)
    other = [Parameter(np.zeros(s[::-1] if len(s) > 1 else s, np.float32)) for s in SHAPES]
    with pytest.raises(ValueError, match=r"'exp_avg.1': expected shape \(3, 5\).*given \(5, 3\)"):
        Adam(params).load_state_dict(Adam(other).state_dict())
    bad = dict(sd)
    del bad["exp_avg_sq.2"]
    with pytest.raises(ValueError, match=r"missing \['exp_avg_sq.2'\], unexpected \[\]"):
        opt.load_state_dict(bad)
    with pytest.raises(ValueError, match=r"missing \[\], unexpected \['extra'\]"):
        opt.load_state_dict({**sd, "extra": 1})
    with pytest.raises(ValueError, match=r"expected the hyperparameters .* missing \['beta1'"):
        opt.load_state_dict(SGD(params, lr=0.1, momentum=0.9).state_dict())
    with pytest.raises(ValueError, match=r"Adam: expected decoupled_weight_decay=0.*given 1"):
        opt.load_state_dict(AdamW(params).state_dict())
    with pytest.raises(ValueError, match=r"step: expected an integer >= 0, got -1"):
        opt.load_state_dict({**sd, "step": -1})
    with pytest.raises(TypeError, match=r"step: expected an integer >= 0, got 1.5"):
        opt.load_state_dict({**sd, "step": 1.5})
    with pytest.raises(ValueError, match=r"lr: expected a real number in \[0, inf\), got -1"):
        opt.load_state_dict({**sd, "lr": -1.0})
    with pytest.raises(TypeError, match=r"expected a dict of str -> array or number, got list"):
        opt.load_state_dict([1, 2])
    with pytest.raises(ValueError, match=r"expected a key 'num_params'"):
        opt.load_state_dict({"step": 0})
    before = [a.copy() for a in opt.state["exp_avg"]]
    with pytest.raises(ValueError):  # a failed load changes nothing
        opt.load_state_dict({**sd, "exp_avg.3": np.ones(2, np.float32), "lr": 5.0})
    assert opt.lr == 1e-3
    assert all(np.array_equal(a, b) for a, b in zip(before, opt.state["exp_avg"], strict=True))


def test_step_refuses_a_resized_parameter():
    p = Parameter(np.zeros((2, 3), np.float32))
    opt = SGD([p], lr=0.1)
    p.data = np.zeros((3, 2), np.float32)
    p.grad = np.zeros((3, 2), np.float32)
    with pytest.raises(ValueError, match=r"expected data and grad of shape \(2, 3\).*got data"):
        opt.step()


# -- hyperparameter and parameter checks --------------------------------------------------------


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda ps: SGD(ps, lr=-0.1), ValueError, r"lr: expected .* \[0, inf\), got -0.1"),
        (lambda ps: SGD(ps, lr=float("nan")), ValueError, r"lr: expected .*, got nan"),
        (lambda ps: SGD(ps, lr="0.1"), TypeError, r"lr: expected a real number .*, got '0.1'"),
        (
            lambda ps: SGD(ps, lr=0.1, momentum=-0.5),
            ValueError,
            r"momentum: expected .* \[0, inf\), got -0.5",
        ),
        (
            lambda ps: SGD(ps, lr=0.1, momentum=0.9, dampening=1.5),
            ValueError,
            r"dampening: expected .* \[0, 1\], got 1.5",
        ),
        (
            lambda ps: SGD(ps, lr=0.1, weight_decay=-1e-4),
            ValueError,
            r"weight_decay: expected .* \[0, inf\), got -0.0001",
        ),
        (
            lambda ps: SGD(ps, lr=0.1, nesterov=True),
            ValueError,
            r"nesterov=True: expected momentum > 0 and dampening == 0, got momentum=0, ",
        ),
        (
            lambda ps: SGD(ps, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True),
            ValueError,
            r"expected momentum > 0 and dampening == 0, got momentum=0.9, dampening=0.1",
        ),
        (
            lambda ps: SGD(ps, lr=0.1, nesterov="yes"),
            TypeError,
            r"nesterov: expected True or False, got 'yes'",
        ),
        (lambda ps: Adam(ps, lr=-1e-3), ValueError, r"lr: expected .* \[0, inf\), got -0.001"),
        (
            lambda ps: Adam(ps, betas=(1.0, 0.999)),
            ValueError,
            r"betas\[0\]: expected a real number in \[0, 1\), got 1.0",
        ),
        (
            lambda ps: Adam(ps, betas=(0.9, -0.1)),
            ValueError,
            r"betas\[1\]: expected a real number in \[0, 1\), got -0.1",
        ),
        (
            lambda ps: Adam(ps, betas=(0.9,)),
            ValueError,
            r"betas: expected a pair \(beta1, beta2\), got \(0.9,\)",
        ),
        (lambda ps: Adam(ps, eps=-1e-8), ValueError, r"eps: expected .* \[0, inf\), got -1e-08"),
        (
            lambda ps: Adam(ps, weight_decay=-0.1),
            ValueError,
            r"weight_decay: expected .* \[0, inf\), got -0.1",
        ),
        (
            lambda ps: AdamW(ps, betas=(0.9, 1.0)),
            ValueError,
            r"betas\[1\]: expected a real number in \[0, 1\), got 1.0",
        ),
        (
            lambda ps: AdamW(ps, weight_decay=-0.01),
            ValueError,
            r"weight_decay: expected .* \[0, inf\), got -0.01",
        ),
    ],
)
def test_bad_hyperparameters(make, error, message):
    params = [Parameter(np.zeros(3, np.float32))]
    with pytest.raises(error, match=message):
        make(params)


def test_bad_parameter_lists():
    p = Parameter(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match=r"params: expected at least one Parameter, got an empty"):
        Adam([])
    with pytest.raises(TypeError, match=r"params\[1\]: expected a nanotf.nn.Parameter, got ndarr"):
        Adam([p, np.zeros(3)])
    with pytest.raises(TypeError, match=r"params\[0\]: .*got tuple \(named_parameters\(\) yields"):
        SGD([("w", p)], lr=0.1)
    with pytest.raises(TypeError, match=r"expected an iterable of Parameter .*got a single Param"):
        SGD(p, lr=0.1)
    with pytest.raises(TypeError, match=r"expected an iterable of Parameter, got a dict"):
        SGD({"w": p}, lr=0.1)
    with pytest.raises(TypeError, match=r"expected an iterable of Parameter, got int"):
        SGD(3, lr=0.1)
    with pytest.raises(ValueError, match=r"params\[1\] is the same Parameter as params\[0\]"):
        AdamW([p, p])
    opt = Adam(iter([p]))  # any iterable, e.g. a generator of parameters
    with pytest.raises(ValueError, match=r"lr: expected .* \[0, inf\), got -2"):
        opt.lr = -2
    opt.lr = 0.5
    assert opt.lr == 0.5 and isinstance(opt.lr, float)
    assert repr(opt).startswith("Adam(1 parameters, lr=0.5, beta1=0.9")


# -- hypothesis: random shapes and hyperparameters ------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(
    shapes=st.lists(st.lists(st.integers(1, 5), min_size=1, max_size=3), min_size=1, max_size=3),
    kind=st.sampled_from(["Adam", "AdamW"]),
    lr=st.floats(1e-4, 0.5),
    beta1=st.floats(0.0, 0.99),
    beta2=st.floats(0.0, 0.9999),
    eps=st.floats(1e-10, 1e-3),
    weight_decay=st.sampled_from([0.0, 1e-3, 0.1]),
    seed=st.integers(0, 2**16),
)
def test_adam_random_configs_match_torch(shapes, kind, lr, beta1, beta2, eps, weight_decay, seed):
    kwargs = dict(lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay)
    shapes = [tuple(s) for s in shapes]
    params, tensors, ours, theirs = make_pair(kind, kwargs, np.float64, seed=seed, shapes=shapes)
    rng = np.random.default_rng(seed + 1)
    for step in range(1, 6):
        grads = [rng.standard_normal(s) * 10.0 ** rng.integers(-3, 3) for s in shapes]
        set_grads(params, tensors, grads)
        ours.step()
        theirs.step()
        assert_close_to_torch(params, tensors, np.float64, f"{kind} {kwargs} step {step}")


# -- the CPU stand-in for CuPy --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sgd-all", "sgd-dampening", "adam-varied", "adamw-varied"])
def test_runs_on_device_arrays(name):
    """The strict stand-in refuses any silent NumPy conversion, as CuPy does; results agree
    bitwise with NumPy."""
    kind, kwargs = CONFIGS[name]
    host, _, host_opt, _ = make_pair(kind, kwargs, np.float32)
    dev = [Parameter(strict.asarray(p.data)) for p in host]
    dev_opt = OURS[kind](dev, **kwargs)
    rng = np.random.default_rng(5)
    for _ in range(3):
        for p, q in zip(host, dev, strict=True):
            g = rng.standard_normal(p.shape).astype(np.float32)
            p.grad[...] = g
            q.grad[...] = strict.asarray(g)
        host_norm = clip_grad_norm(host, 1.0)
        dev_norm = clip_grad_norm(dev, 1.0)
        assert host_norm == dev_norm
        host_opt.step()
        dev_opt.step()
    for p, q in zip(host, dev, strict=True):
        assert isinstance(q.data, strict.StrictArray)
        np.testing.assert_array_equal(p.data, q.data.get())
    sd = dev_opt.state_dict()
    assert all(isinstance(v, (np.ndarray, int, float)) for v in sd.values())
    dev_opt.load_state_dict(sd)
    assert all(isinstance(a, strict.StrictArray) for a in next(iter(dev_opt.state.values())))


# -- learning-rate schedules --------------------------------------------------------------------


def test_noam_lr_formula_and_peak():
    d_model, warmup, factor = 512, 400, 2.0
    steps = np.arange(1, 3001, dtype=np.float64)
    expected = factor / np.sqrt(d_model) * np.minimum(1 / np.sqrt(steps), steps / warmup**1.5)
    ours = np.array([noam_lr(int(s), d_model, warmup, factor) for s in steps])
    np.testing.assert_allclose(ours, expected, rtol=SCHED_RTOL)
    assert int(steps[np.argmax(ours)]) == warmup
    assert noam_lr(warmup, d_model, warmup, factor) == pytest.approx(
        factor / math.sqrt(d_model * warmup), rel=SCHED_RTOL
    )


@pytest.mark.parametrize(
    "warmup, total, base, min_lr",
    [(10, 300, 0.5, 0.01), (1, 200, 1e-3, 0.0), (50, 120, 3e-4, 1e-5)],
)
def test_cosine_lr_matches_torch(warmup, total, base, min_lr):
    """torch: LinearLR(1/warmup → 1 over warmup − 1 steps) then CosineAnnealingLR; torch's epoch
    e is nanotf's step e + 1 (step 0 is lr 0, which LinearLR cannot start from)."""
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=base)
    linear = torch.optim.lr_scheduler.LinearLR(
        opt, start_factor=1 / warmup, end_factor=1.0, total_iters=max(warmup - 1, 0)
    )
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total - warmup, eta_min=min_lr)
    sched = torch.optim.lr_scheduler.SequentialLR(opt, [linear, cosine], milestones=[warmup - 1])
    for epoch in range(total):
        expected = opt.param_groups[0]["lr"]
        assert cosine_lr(epoch + 1, base, warmup, total, min_lr) == pytest.approx(
            expected, rel=SCHED_RTOL, abs=1e-15
        ), epoch
        opt.step()
        sched.step()
    assert cosine_lr(0, base, warmup, total, min_lr) == 0.0
    assert cosine_lr(warmup, base, warmup, total, min_lr) == base
    assert cosine_lr(total, base, warmup, total, min_lr) == min_lr
    assert cosine_lr(total + 1000, base, warmup, total, min_lr) == min_lr


def test_cosine_lr_without_warmup():
    assert cosine_lr(0, 1.0, 0, 100) == 1.0
    assert cosine_lr(50, 1.0, 0, 100) == pytest.approx(0.5)


def test_scheduler_drives_adam_like_torch_lambda_lr():
    """Our update t uses fn(t); torch's LambdaLR (stepped after the optimizer) uses λ(t − 1)."""

    def fn(t):
        return noam_lr(t, d_model=64, warmup=5, factor=0.5)

    kwargs = dict(lr=1.0, betas=(0.9, 0.98), eps=1e-9)
    params, tensors, ours, theirs = make_pair("Adam", kwargs, np.float64)
    sched = LRScheduler(ours, fn)
    torch_sched = torch.optim.lr_scheduler.LambdaLR(theirs, lambda e: fn(e + 1))
    rng = np.random.default_rng(6)
    for step in range(1, 16):
        set_grads(params, tensors, random_grads(rng, params, step))
        assert sched.step() == fn(step) == ours.lr
        ours.step()
        theirs.step()
        torch_sched.step()
        assert_close_to_torch(params, tensors, np.float64, f"step {step}")


def test_scheduler_state_dict():
    p = Parameter(np.zeros(2, np.float32))
    opt = SGD([p], lr=1.0)
    sched = LRScheduler(opt, lambda t: cosine_lr(t, 0.1, 10, 100))
    for _ in range(37):
        sched.step()
    state = sched.state_dict()
    assert state == {"step": 37}
    opt2 = SGD([p], lr=1.0)
    sched2 = LRScheduler(opt2, lambda t: cosine_lr(t, 0.1, 10, 100))
    sched2.load_state_dict(state)
    assert sched2.step_count == 37 and opt2.lr == opt.lr == sched2.lr
    assert sched2.step() == sched.step()
    with pytest.raises(ValueError, match=r"expected keys \['step'\], given \['epoch'\]"):
        sched2.load_state_dict({"epoch": 3})
    with pytest.raises(ValueError, match=r"step: expected an integer >= 0, got -3"):
        sched2.load_state_dict({"step": -3})


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: noam_lr(0, 512, 4000), ValueError, r"step: expected an integer >= 1, got 0"),
        (lambda: noam_lr(1, 0, 4000), ValueError, r"d_model: expected an integer >= 1, got 0"),
        (lambda: noam_lr(1, 512, 0), ValueError, r"warmup: expected an integer >= 1, got 0"),
        (lambda: noam_lr(1, 512, 40.5), TypeError, r"warmup: expected an integer >= 1, got 40.5"),
        (
            lambda: noam_lr(1, 512, 4000, -1.0),
            ValueError,
            r"factor: expected .* \[0, inf\), got -1.0",
        ),
        (
            lambda: cosine_lr(-1, 0.1, 10, 100),
            ValueError,
            r"step: expected an integer >= 0, got -1",
        ),
        (
            lambda: cosine_lr(1, 0.1, -1, 100),
            ValueError,
            r"warmup: expected an integer >= 0, got -1",
        ),
        (
            lambda: cosine_lr(1, 0.1, 10, 10),
            ValueError,
            r"total_steps: expected an integer >= 11, got 10",
        ),
        (
            lambda: cosine_lr(1, -0.1, 10, 100),
            ValueError,
            r"base_lr: expected .* \[0, inf\), got -0.1",
        ),
        (
            lambda: cosine_lr(1, 0.1, 10, 100, min_lr=0.2),
            ValueError,
            r"min_lr: expected a real number in \[0, 0.1\], got 0.2",
        ),
        (
            lambda: LRScheduler(object(), noam_lr),
            TypeError,
            r"optimizer: expected a nanotf.optim.Optimizer, got object",
        ),
        (
            lambda: LRScheduler(SGD([Parameter(np.zeros(1))], lr=1), 0.1),
            TypeError,
            r"fn: expected a function step -> lr, got float",
        ),
    ],
)
def test_bad_schedule_arguments(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_scheduler_rejects_a_negative_lr():
    sched = LRScheduler(SGD([Parameter(np.zeros(1))], lr=1), lambda t: -t)
    with pytest.raises(ValueError, match=r"lr: expected .* \[0, inf\), got -1"):
        sched.step()


# -- gradient clipping --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("max_norm", [0.5, 3.0, 1e3], ids=["clips", "clips-a-little", "no-clip"])
def test_clip_grad_norm_matches_torch(max_norm, dtype):
    rng = np.random.default_rng(7)
    grads = [rng.standard_normal(s).astype(dtype) * 0.5 for s in SHAPES]
    params = [Parameter(np.zeros(s, dtype)) for s in SHAPES]
    tensors = [torch.zeros(s, dtype=torch.from_numpy(np.zeros(0, dtype)).dtype) for s in SHAPES]
    set_grads(params, tensors, grads)
    total = clip_grad_norm(params, max_norm)
    torch_total = torch.nn.utils.clip_grad_norm_(tensors, max_norm)
    rtol, _ = tolerances(dtype)
    assert isinstance(total, float)
    assert total == pytest.approx(float(torch_total), rel=rtol)
    assert (total > max_norm) == (max_norm != 1e3)
    for p, t, g in zip(params, tensors, grads, strict=True):
        np.testing.assert_allclose(p.grad, t.grad.numpy(), rtol=rtol, atol=0)
        if max_norm == 1e3:
            np.testing.assert_array_equal(p.grad, g)  # untouched
    clipped = math.sqrt(sum(float(np.sum(p.grad.astype(np.float64) ** 2)) for p in params))
    assert clipped == pytest.approx(min(total, max_norm), rel=1e-5)


def test_clip_grad_norm_large_and_extreme_gradients():
    rng = np.random.default_rng(8)
    big = Parameter(np.zeros(300_001, np.float32))  # several 65536-element chunks
    big.grad[...] = rng.standard_normal(big.shape).astype(np.float32)
    exact = float(np.sqrt(np.sum(big.grad.astype(np.float64) ** 2)))
    assert clip_grad_norm([big], 1e9) == pytest.approx(exact, rel=1e-6)
    # float32 squares overflow: that chunk is summed again in float64
    huge = Parameter(np.zeros(4, np.float32))
    huge.grad[...] = [3e19, 4e19, 0, 0]
    assert clip_grad_norm(huge, 1.0) == pytest.approx(5e19, rel=1e-6)
    np.testing.assert_allclose(huge.grad, [0.6, 0.8, 0, 0], rtol=1e-6)
    # float16 gradients are squared in float32 (300² overflows float16)
    half = Parameter(np.zeros(2, np.float16))
    half.grad[...] = [300, 400]
    assert clip_grad_norm([half], 1e6) == pytest.approx(500.0, rel=1e-6)
    assert clip_grad_norm([], 1.0) == 0.0


def test_clip_grad_norm_nonfinite():
    p = Parameter(np.zeros(3, np.float32))
    p.grad[...] = [1.0, np.inf, 2.0]
    with pytest.raises(RuntimeError, match=r"expected a finite total gradient norm, got inf"):
        clip_grad_norm([p], 1.0, error_if_nonfinite=True)
    t = torch.tensor([0.0, 0.0, 0.0])
    t.grad = torch.tensor([1.0, np.inf, 2.0])
    with np.errstate(invalid="ignore"):
        assert clip_grad_norm([p], 1.0) == float(torch.nn.utils.clip_grad_norm_([t], 1.0))
    np.testing.assert_array_equal(p.grad, t.grad.numpy())  # the same nan/0 pattern as torch


@pytest.mark.parametrize(
    "args, error, message",
    [
        ((0.0,), ValueError, r"max_norm: expected a real number in \(0, inf\), got 0.0"),
        ((-1.0,), ValueError, r"max_norm: expected a real number in \(0, inf\), got -1.0"),
        ((float("inf"),), ValueError, r"max_norm: expected .*, got inf"),
    ],
)
def test_clip_grad_norm_bad_max_norm(args, error, message):
    with pytest.raises(error, match=message):
        clip_grad_norm([Parameter(np.zeros(2, np.float32))], *args)


def test_clip_grad_norm_bad_params():
    with pytest.raises(TypeError, match=r"params\[0\]: expected a nanotf.nn.Parameter, got ndarr"):
        clip_grad_norm([np.zeros(3)], 1.0)
