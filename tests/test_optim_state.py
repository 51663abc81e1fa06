"""Optimizer and LRScheduler ``load_state_dict``: everything is checked before anything changes.

A refused load must leave the optimizer exactly as it was (lr, step, every hyperparameter, every
state buffer, bitwise), and a state array that is not a real, finite, floating-point array of the
parameter's shape (complex, string, object, bool, integer, NaN, a torch tensor, a Python list, a
device array for a host optimizer) is refused with a TypeError or ValueError naming its key.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from nanotf.nn import Parameter
from nanotf.optim import SGD, Adam, AdamW, LRScheduler, Optimizer, cosine_lr
from nanotf.testing import strict

SHAPES = [(7,), (3, 5), (2, 3, 4), (1,)]


def trained(kind: str, steps: int = 3) -> tuple[Optimizer, list[Parameter]]:
    """An optimizer with a few steps behind it, so that its buffers hold non-trivial values."""
    rng = np.random.default_rng(0)
    params = [Parameter(rng.standard_normal(s).astype(np.float32)) for s in SHAPES]
    opt: Optimizer = {
        "sgd": lambda: SGD(params, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
        "adam": lambda: Adam(params, lr=0.01, betas=(0.8, 0.95), eps=1e-7, weight_decay=0.1),
        "adamw": lambda: AdamW(params, lr=0.003, betas=(0.85, 0.99)),
    }[kind]()
    for _ in range(steps):
        for p in params:
            p.grad[...] = rng.standard_normal(p.shape).astype(np.float32)
        opt.step()
    return opt, params


def snapshot(opt: Optimizer) -> dict[str, Any]:
    """Everything an optimizer holds, bitwise: hyperparameters, step, and each buffer's bytes
    (and the buffer objects themselves: a refused load must not even swap them)."""
    return {
        "hyper": dict(opt._hyper()),
        "step": opt.step_count,
        "buffers": {
            name: [(id(a), a.dtype, a.shape, a.tobytes()) for a in arrays]
            for name, arrays in opt.state.items()
        },
    }


def bad_value(key: str, shape: tuple[int, ...]) -> dict[str, Any]:
    """One refused state array of each kind, for the buffer ``key`` of a parameter ``shape``."""
    nan = np.ones(shape, np.float32)
    nan.flat[-1] = np.nan
    inf = np.ones(shape, np.float64)
    inf.flat[0] = np.inf
    return {
        "complex": (np.ones(shape) * (1 + 2j), TypeError, r"real floating-point.*complex128"),
        "string": (np.full(shape, "a"), TypeError, r"real floating-point.*<U1"),
        "object": (np.full(shape, 1.0, dtype=object), TypeError, r"real floating-point.*object"),
        "bool": (np.ones(shape, bool), TypeError, r"real floating-point.*bool"),
        "int": (np.ones(shape, np.int64), TypeError, r"real floating-point.*int64"),
        "nan": (nan, ValueError, r"expected finite values, got 1 NaN or infinite"),
        "inf": (inf, ValueError, r"expected finite values, got 1 NaN or infinite"),
        "overflow": (np.full(shape, 1e300), ValueError, r"outside float32 range"),
        "torch": (torch.ones(shape), TypeError, r"torch\.Tensor.*\.detach\(\)\.cpu\(\)\.numpy\(\)"),
        "list": (np.ones(shape).tolist(), TypeError, r"expected a NumPy array.*Python list"),
        "number": (1.0, TypeError, r"expected a NumPy array.*scalar 1\.0"),
        "device": (strict.asarray(np.ones(shape, np.float32)), TypeError, r"NumPy array"),
        "wrong-shape": (np.ones((*shape, 2), np.float32), ValueError, r"expected shape"),
        "none": (None, TypeError, r"expected a NumPy array.*NoneType"),
    }


BAD_KINDS = list(bad_value("k", (2,)))


@pytest.mark.parametrize("kind", ["sgd", "adam", "adamw"])
@pytest.mark.parametrize("bad", BAD_KINDS)
@pytest.mark.parametrize("where", ["first", "last"])
def test_a_refused_load_changes_nothing(kind, bad, where):
    """The bad array sits in a state that also changes lr, step and β1/momentum: none of it may
    land, whether the bad array is checked first or last."""
    opt, params = trained(kind)
    donor, _ = trained(kind, steps=5)
    state = donor.state_dict()
    if kind == "sgd":
        state.update(lr=0.5, momentum=0.3, weight_decay=0.2)
    else:
        state.update(lr=0.5, beta1=0.3, beta2=0.5, eps=1e-3)
    buffers = sorted(k for k in state if "." in k)
    key = buffers[0] if where == "first" else buffers[-1]
    i = int(key.rsplit(".", 1)[1])
    value, error, message = bad_value(key, SHAPES[i])[bad]
    state[key] = value
    before = snapshot(opt)
    weights = [p.data.tobytes() for p in params]
    with pytest.raises(error, match=message) as err:
        opt.load_state_dict(state)
    assert repr(key) in str(err.value), "the error names the key"
    assert snapshot(opt) == before
    assert [p.data.tobytes() for p in params] == weights
    # and the optimizer still works, and loads a good state
    opt.step()
    opt.load_state_dict(donor.state_dict())
    assert snapshot(opt)["hyper"] == dict(donor._hyper())


@pytest.mark.parametrize(
    "change, error, message",
    [
        ({"step": -1}, ValueError, r"step: expected an integer >= 0"),
        ({"step": 2.5}, TypeError, r"step: expected an integer"),
        ({"lr": float("nan")}, ValueError, r"lr: expected a real number"),
        ({"beta1": np.array([0.9, 0.9])}, TypeError, r"betas\[0\]: expected a real number"),
        ({"beta2": 1 + 0j}, TypeError, r"betas\[1\]: expected a real number"),
        ({"eps": "1e-8"}, TypeError, r"eps: expected a real number"),
        ({"decoupled_weight_decay": np.array([0, 1])}, TypeError, r"expected True or False"),
    ],
)
def test_refused_hyperparameters_change_nothing(change, error, message):
    opt, _ = trained("adam")
    state = {**trained("adam", steps=5)[0].state_dict(), "lr": 0.7, **change}
    before = snapshot(opt)
    with pytest.raises(error, match=message):
        opt.load_state_dict(state)
    assert snapshot(opt) == before


def test_a_boolean_hyperparameter_given_an_array_is_a_type_error():
    """``nesterov`` given an array was an ambiguous-truth ValueError from NumPy."""
    opt, _ = trained("sgd")
    before = snapshot(opt)
    for value in (np.array([1, 0]), torch.tensor([1, 1]), [1], "1"):
        with pytest.raises(TypeError, match=r"nesterov: expected True or False"):
            opt.load_state_dict({**opt.state_dict(), "nesterov": value})
    assert snapshot(opt) == before


def test_accepted_states_are_converted_and_copied():
    """float64 and float16 arrays are cast to the parameter's dtype; the optimizer keeps its own
    copies (stepping does not write into the caller's arrays)."""
    opt, _ = trained("adam")
    state = opt.state_dict()
    wide = {k: (v.astype(np.float64) if isinstance(v, np.ndarray) else v) for k, v in state.items()}
    wide["exp_avg.0"] = state["exp_avg.0"].astype(np.float16)
    keep = {k: v.copy() for k, v in wide.items() if isinstance(v, np.ndarray)}
    opt.load_state_dict(wide)
    assert all(a.dtype == np.float32 for arrays in opt.state.values() for a in arrays)
    np.testing.assert_array_equal(opt.state["exp_avg_sq"][3], state["exp_avg_sq.3"])
    opt.step()
    for k, v in keep.items():
        np.testing.assert_array_equal(wide[k], v, err_msg=k)


def test_device_optimizer_takes_host_and_device_states():
    """An optimizer whose parameters live on the (stand-in) device reads a host state_dict and
    a state of device arrays alike; the buffers end up on the device."""
    host, _ = trained("adam")
    params = [Parameter(strict.asarray(np.zeros(s, np.float32))) for s in SHAPES]
    dev = Adam(params)
    dev.load_state_dict(host.state_dict())
    on_device = {
        k: strict.asarray(v) if isinstance(v, np.ndarray) else v
        for k, v in host.state_dict().items()
    }
    dev.load_state_dict(on_device)
    for a, b in zip(dev.state["exp_avg"], host.state["exp_avg"], strict=True):
        assert isinstance(a, strict.StrictArray)
        np.testing.assert_array_equal(a.get(), b)
    bad = dict(on_device)
    bad["exp_avg.2"] = bad["exp_avg.2"] * np.nan
    with pytest.raises(ValueError, match=r"'exp_avg.2': expected finite values"):
        dev.load_state_dict(bad)


# -- LRScheduler ----------------------------------------------------------------------------------


def scheduled() -> tuple[LRScheduler, Optimizer]:
    opt, _ = trained("adam")
    sched = LRScheduler(opt, lambda t: cosine_lr(t, 0.1, 10, 100))
    for _ in range(17):
        sched.step()
    return sched, opt


@pytest.mark.parametrize(
    "state, error, message",
    [
        ([("step", 3)], TypeError, r"expected a dict \{'step': int\}, got list"),
        ("step", TypeError, r"expected a dict"),
        ({"step": 3, "epoch": 1}, ValueError, r"keys \['step'\], given \['epoch', 'step'\]"),
        ({"step": -1}, ValueError, r"step: expected an integer >= 0, got -1"),
        ({"step": 1.5}, TypeError, r"step: expected an integer"),
        ({"step": True}, TypeError, r"step: expected an integer"),
        ({"step": "3"}, TypeError, r"step: expected an integer"),
        ({"step": np.array([3, 4])}, TypeError, r"step: expected an integer"),
        ({"step": 101}, ValueError, r"fn\(101\): expected a real number in \[0, inf\), got -1"),
    ],
)
def test_scheduler_refused_load_changes_nothing(state, error, message):
    sched, opt = scheduled()
    sched.fn = lambda t: cosine_lr(t, 0.1, 10, 100) if t <= 100 else -1.0  # a bad lr past 100
    before, count = snapshot(opt), sched.step_count
    with pytest.raises(error, match=message):
        sched.load_state_dict(state)
    assert sched.step_count == count and snapshot(opt) == before


def test_scheduler_load_sets_the_lr_of_its_step():
    sched, opt = scheduled()
    sched.load_state_dict({"step": np.int64(40)})
    assert sched.step_count == 40 and opt.lr == cosine_lr(40, 0.1, 10, 100)
