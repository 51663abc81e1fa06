"""Fused kernels beside the ops: the switch, the dispatch, the CuPy kernels against their
reference ops, and the two new reference ops they serve (bias + GELU, the masked softmax).

* CPU (runs everywhere): ``NANOTF_FUSED`` is parsed, ``set_enabled`` checks its argument,
  ``reference_only`` restores the switch; NumPy and the strict stand-in dispatch to Numba's
  kernels exactly where Numba is installed (tests/functional/test_fused_numba.py tests them); a
  fake kernel registered for the stand-in's module is called when the switch is on, its results
  become the op's outputs and cache, and it is not called when the switch is off; the CuPy
  kernel sources render for float32 and float64.
* GPU (``gpu``, skipped without CuPy): each fused kernel against the reference op on CuPy
  arrays, at the tolerances of the op's torch checks (``RTOL``: float64 1e-10, float32 1e-5,
  normwise relative through ``rel_error``, with the op tests' floors for results that cancel by
  design), on the op tests' shapes and on odd sizes (1, 3 and 1000 rows of width 1, 7, 768 and
  1025), and a fused forward's cache fed to the reference backward and the other way round.
"""

from __future__ import annotations

import ctypes
import importlib.util
import math
import os
import re
import shutil
import subprocess
import sys
from string import Template

import numpy as np
import pytest
import torch
import torch.nn.functional as tF

from nanotf.functional import (
    activations,
    attention_backward,
    attention_forward,
    bias_gelu_backward,
    bias_gelu_forward,
    bias_relu_backward,
    bias_relu_forward,
    fused,
    fused_enabled,
    gelu_backward,
    gelu_forward,
    layernorm_backward,
    layernorm_forward,
    masked_softmax_backward,
    masked_softmax_forward,
    reference_only,
    set_fused_enabled,
    softmax_backward,
    softmax_forward,
)
from nanotf.functional.activations import GeluCache
from nanotf.functional.attention import AttentionCache
from nanotf.functional.bias_gelu import BiasGeluCache
from nanotf.functional.fused import cupy_kernels
from nanotf.functional.layernorm import LayerNormCache
from nanotf.functional.softmax import MaskedSoftmaxCache, SoftmaxCache
from nanotf.gradcheck import gradcheck
from nanotf.nn import Parameter
from nanotf.optim import Adam, AdamW
from nanotf.testing import strict as strict_mod
from tests.conftest import (
    RTOL,
    Backend,
    assert_all_close,
    assert_dtypes,
    assert_gradcheck,
    assert_same_on_strict,
    make_backend,
    normal,
    rel_error,
    terms_size,
    torch_reference,
)
from tests.functional import test_attention, test_layernorm

S = strict_mod.asarray
GELU = ["none", "tanh"]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> dict:
    """A private kernel registry and switch (on) for one test; the real ones come back after."""
    kernels = dict(fused._KERNELS)
    monkeypatch.setattr(fused, "_KERNELS", kernels)
    monkeypatch.setattr(fused, "_LAZY", dict(fused._LAZY))
    monkeypatch.setattr(fused, "_state", {"enabled": True})
    return kernels


class Spy:
    """A fake kernel: records each call and returns ``result``."""

    def __init__(self, result=None):
        self.result, self.calls = result, []

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        return self.result


def fake(registry: dict, op: str, result=None) -> Spy:
    spy = Spy(result)
    fused.register(op, "strict", spy)
    assert registry[(op, "strict")] is spy
    return spy


def rand(shape, dtype=np.float64, seed=0, spread=1.0):
    return (spread * np.random.default_rng(seed).standard_normal(shape)).astype(dtype)


# -- the switch -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "want"),
    [(None, True), ("", True), ("1", True), ("true", True), (" On ", True), ("YES", True),
     ("0", False), ("false", False), ("Off", False), ("no", False)],
)
def test_env_var_is_parsed(value, want):
    assert fused._parse_env(value) is want


@pytest.mark.parametrize("value", ["2", "maybe", "disabled"])
def test_env_var_with_another_value_is_refused(value):
    with pytest.raises(ValueError, match=rf"NANOTF_FUSED must be 1 or 0 .*got '{value}'"):
        fused._parse_env(value)


def _enabled_in_fresh_process(value: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != fused.ENV_VAR}
    if value is not None:
        env[fused.ENV_VAR] = value
    code = "import nanotf.functional as F; print(F.fused_enabled())"
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_env_var_is_read_at_import():
    off, on = _enabled_in_fresh_process("0"), _enabled_in_fresh_process(None)
    assert (off.returncode, off.stdout.strip()) == (0, "False"), off.stderr
    assert (on.returncode, on.stdout.strip()) == (0, "True"), on.stderr
    bad = _enabled_in_fresh_process("maybe")
    assert bad.returncode != 0 and "NANOTF_FUSED must be 1 or 0" in bad.stderr


def test_set_enabled_switches(registry):
    set_fused_enabled(False)
    assert fused_enabled() is False and fused.enabled() is False
    set_fused_enabled(True)
    assert fused_enabled() is True


@pytest.mark.parametrize("flag", [1, 0, "0", "False", None, np.bool_(True)])
def test_set_enabled_takes_only_a_bool(registry, flag):
    with pytest.raises(TypeError, match=r"set_enabled expects True or False, got"):
        set_fused_enabled(flag)
    assert fused_enabled() is True  # unchanged


@pytest.mark.parametrize("before", [True, False])
def test_reference_only_restores_the_switch(registry, before):
    set_fused_enabled(before)
    with reference_only():
        assert fused_enabled() is False
    assert fused_enabled() is before
    with pytest.raises(RuntimeError, match="inside"), reference_only():
        raise RuntimeError("inside")
    assert fused_enabled() is before


def test_register_checks_its_arguments(registry):
    with pytest.raises(ValueError, match=r"unknown op 'gelu'"):
        fused.register("gelu", "strict", Spy())
    with pytest.raises(TypeError, match=r"module must be an array module's name, got None"):
        fused.register("gelu_forward", None, Spy())
    with pytest.raises(TypeError, match=r"kernel must be callable, got int"):
        fused.register("gelu_forward", "strict", 3)


# -- dispatch ---------------------------------------------------------------------------------


def test_array_module_names():
    assert fused.array_module_name(np.zeros(2)) == "numpy"
    assert fused.array_module_name(np.float32(1.0)) == "numpy"
    assert fused.array_module_name(S(np.zeros(2))) == "strict"
    fake_cupy = type("ndarray", (), {"__module__": "cupy._core.core"})()
    assert fused.array_module_name(fake_cupy) == "cupy"


HAS_NUMBA = importlib.util.find_spec("numba") is not None


@pytest.mark.parametrize("op", sorted(fused.OPS))
def test_numpy_and_the_stand_in_dispatch_to_numba_where_it_is_installed(registry, op):
    """With Numba, NumPy and the stand-in get Numba's kernels (registered on first sight);
    without it, nothing is registered for them and every op runs its reference."""
    for key in [key for key in registry if key[1] in ("numpy", "strict")]:
        del registry[key]
    fused._LAZY.update(numpy=False, strict=False)
    got = [fused.kernel_for(op, x) for x in (np.zeros(3, np.float32), S(np.zeros(3, np.float32)))]
    if not HAS_NUMBA:
        assert got == [None, None]
        assert not [key for key in fused._KERNELS if key[1] != "cupy"]
        return
    from nanotf.functional.fused import numba_kernels

    assert got == [numba_kernels.KERNELS[op], numba_kernels.STRICT_KERNELS[op]]


def test_cupy_kernels_register_lazily_without_importing_cupy(registry):
    """A CuPy-typed array registers every CuPy kernel on first sight (told by its type's module,
    so CuPy itself is not imported: it is not installed on the CPU machines)."""
    for key in [key for key in registry if key[1] == "cupy"]:
        del registry[key]
    fused._LAZY["cupy"] = False
    had_cupy = "cupy" in sys.modules
    fake_cupy = type("ndarray", (), {"__module__": "cupy._core.core"})()
    for op in fused.OPS:  # None for the ops CuPy has no kernel of (they run their reference)
        assert fused.kernel_for(op, fake_cupy) is cupy_kernels.KERNELS.get(op)
    assert fused._LAZY["cupy"] is True
    assert ("cupy" in sys.modules) == had_cupy
    with reference_only():
        assert fused.kernel_for("layernorm_forward", fake_cupy) is None


# ops with a Numba kernel only: on CuPy they run their reference op
NO_CUPY_KERNEL = {"bias_gelu_inference", "dropout_forward", "dropout_forward_counter",
                  "dropout_forward_pcg64", "cross_entropy_forward", "cross_entropy_backward",
                  "adam_update_many"}


def test_every_op_has_a_cupy_kernel():
    assert set(cupy_kernels.KERNELS) == set(fused.OPS) - NO_CUPY_KERNEL


def test_fake_gelu_kernels(registry):
    x, dout = S(rand((2, 3))), S(rand((2, 3), seed=1))
    out, saved, dx = S(np.full((2, 3), 7.0)), S(np.full(6, 3.0)), S(np.full((2, 3), 5.0))
    fwd, bwd = fake(registry, "gelu_forward", (out, saved)), fake(registry, "gelu_backward", dx)
    for approximate in GELU:
        got, cache = gelu_forward(x, approximate)
        assert got is out and type(cache) is GeluCache
        assert cache.approximate == approximate and cache.x is x and cache.saved is saved
        assert fwd.calls[-1][0][0] is x and fwd.calls[-1][0][1] == approximate
        assert gelu_backward(dout, cache) is dx
        args = bwd.calls[-1][0]
        assert args[0] is dout and args[1] is x and args[2] is saved and args[3] == approximate
    with reference_only():
        got, cache = gelu_forward(x, "tanh")
        gelu_backward(dout, cache)
    assert len(fwd.calls) == len(bwd.calls) == 2
    with reference_only():  # NumPy's reference (NumPy has fused kernels where Numba is)
        want, _ = gelu_forward(x.get(), "tanh")
    np.testing.assert_array_equal(got.get(), want)


def test_fake_bias_gelu_kernel(registry):
    x, b, dout = S(rand((2, 3))), S(rand(3, seed=1)), S(rand((2, 3), seed=2))
    out, z, saved = S(np.full((2, 3), 7.0)), S(np.full((2, 3), 1.0)), S(np.full(6, 3.0))
    dz = S(rand((2, 3), seed=3))
    fwd = fake(registry, "bias_gelu_forward", (out, z, saved))
    bwd = fake(registry, "gelu_backward", dz)
    got, cache = bias_gelu_forward(x, b, "tanh")
    assert got is out and type(cache) is BiasGeluCache and type(cache.gelu) is GeluCache
    assert cache.gelu.approximate == "tanh" and cache.gelu.x is z and cache.gelu.saved is saved
    assert fwd.calls[0][0][0] is x and fwd.calls[0][0][1] is b
    dx, dbias = bias_gelu_backward(dout, cache)
    assert dx is dz and bwd.calls[0][0][1] is z
    np.testing.assert_array_equal(dbias.get(), dz.get().sum(axis=0))
    with reference_only():
        got, cache = bias_gelu_forward(x, b, "none")
        bias_gelu_backward(dout, cache)
    assert len(fwd.calls) == len(bwd.calls) == 1
    with reference_only():  # NumPy's reference (NumPy has fused kernels where Numba is)
        want = gelu_forward(x.get() + b.get())[0]
    np.testing.assert_array_equal(got.get(), want)


def test_fake_layernorm_kernels(registry):
    x, gamma, beta = S(rand((2, 4))), S(rand(4, seed=1)), S(rand(4, seed=2))
    dout = S(rand((2, 4), seed=3))
    out, xhat, rstd = S(np.full((2, 4), 7.0)), S(np.full((2, 4), 2.0)), S(np.full((2, 1), 0.5))
    grads = (S(np.ones((2, 4))), S(np.ones(4)), S(np.zeros(4)))
    fwd = fake(registry, "layernorm_forward", (out, xhat, rstd))
    bwd = fake(registry, "layernorm_backward", grads)
    got, cache = layernorm_forward(x, gamma, beta, eps=1e-12)
    assert got is out and type(cache) is LayerNormCache
    assert cache.xhat is xhat and cache.rstd is rstd and cache.gamma is gamma
    args = fwd.calls[0][0]
    assert args[0] is x and args[1] is gamma and args[2] is beta and args[3] == 1e-12
    assert layernorm_backward(dout, cache) is grads
    args = bwd.calls[0][0]
    assert args[0] is dout and args[1] is xhat and args[2] is rstd and args[3] is gamma
    with reference_only():
        got, cache = layernorm_forward(x, gamma, beta)
        layernorm_backward(dout, cache)
    assert len(fwd.calls) == len(bwd.calls) == 1
    with reference_only():  # NumPy's reference (NumPy has fused kernels where Numba is)
        want = layernorm_forward(x.get(), gamma.get(), beta.get())[0]
    np.testing.assert_array_equal(got.get(), want)


def test_fake_softmax_kernels_only_for_the_last_axis(registry):
    x, dout = S(rand((3, 5))), S(rand((3, 5), seed=1))
    y, dx = S(np.full((3, 5), 0.2)), S(np.full((3, 5), 9.0))
    fwd, bwd = fake(registry, "softmax_forward", y), fake(registry, "softmax_backward", dx)
    for axis in (-1, 1):
        got, cache = softmax_forward(x, axis=axis)
        assert got is y and cache == SoftmaxCache(y, axis) and fwd.calls[-1][0][0] is x
        assert softmax_backward(dout, cache) is dx and bwd.calls[-1][0][1] is y
    got, cache = softmax_forward(x, axis=0)  # not the last axis: the reference
    softmax_backward(dout, cache)
    assert len(fwd.calls) == len(bwd.calls) == 2
    np.testing.assert_array_equal(got.get(), softmax_forward(x.get(), axis=0)[0])
    with reference_only():
        softmax_backward(dout, softmax_forward(x)[1])
    assert len(fwd.calls) == len(bwd.calls) == 2


def test_fake_masked_softmax_kernel(registry):
    x, mask = S(rand((2, 3, 4))), S(np.array([True, False, True, True]))
    scores, probs = S(np.full((2, 3, 4), -1.0)), S(np.full((2, 3, 4), 0.25))
    spy = fake(registry, "masked_softmax_forward", (scores, probs))
    got, cache = masked_softmax_forward(x, mask, scale=0.5)
    assert got is probs and type(cache) is MaskedSoftmaxCache
    assert cache.scores is scores and cache.probs is probs and cache.scale == 0.5
    args = spy.calls[0][0]
    assert args[0] is x and args[1] is mask and args[2] == 0.5 and type(args[2]) is float
    with reference_only():
        got, _ = masked_softmax_forward(x, mask, scale=0.5)
    assert len(spy.calls) == 1
    with reference_only():  # NumPy's reference (NumPy has fused kernels where Numba is)
        want = masked_softmax_forward(x.get(), mask.get(), 0.5)[0]
    np.testing.assert_array_equal(got.get(), want)


def test_fake_kernels_inside_attention(registry):
    """attention_forward hands its masked softmax to the kernel, attention_backward its softmax
    backward; the rest (matmuls, dropout, scale) is the reference around them."""
    b, h, t, d = 2, 2, 3, 4
    q, k, v = (rand((b, h, t, d), seed=s) for s in range(3))
    dout = rand((b, h, t, d), seed=3)
    mask = np.arange(t)[None, None, None, :] < np.array([3, 2])[:, None, None, None]
    with reference_only():
        probs_ref, sm = masked_softmax_forward(q @ k.swapaxes(-1, -2), mask, 0.5)
    scores, probs = S(sm.scores), S(probs_ref)
    ds = rand((b, h, t, t), seed=4)
    fwd = fake(registry, "masked_softmax_forward", (scores, probs))
    bwd = fake(registry, "softmax_backward", S(ds.copy()))
    out, cache = attention_forward(S(q), S(k), S(v), mask=S(mask), scale=0.5)
    assert type(cache) is AttentionCache and cache.scores is scores and cache.probs is probs
    args = fwd.calls[0][0]
    np.testing.assert_array_equal(args[0].get(), q @ k.swapaxes(-1, -2))
    np.testing.assert_array_equal(args[1].get(), mask)
    assert args[2] == 0.5
    np.testing.assert_array_equal(out.get(), probs_ref @ v)
    dq, dk, dv = attention_backward(S(dout), cache)
    assert bwd.calls[0][0][1] is probs
    np.testing.assert_array_equal(dq.get(), (ds * 0.5) @ k)
    np.testing.assert_array_equal(dk.get(), (ds * 0.5).swapaxes(-1, -2) @ q)
    with reference_only():
        attention_backward(S(dout), attention_forward(S(q), S(k), S(v), mask=S(mask))[1])
    assert len(fwd.calls) == len(bwd.calls) == 1


@pytest.mark.parametrize(
    ("opt", "kwargs", "want"),
    [
        (Adam, dict(lr=0.01, betas=(0.9, 0.98), eps=1e-9), dict(l2=0.0, decay=None)),
        (Adam, dict(lr=0.05, betas=(0.3, 0.9), weight_decay=0.1), dict(l2=0.1, decay=None)),
        (AdamW, dict(lr=0.01, weight_decay=0.2), dict(l2=0.0, decay=1.0 - 0.01 * 0.2)),
        (AdamW, dict(lr=0.01, weight_decay=0.0), dict(l2=0.0, decay=None)),
    ],
    ids=["adam", "adam-l2", "adamw", "adamw-no-decay"],
)
def test_fake_adam_kernel(registry, opt, kwargs, want):
    """The kernel gets θ, g, m, v themselves and the constants of the update; the reference does
    not run as well (the fake does nothing, so nothing changes)."""
    p = Parameter(S(rand((3, 4), np.float32)))
    p.grad[...] = S(rand((3, 4), np.float32, seed=1))
    optimizer = opt([p], **kwargs)
    fused.kernel_for("adam_update", p.data)  # registers the stand-in's kernels, if not yet
    registry.pop(("adam_update_many", "strict"), None)  # the kernel of one parameter, alone
    spy = fake(registry, "adam_update")
    before = p.data.get().copy()
    for _ in range(2):
        optimizer.step()
    np.testing.assert_array_equal(p.data.get(), before)
    assert len(spy.calls) == 2
    args, kw = spy.calls[-1]
    m, v = optimizer.state["exp_avg"][0], optimizer.state["exp_avg_sq"][0]
    assert args[0] is p.data and args[1] is p.grad and args[2] is m and args[3] is v
    b1, b2 = kwargs["betas"] if "betas" in kwargs else (0.9, 0.999)
    eps = kwargs.get("eps", 1e-8)
    assert kw == dict(
        **want,
        w=float(np.float32(1.0 - b1)),
        beta2=b2,
        step_size=kwargs["lr"] / (1.0 - b1**2),  # the second step
        bias_correction2_sqrt=math.sqrt(1.0 - b2**2),
        eps=eps,
    )
    with reference_only():
        optimizer.step()
    assert len(spy.calls) == 2 and not np.array_equal(p.data.get(), before)


def test_fake_adam_many_kernel(registry):
    """Where ``adam_update_many`` has a kernel, one call a step gets every parameter's θ, g, m, v
    in order, the constants ``adam_update`` gets and the optimizer's cache, the same dict at
    every step; ``adam_update`` is not called. Where it answers False (the arrays do not suit
    it), every parameter goes to ``adam_update``, one by one."""
    params = [Parameter(S(rand(s, np.float32, seed=i))) for i, s in enumerate([(3, 4), (5,)])]
    optimizer = AdamW(params, lr=0.01, weight_decay=0.2)
    many, one = fake(registry, "adam_update_many", True), fake(registry, "adam_update")
    for _ in range(2):
        optimizer.step()
    assert len(many.calls) == 2 and one.calls == []
    (thetas, grads, ms, vs), kw = many.calls[-1]
    assert all(a is p.data for a, p in zip(thetas, params, strict=True))
    assert all(a is p.grad for a, p in zip(grads, params, strict=True))
    assert all(a is b for a, b in zip(ms, optimizer.state["exp_avg"], strict=True))
    assert all(a is b for a, b in zip(vs, optimizer.state["exp_avg_sq"], strict=True))
    assert kw.pop("cache") is many.calls[0][1]["cache"] is optimizer._fused_cache
    assert kw == optimizer._kernel_constants(np.dtype(np.float32))
    assert kw["decay"] == 1.0 - 0.01 * 0.2 and kw["step_size"] == 0.01 / (1.0 - 0.9**2)
    many.result = False  # the kernel says the arrays do not suit it: one by one, then
    optimizer.step()
    assert len(many.calls) == 3 and len(one.calls) == 2


def test_cpu_runs_agree_with_the_switch_on_and_off():
    """The stand-in equals NumPy bit for bit with the switch on and off; on and off agree
    within the op tests' tolerance (bit for bit where Numba is not installed: no kernel runs)."""
    x, gamma, beta = rand((3, 7), np.float32), rand(7, np.float32, 1), rand(7, np.float32, 2)
    dout = rand((3, 7), np.float32, 3)

    def run(bk: Backend):
        a = bk.asarray
        out, cache = layernorm_forward(a(x), a(gamma), a(beta))
        ln = (out, *layernorm_backward(a(dout), cache))
        out, cache = bias_gelu_forward(a(x), a(beta), "tanh")
        bg = (out, *bias_gelu_backward(a(dout), cache))
        out, cache = masked_softmax_forward(a(x), a(x > 0), 0.3)
        return bk.host(*ln, *bg, out, masked_softmax_backward(a(dout), cache))

    on = run(Backend("numpy", np))
    with reference_only():
        off = run(Backend("numpy", np))
        assert_same_on_strict(run)
    # the dx of LayerNorm and of the softmax cancel by design: their floors (test_layernorm,
    # test_softmax); the rest relative to their own size
    floors = [0.0, test_layernorm.floors(x, gamma, dout)[1], 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
              terms_size(off[-2], dout, 0.3)]
    for i, (a, b, floor) in enumerate(zip(on, off, floors, strict=True)):
        if HAS_NUMBA:
            assert rel_error(a, b, floor) <= RTOL[np.dtype(np.float32)], i
        else:
            np.testing.assert_array_equal(a, b)
    assert_same_on_strict(run)


# -- the CuPy kernel sources, rendered here -----------------------------------------------------


DTYPES = ["float32", "float64"]
_NUMBER = re.compile(r"(?<![\w.])\d+\.\d*(?:[eE][-+]?\d+)?f?")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(cupy_kernels.SOURCES))
def test_raw_kernel_sources_render(name, dtype):
    src = cupy_kernels.render(cupy_kernels.SOURCES[name], dtype)
    c_type = {"float32": "float", "float64": "double"}[dtype]
    assert "$" not in src
    assert f'extern "C" __global__ void nanotf_{name}_{dtype}(' in src
    assert src.count("{") == src.count("}") and src.count("(") == src.count(")")
    assert f"const {c_type}* __restrict__" in src
    _check_precision(src, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(cupy_kernels.ELEMENTWISE))
def test_elementwise_sources_render(name, dtype):
    in_params, out_params, op = (cupy_kernels.render(s, dtype) for s in
                                 cupy_kernels.ELEMENTWISE[name])
    for params in (in_params, out_params):
        for param in params.split(","):
            kind, _ = param.split()
            assert kind in (dtype, "int32"), params
    assert "$" not in in_params + out_params + op
    assert op.count("{") == op.count("}") and op.count("(") == op.count(")")
    outputs = [p.split()[1] for p in out_params.split(",")]
    assert all(re.search(rf"\b{o} = ", op) for o in outputs), op
    _check_precision(op, dtype)


def _check_precision(src: str, dtype: str) -> None:
    """float32 code has float literals and float math functions only (no silent double)."""
    numbers = _NUMBER.findall(src)
    if dtype == "float32":
        assert all(n.endswith("f") for n in numbers), numbers
        for fn in ("exp", "erf", "tanh", "sqrt"):
            assert not re.search(rf"\b{fn}\(", src), fn
        assert "double" not in src
    else:
        assert not any(n.endswith("f") for n in numbers), numbers
        assert not re.search(r"\b(expf|erff|tanhf|sqrtf)\(", src)


def test_literals_parse_back_to_the_rounded_constant():
    for value in (0.5, -0.5, math.sqrt(0.5), 1.0 / math.sqrt(2.0 * math.pi), 3.0 * 0.044715):
        lit = cupy_kernels.literal(value, "float32")
        assert lit.endswith("f") and np.float32(lit[:-1]) == np.float32(value)
        assert float(lit[:-1]) == float(np.float32(value))
        assert float(cupy_kernels.literal(value, "float64")) == value


def test_render_refuses_other_dtypes_and_missing_names():
    with pytest.raises(TypeError, match=r"support float32 and float64, got float16"):
        cupy_kernels.render("$T x;", "float16")
    with pytest.raises(KeyError, match="UNKNOWN"):
        cupy_kernels.render("$T x = $UNKNOWN;", "float32")


def test_kernel_constants_are_the_ops_constants():
    for name in ("_SQRT_HALF", "_INV_SQRT_2PI", "_SQRT_2_OVER_PI", "_GELU_C"):
        assert getattr(cupy_kernels, name) == getattr(activations, name), name


def test_row_block_sizes():
    assert [cupy_kernels._block(n) for n in (1, 7, 32, 33, 768, 1025)] == [32, 32, 32, 64, 256,
                                                                             256]


# -- bias + GELU, the reference op ------------------------------------------------------------

BIAS_SHAPES = [(1,), (1, 1, 4), (2, 3, 5), (4, 7)]


def bias_data(shape, dtype, seed=0):
    """Inputs around the GELU's bend plus a tail (as test_activations' ``wide``), a bias, dout."""
    g = np.random.default_rng(seed)
    x = 3.0 * g.standard_normal(shape)
    if x.size >= 4:  # a lone tail value would leave only a gradient of ~1e-12 to check
        x.reshape(-1)[1:3] = [-7.5, 9.0]
    bias = g.standard_normal(shape[-1])
    return x.astype(dtype), bias.astype(dtype), normal(g, shape, dtype)


def run_bias_gelu(bk: Backend, x, bias, dout, approximate):
    """out, dx, dbias, and the inference forward's out (``need_backward=False``)."""
    out, cache = bias_gelu_forward(bk.asarray(x), bk.asarray(bias), approximate)
    inference, none = bias_gelu_forward(bk.asarray(x), bk.asarray(bias), approximate,
                                        need_backward=False)
    assert none is None
    return bk.host(out, *bias_gelu_backward(bk.asarray(dout), cache), inference)


@pytest.mark.parametrize("approximate", GELU)
@pytest.mark.parametrize("shape", BIAS_SHAPES)
def test_bias_gelu_gradcheck(fd_backend: Backend, shape, approximate):
    x, bias, _ = bias_data(shape, np.float64)
    errors = gradcheck(
        bias_gelu_forward,
        bias_gelu_backward,
        {"x": fd_backend.asarray(x), "bias": fd_backend.asarray(bias)},
        forward_kwargs={"approximate": approximate},
    )
    assert set(errors) == {"x", "bias"}
    assert_gradcheck(errors, f"bias_gelu_{approximate}")


@pytest.mark.parametrize("approximate", GELU)
@pytest.mark.parametrize("shape", BIAS_SHAPES)
def test_bias_gelu_matches_torch(xp_params: Backend, dtype, shape, approximate):
    x, bias, dout = bias_data(shape, dtype)
    got = run_bias_gelu(xp_params, x, bias, dout, approximate)
    out, grads = torch_reference(
        lambda x, b: tF.gelu(x + b, approximate=approximate), {"x": x, "b": bias}, dout
    )
    names = [f"bias_gelu_{approximate}.{n}" for n in ("out", "dx", "dbias", "inference")]
    assert_all_close(got, (out, grads["x"], grads["b"], out), dtype, names)
    assert_dtypes(got, dtype, names)


def test_bias_gelu_strict_equals_numpy():
    x, bias, dout = bias_data((2, 3, 5), np.float32)
    for approximate in GELU:
        assert_same_on_strict(lambda bk, a=approximate: run_bias_gelu(bk, x, bias, dout, a))


def test_bias_gelu_does_not_modify_its_inputs():
    x, bias, dout = bias_data((3, 4), np.float64)
    before = (x.copy(), bias.copy(), dout.copy())
    for approximate in GELU:
        out, cache = bias_gelu_forward(x, bias, approximate)
        bias_gelu_backward(dout, cache)
        bias_gelu_forward(x, bias, approximate, need_backward=False)
    for a, b in zip((x, bias, dout), before, strict=True):
        np.testing.assert_array_equal(a, b)


def test_bias_gelu_bad_input():
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"bias must have shape \(3,\) to match x \(2, 3\), got "
                                         r"\(2, 3\)"):
        bias_gelu_forward(x, np.zeros((2, 3), np.float32))
    with pytest.raises(TypeError, match=r"share one floating dtype, got x: float32, bias: float64"):
        bias_gelu_forward(x, np.zeros(3))
    with pytest.raises(TypeError, match=r"bias_gelu input must be a floating-point array.*int64"):
        bias_gelu_forward(np.zeros((2, 3), np.int64), np.zeros(3))
    with pytest.raises(ValueError, match=r"'none' or 'tanh', got 'erf'"):
        bias_gelu_forward(x, np.zeros(3, np.float32), "erf")
    with pytest.raises(ValueError, match=r"must not be empty along axis -1"):
        bias_gelu_forward(np.zeros((2, 0), np.float32), np.zeros(0, np.float32))
    out, cache = bias_gelu_forward(x, np.zeros(3, np.float32))
    with pytest.raises(ValueError, match=r"bias_gelu_backward: dout must have the shape"):
        bias_gelu_backward(np.zeros((3, 2), np.float32), cache)


# -- the masked, scaled softmax, the reference op ----------------------------------------------

# (shape, mask shape or None): rows of one entry, a key-padding-like mask, a dense mask
MASKED_CASES = [((1,), None), ((2, 3, 5), None), ((1, 1, 1), (1,)), ((2, 3, 5), (2, 1, 5)),
                ((2, 2, 3, 4), (2, 2, 3, 4)), ((4, 7), (7,))]


def masked_data(shape, mask_shape, dtype, seed=0):
    """x, dout and a mask that leaves every row at least one entry (its last)."""
    g = np.random.default_rng(seed)
    x, dout = (3.0 * g.standard_normal(shape)).astype(dtype), normal(g, shape, dtype)
    mask = None
    if mask_shape is not None:
        mask = g.random(mask_shape) < 0.6
        mask[..., -1] = True
    return x, dout, mask


def torch_masked_softmax(x, mask, scale):
    """An independent reference: torch's masked_fill with -inf, then its softmax."""
    s = x * scale
    if mask is not None:
        s = s.masked_fill(~torch.from_numpy(np.broadcast_to(mask, tuple(x.shape)).copy()),
                          -math.inf)
    return torch.softmax(s, dim=-1)


@pytest.mark.parametrize("scale", [1.0, 0.35])
@pytest.mark.parametrize(("shape", "mask_shape"), MASKED_CASES)
def test_masked_softmax_gradcheck(fd_backend: Backend, shape, mask_shape, scale):
    x, _, mask = masked_data(shape, mask_shape, np.float64)
    errors = gradcheck(
        masked_softmax_forward,
        masked_softmax_backward,
        {"x": fd_backend.asarray(x)},
        forward_kwargs={"mask": fd_backend.asarray(mask), "scale": scale},
    )
    assert_gradcheck(errors, "masked_softmax")


@pytest.mark.parametrize("scale", [1.0, 0.35])
@pytest.mark.parametrize(("shape", "mask_shape"), MASKED_CASES)
def test_masked_softmax_matches_torch(xp_params: Backend, dtype, shape, mask_shape, scale):
    x, dout, mask = masked_data(shape, mask_shape, dtype)
    a = xp_params.asarray
    probs, cache = masked_softmax_forward(a(x), a(mask), scale)
    got = xp_params.host(probs, masked_softmax_backward(a(dout), cache))
    out, grads = torch_reference(lambda x: torch_masked_softmax(x, mask, scale), {"x": x}, dout)
    y = out.astype(np.float64)
    # dx cancels by design where one probability is near 1 (test_softmax's floors), times scale
    floor = terms_size(y, dout, scale)
    assert_all_close(got, (out, grads["x"]), dtype, ["masked_softmax.out", "masked_softmax.dx"],
                     [0.0, floor])
    assert_dtypes(got, dtype, ["masked_softmax.out", "masked_softmax.dx"])
    scores = xp_params.host(cache.scores)[0]
    want = x * np.asarray(scale, dtype)
    if mask is not None:
        want = np.where(mask, want, np.finfo(dtype).min)
    np.testing.assert_array_equal(scores, want)


def test_masked_softmax_fully_masked_row_is_zeros_with_no_gradient(xp_params: Backend, dtype):
    x, dout, _ = masked_data((3, 4), None, dtype)
    mask = np.array([[True, False, True, True], [False] * 4, [True] * 4])
    a = xp_params.asarray
    probs, cache = masked_softmax_forward(a(x), a(mask), 0.5)
    probs, dx = xp_params.host(probs, masked_softmax_backward(a(dout), cache))
    np.testing.assert_array_equal(probs[1], 0.0)
    np.testing.assert_array_equal(dx[1], 0.0)
    np.testing.assert_array_equal(probs[0, 1], 0.0)
    assert np.isfinite(probs).all() and np.isfinite(dx).all()
    ref, _ = masked_softmax_forward(x[[0, 2]], mask[[0, 2]], 0.5)
    np.testing.assert_array_equal(probs[[0, 2]], ref)


def test_masked_softmax_is_attentions_softmax():
    """attention_forward's probabilities and scores are masked_softmax_forward's."""
    q, k, v, _, mask, causal, _ = test_attention.data((2, 3, 4, 4, 5, 5), "padding+causal",
                                                      np.float64)
    _, cache = attention_forward(q, k, v, mask=mask, causal=causal)
    allowed = mask & np.tril(np.ones((4, 4), bool))
    probs, sm = masked_softmax_forward(q @ k.swapaxes(-1, -2), allowed, 1.0 / math.sqrt(5))
    np.testing.assert_array_equal(cache.probs, probs)
    np.testing.assert_array_equal(cache.scores, sm.scores)


def test_masked_softmax_bad_input():
    x = np.zeros((2, 3))
    with pytest.raises(TypeError, match=r"masked_softmax mask must be a boolean array.*got int64"):
        masked_softmax_forward(x, np.ones(3, np.int64))
    with pytest.raises(ValueError, match=r"mask must broadcast to the input's shape \(2, 3\), "
                                         r"got shape \(2,\)"):
        masked_softmax_forward(x, np.ones(2, bool))
    with pytest.raises(ValueError, match=r"got shape \(1, 2, 3\)"):
        masked_softmax_forward(x, np.ones((1, 2, 3), bool))
    with pytest.raises(TypeError, match=r"masked_softmax scale"):
        masked_softmax_forward(x, None, "0.5")
    with pytest.raises(TypeError, match=r"masked_softmax input must be a floating-point array"):
        masked_softmax_forward(np.zeros((2, 3), np.int32))
    with pytest.raises(TypeError, match=r"inputs must live on one device"):
        masked_softmax_forward(S(x), np.ones(3, bool))


# -- the CUDA sources without a GPU: compiled by nvcc, and compiled and run on the host ----------
#
# Where no GPU is lent, two checks still reach the kernels' code. ``nvcc -ptx`` (where the CUDA
# toolkit is installed) compiles every source as CuPy would hand it over (an elementwise operation
# wrapped in a kernel with its inputs by value and outputs by reference, as CuPy's wrapper does),
# and shows that float32 code holds no float64 instruction. And g++ compiles the same sources as
# C++ with a small shim: each CUDA thread of a block is an OS thread, ``__syncthreads`` a barrier,
# ``__shared__`` a static array, blocks run one after the other. The real wrappers of
# ``cupy_kernels`` then launch them with NumPy standing in for CuPy, so the comparisons below run
# on the host ("host") as on the GPU ("cupy"): the kernels' arithmetic, their row reductions
# across threads and the wrappers' arguments are checked on every machine; only CuPy's own API
# and the device's math library are left to the GPU run.

_C_TYPES = {"float32": "float", "float64": "double", "int32": "int"}
_ARRAY_INPUTS = {"adam_update": {"g"}}  # the other inputs of these kernels are scalars
_SHIM = r"""
#include <math.h>
#include <barrier>
#include <thread>
#include <vector>
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
struct Dim { unsigned x = 0, y = 0, z = 0; };
static thread_local Dim threadIdx, blockIdx;
static Dim blockDim;
static std::barrier<>* block_barrier;
static inline void __syncthreads() { block_barrier->arrive_and_wait(); }
"""
_HOST_LAUNCH = """
extern "C" void launch_$f(int grid_x, int grid_y, int block_x, $params) {
    blockDim.x = block_x;
    std::barrier<> bar(block_x);
    block_barrier = &bar;
    std::vector<std::thread> threads;
    for (int t = 0; t < block_x; ++t)
        threads.emplace_back([&, t_ = t] {
            threadIdx.x = t_;
            for (int by_ = 0; by_ < grid_y; ++by_)
                for (int bx_ = 0; bx_ < grid_x; ++bx_) {
                    blockIdx.x = bx_; blockIdx.y = by_;
                    $f($args);
                    bar.arrive_and_wait();  // the block is done before the next one starts
                }
        });
    for (auto& th : threads) th.join();
}
"""


def _elementwise_params(name: str, dtype: str) -> tuple[list, list]:
    """([(C type, name, is_array)] of the inputs, [(C type, name)] of the outputs)."""
    in_params, out_params, _ = (cupy_kernels.render(s, dtype)
                                for s in cupy_kernels.ELEMENTWISE[name])
    arrays = _ARRAY_INPUTS.get(name)
    ins = [(_C_TYPES[t], n, arrays is None or n in arrays)
           for t, n in (p.split() for p in in_params.split(","))]
    outs = [(_C_TYPES[t], n) for t, n in (p.split() for p in out_params.split(","))]
    return ins, outs


def cuda_file(dtype: str, host: bool) -> str:
    """Every kernel of ``dtype`` in one file (each row kernel's helpers renamed apart); ``host``:
    with the shim and a ``launch_<kernel>`` function per row kernel, for g++."""
    parts = [_SHIM] if host else []
    for name, template in cupy_kernels.SOURCES.items():
        src = cupy_kernels.render(template, dtype)
        for helper in ("block_sum", "block_max"):
            src = src.replace(helper, f"{helper}_{name}")
        parts.append(src)
        if host:
            m = re.search(r"void (nanotf_\w+)\((.*?)\) \{", src, re.S)
            params = " ".join(m.group(2).split())
            args = ", ".join(p.split()[-1].lstrip("*") for p in params.split(","))
            parts.append(Template(_HOST_LAUNCH).substitute(f=m.group(1), params=params, args=args))
    for name in cupy_kernels.ELEMENTWISE:
        op = cupy_kernels.render(cupy_kernels.ELEMENTWISE[name][2], dtype)
        ins, outs = _elementwise_params(name, dtype)
        params = [f"const {t}* _raw_{n}" if is_array else f"const {t} {n}"
                  for t, n, is_array in ins]
        params += [f"{t}* _raw_{n}" for t, n in outs]
        body = [f"const {t} {n} = _raw_{n}[i];" for t, n, is_array in ins if is_array]
        body += [f"{t}& {n} = _raw_{n}[i];" for t, n in outs]
        loop = ("for (long long i = 0; i < size; ++i)" if host else
                "const long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;"
                " if (i < size)")
        signature = f"nanotf_{name}_{dtype}({', '.join(params)}, const long long size)"
        parts.append(f'extern "C" __global__ void {signature} {{\n  {loop} {{\n'
                     f"    {' '.join(body)}\n    {op}\n  }}\n}}")
    return "\n".join(parts)


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="no CUDA compiler (nvcc) here")
@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_sources_compile_with_nvcc(tmp_path, dtype):
    src = tmp_path / f"kernels_{dtype}.cu"
    src.write_text(cuda_file(dtype, host=False))
    ptx = tmp_path / f"kernels_{dtype}.ptx"
    run = subprocess.run(["nvcc", "-ptx", "-arch=sm_80", *cupy_kernels._OPTIONS, "-o", str(ptx),
                          str(src)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "warning" not in run.stderr, run.stderr
    code = ptx.read_text()
    names = [f"nanotf_{n}_{dtype}" for n in [*cupy_kernels.SOURCES, *cupy_kernels.ELEMENTWISE]]
    assert all(f".entry {n}(" in code for n in names)
    if dtype == "float32":
        assert not re.search(r"\.f64\b", code), "float32 kernels compute in float64 somewhere"


@pytest.fixture(scope="module")
def host_kernel_libs(tmp_path_factory) -> dict:
    """The kernels of both dtypes compiled by g++ for the host (skipped without g++)."""
    if shutil.which("g++") is None:
        pytest.skip("no C++ compiler (g++) to run the CUDA kernels on the host")
    libs = {}
    for dtype in DTYPES:
        folder = tmp_path_factory.mktemp(f"host_kernels_{dtype}")
        src, lib = folder / "kernels.cpp", folder / "kernels.so"
        src.write_text(cuda_file(dtype, host=True))
        run = subprocess.run(["g++", "-std=c++20", "-O1", "-ffp-contract=off", "-fPIC",
                              "-shared", "-pthread", "-o", str(lib), str(src)],
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        libs[dtype] = ctypes.CDLL(str(lib))
    return libs


def _c_arg(a):
    if isinstance(a, np.ndarray):
        assert a.flags.c_contiguous, "a kernel was handed a non-contiguous array"
        return ctypes.c_void_p(a.ctypes.data)
    kinds = {np.float32: ctypes.c_float, np.float64: ctypes.c_double, np.int64: ctypes.c_longlong,
             np.int32: ctypes.c_int}
    assert type(a) in kinds, f"a kernel was handed a {type(a).__name__}, not a NumPy scalar"
    return kinds[type(a)](a)


class HostRawKernel:
    """Stands in for ``cupy.RawKernel``: ``kernel(grid, block, args)`` runs it on the host."""

    def __init__(self, lib, name: str, dtype: str):
        self.fn = getattr(lib, f"launch_nanotf_{name}_{dtype}")

    def __call__(self, grid, block, args):
        assert len(block) == 1 and block[0] in (32, 64, 128, 256), block
        grid_y = grid[1] if len(grid) > 1 else 1
        self.fn(ctypes.c_int(grid[0]), ctypes.c_int(grid_y), ctypes.c_int(block[0]),
                *map(_c_arg, args))


class HostElementwiseKernel:
    """Stands in for ``cupy.ElementwiseKernel``: broadcasts the array inputs, makes the outputs
    (or writes the given ones), runs the operation on the host."""

    def __init__(self, lib, name: str, dtype: str):
        self.fn = getattr(lib, f"nanotf_{name}_{dtype}")
        self.dtype = np.dtype(dtype)
        self.ins, self.outs = _elementwise_params(name, dtype)

    def __call__(self, *args):
        ins, outs = list(args[: len(self.ins)]), list(args[len(self.ins):])
        assert len(ins) == len(self.ins) and len(outs) in (0, len(self.outs))
        for a, (_, name, is_array) in zip(ins, self.ins, strict=True):
            assert isinstance(a, np.ndarray) == is_array, f"{name}: {type(a).__name__}"
            assert not is_array or a.dtype == self.dtype, f"{name}: {a.dtype}"
        shape = np.broadcast_shapes(*(a.shape for a in ins + outs if isinstance(a, np.ndarray)))
        ins = [np.ascontiguousarray(np.broadcast_to(a, shape)) if isinstance(a, np.ndarray) else a
               for a in ins]
        outs = outs or [np.empty(shape, self.dtype) for _ in self.outs]
        work = [np.ascontiguousarray(o) for o in outs]
        self.fn(*map(_c_arg, ins), *map(_c_arg, work), ctypes.c_longlong(math.prod(shape)))
        for o, w in zip(outs, work, strict=True):
            if o is not w:
                o[...] = w
        return tuple(outs) if len(outs) > 1 else outs[0]


@pytest.fixture(params=["host", pytest.param("cupy", marks=pytest.mark.gpu)])
def kernel_backend(request, monkeypatch) -> Backend:
    """Where the fused kernels run: on the GPU through CuPy ("cupy"), or compiled for the host
    with NumPy standing in for CuPy ("host", registered for NumPy arrays for this test only)."""
    if request.param == "cupy":
        bk = make_backend("cupy")
        assert fused.kernel_for("layernorm_forward", bk.asarray(np.zeros(1))) is not None
        return bk
    libs = request.getfixturevalue("host_kernel_libs")
    monkeypatch.setattr(cupy_kernels, "_cupy", lambda: np)
    monkeypatch.setattr(cupy_kernels, "_raw",
                        lambda name, dtype: HostRawKernel(libs[dtype], name, dtype))
    monkeypatch.setattr(cupy_kernels, "_elementwise",
                        lambda name, dtype: HostElementwiseKernel(libs[dtype], name, dtype))
    monkeypatch.setattr(fused, "_KERNELS", dict(fused._KERNELS))
    monkeypatch.setattr(fused, "_LAZY", dict(fused._LAZY))  # a lazy load here stays here
    monkeypatch.setattr(fused, "_state", {"enabled": True})
    for op, kernel in cupy_kernels.KERNELS.items():
        fused.register(op, "numpy", kernel)
    return Backend("numpy", np)


def gpu_only(bk: Backend, *shapes) -> None:
    """1000 rows: on the GPU only (the host runs one OS thread per CUDA thread, far too slowly)."""
    if bk.name != "cupy" and any(s[0] >= 1000 for s in shapes if len(s) == 2):
        pytest.skip("1000 rows: the host emulation would take minutes; the GPU run has them")


# -- every fused kernel against its reference op, on the host and on the GPU --------------------

WIDTHS = (1, 7, 768, 1025)
# rows of 1 and 3 at widths 1, 7, 768 and 1025; 1000 rows on the GPU only (``gpu`` marker)
ODD = [(r, c) for r in (1, 3) for c in WIDTHS] + [
    pytest.param((1000, c), marks=pytest.mark.gpu) for c in WIDTHS
]


def fused_and_reference(run):
    """``run()`` with the fused kernels, then inside ``reference_only()`` (host copies)."""
    got = run()
    with reference_only():
        want = run()
    return got, want


def assert_matches_reference(got, want, dtype, names, floors=None) -> None:
    floors = [0.0] * len(names) if floors is None else floors
    for g, w, name, floor in zip(got, want, names, floors, strict=True):
        assert g.dtype == w.dtype == np.dtype(dtype), f"{name}: {g.dtype} vs {w.dtype}"
        err = rel_error(g, w, floor)
        assert err <= RTOL[np.dtype(dtype)], f"{name}: fused vs reference {err:.3g} ({dtype})"


def test_the_kernels_run(kernel_backend, monkeypatch):
    """Each op takes the fused path on this backend (every registered kernel is called once),
    and none inside ``reference_only()``."""
    bk = kernel_backend
    module = "cupy" if bk.name == "cupy" else "numpy"
    calls: dict[str, int] = {}

    def counted(op, kernel):
        def run(*args, **kwargs):
            calls[op] = calls.get(op, 0) + 1
            return kernel(*args, **kwargs)
        return run

    monkeypatch.setattr(fused, "_KERNELS", dict(fused._KERNELS))
    monkeypatch.setattr(fused, "_LAZY", dict(fused._LAZY))
    for op in cupy_kernels.KERNELS:
        fused.register(op, module, counted(op, fused._KERNELS[(op, module)]))
    a = bk.asarray
    fused.kernel_for("adam_update", a(np.zeros(1, np.float32)))  # Numba's registered, if not yet
    fused._KERNELS.pop(("adam_update_many", module), None)  # Adam: the kernel of one parameter
    x, gamma, beta, dout = (a(t) for t in test_layernorm.data((3, 8), np.float32))

    def run_all():
        gelu_backward(dout, gelu_forward(x)[1])
        bias_gelu_forward(x, beta)
        bias_relu_backward(dout, bias_relu_forward(x, beta)[1])
        layernorm_backward(dout, layernorm_forward(x, gamma, beta)[1])
        softmax_backward(dout, softmax_forward(x)[1])
        masked_softmax_forward(x, None, 0.5)
        p = Parameter(a(np.ones(4, np.float32)))
        p.grad[...] = a(np.ones(4, np.float32))
        Adam([p]).step()

    run_all()
    assert calls == dict.fromkeys(cupy_kernels.KERNELS, 1)
    with reference_only():
        run_all()
    assert calls == dict.fromkeys(cupy_kernels.KERNELS, 1)


@pytest.mark.parametrize("approximate", GELU)
@pytest.mark.parametrize("shape", BIAS_SHAPES + ODD)
def test_fused_gelu_and_bias_gelu_match_reference(kernel_backend, dtype, shape, approximate):
    bk = kernel_backend
    gpu_only(bk, shape)
    x, bias, dout = bias_data(shape, dtype)

    def run():
        out, cache = gelu_forward(bk.asarray(x), approximate)
        dx = gelu_backward(bk.asarray(dout), cache)
        bout, bcache = bias_gelu_forward(bk.asarray(x), bk.asarray(bias), approximate)
        return bk.host(out, cache.saved, dx, bout, bcache.gelu.x, bcache.gelu.saved,
                       *bias_gelu_backward(bk.asarray(dout), bcache))

    got, want = fused_and_reference(run)
    names = ["gelu.out", "gelu.saved", "gelu.dx", "bias_gelu.out", "bias_gelu.z",
             "bias_gelu.saved", "bias_gelu.dx", "bias_gelu.dbias"]
    assert_matches_reference(got, want, dtype, names)
    assert got[1].shape == (math.prod(shape),) and got[4].shape == shape


@pytest.mark.parametrize("approximate", GELU)
def test_fused_gelu_caches_cross_over(kernel_backend, dtype, approximate):
    """A fused forward's cache feeds the reference backward, and the other way round."""
    bk = kernel_backend
    x, bias, dout = bias_data((16, 768), dtype)
    a = bk.asarray
    _, fused_cache = bias_gelu_forward(a(x), a(bias), approximate)
    with reference_only():
        _, ref_cache = bias_gelu_forward(a(x), a(bias), approximate)
        want = bk.host(*bias_gelu_backward(a(dout), ref_cache))
        ref_on_fused = bk.host(*bias_gelu_backward(a(dout), fused_cache))
    fused_on_ref = bk.host(*bias_gelu_backward(a(dout), ref_cache))
    assert type(fused_cache) is type(ref_cache) and type(fused_cache.gelu) is GeluCache
    for got in (ref_on_fused, fused_on_ref):
        assert_matches_reference(got, want, dtype, ["bias_gelu.dx", "bias_gelu.dbias"])


@pytest.mark.parametrize("eps", test_layernorm.EPS)
@pytest.mark.parametrize("shape", test_layernorm.SHAPES + [(1, 1, 1)] + ODD)
def test_fused_layernorm_matches_reference(kernel_backend, dtype, shape, eps):
    bk = kernel_backend
    gpu_only(bk, shape)
    x, gamma, beta, dout = test_layernorm.data(shape, dtype, offset=0.5)
    a = bk.asarray

    def run():
        out, cache = layernorm_forward(a(x), a(gamma), a(beta), eps=eps)
        return bk.host(out, cache.xhat, cache.rstd, *layernorm_backward(a(dout), cache))

    got, want = fused_and_reference(run)
    _, dx_floor, _, _ = test_layernorm.floors(x, gamma, dout, eps)
    names = ["layernorm.out", "layernorm.xhat", "layernorm.rstd", "layernorm.dx",
             "layernorm.dgamma", "layernorm.dbeta"]
    # x̂ is 0 for a width of 1 and of size 1 elsewhere; dx cancels by design (test_layernorm)
    assert_matches_reference(got, want, dtype, names, [0.0, 1.0, 0.0, dx_floor, 0.0, 0.0])
    assert got[2].shape == (*shape[:-1], 1)


def test_fused_layernorm_caches_cross_over(kernel_backend, dtype):
    bk = kernel_backend
    x, gamma, beta, dout = test_layernorm.data((3, 5, 768), dtype)
    a = bk.asarray
    _, fused_cache = layernorm_forward(a(x), a(gamma), a(beta))
    with reference_only():
        _, ref_cache = layernorm_forward(a(x), a(gamma), a(beta))
        want = bk.host(*layernorm_backward(a(dout), ref_cache))
        ref_on_fused = bk.host(*layernorm_backward(a(dout), fused_cache))
    fused_on_ref = bk.host(*layernorm_backward(a(dout), ref_cache))
    assert type(fused_cache) is LayerNormCache
    floors = [test_layernorm.floors(x, gamma, dout)[1], 0.0, 0.0]
    for got in (ref_on_fused, fused_on_ref):
        assert_matches_reference(got, want, dtype, ["dx", "dgamma", "dbeta"], floors)


def test_fused_layernorm_takes_non_contiguous_arrays(kernel_backend, dtype):
    bk = kernel_backend
    x, gamma, beta, dout = test_layernorm.data((40, 7), dtype)
    a = bk.asarray

    def run():
        xt, dt = a(x.T.copy()).T, a(dout.T.copy()).T  # (7, 40) transposed: Fortran order
        out, cache = layernorm_forward(xt, a(gamma), a(beta))
        return bk.host(out, *layernorm_backward(dt, cache))

    got, want = fused_and_reference(run)
    floors = [0.0, test_layernorm.floors(x, gamma, dout)[1], 0.0, 0.0]
    assert_matches_reference(got, want, dtype, ["out", "dx", "dgamma", "dbeta"], floors)


SOFTMAX_SHAPES = [(1,), (1, 1, 1), (1, 1, 7), (2, 3, 5), (3, 1, 2, 9)] + ODD


@pytest.mark.parametrize("shape", SOFTMAX_SHAPES)
def test_fused_softmax_matches_reference(kernel_backend, dtype, shape):
    bk = kernel_backend
    gpu_only(bk, shape)
    g = np.random.default_rng(0)
    x, dout = (3.0 * g.standard_normal(shape)).astype(dtype), normal(g, shape, dtype)

    def run():
        y, cache = softmax_forward(bk.asarray(x), axis=-1)
        return bk.host(y, softmax_backward(bk.asarray(dout), cache))

    got, want = fused_and_reference(run)
    assert_matches_reference(got, want, dtype, ["softmax.out", "softmax.dx"],
                             [0.0, terms_size(want[0], dout)])


@pytest.mark.parametrize("scale", [1.0, 0.125])
@pytest.mark.parametrize("mask_kind", ["none", "padding", "dense", "fully-masked-rows"])
@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 1, 1, 1), (2, 1, 3, 1025), (4, 2, 3, 1),
                                   pytest.param((1, 2, 1000, 768), marks=pytest.mark.gpu)])
def test_fused_masked_softmax_matches_reference(kernel_backend, dtype, shape, mask_kind, scale):
    bk = kernel_backend
    gpu_only(bk, (shape[2], shape[3]))
    g = np.random.default_rng(0)
    x, dout = (3.0 * g.standard_normal(shape)).astype(dtype), normal(g, shape, dtype)
    b, h, t_q, t_k = shape
    mask = None
    if mask_kind == "padding":
        mask = (np.arange(t_k)[None, :] < g.integers(1, t_k + 1, size=b)[:, None])[:, None, None]
    elif mask_kind == "dense":
        mask = g.random((b, 1, t_q, t_k)) < 0.6
        mask[..., 0] = True
    elif mask_kind == "fully-masked-rows":
        mask = g.random((b, h, t_q, t_k)) < 0.5
        mask[:, :, 0] = False  # the first query of every head sees nothing

    def run():
        probs, cache = masked_softmax_forward(bk.asarray(x), bk.asarray(mask), scale)
        dx = masked_softmax_backward(bk.asarray(dout), cache)
        return bk.host(cache.scores, probs, dx)

    got, want = fused_and_reference(run)
    np.testing.assert_array_equal(got[0], want[0])  # x · scale and the minimum: exact
    assert_matches_reference(got[1:], want[1:], dtype, ["masked_softmax.out", "masked_softmax.dx"],
                             [0.0, terms_size(want[1], dout, scale)])
    if mask_kind == "fully-masked-rows":
        np.testing.assert_array_equal(got[1][:, :, 0], 0.0)
        np.testing.assert_array_equal(got[2][:, :, 0], 0.0)


@pytest.mark.parametrize(("size", "mask_kind"), test_attention.CASES)
def test_fused_attention_matches_reference(kernel_backend, dtype, size, mask_kind):
    bk = kernel_backend
    q, k, v, dout, mask, causal, dense = test_attention.data(size, mask_kind, dtype)

    def run():
        out, cache = attention_forward(bk.asarray(q), bk.asarray(k), bk.asarray(v),
                                       mask=bk.asarray(mask), causal=causal)
        grads: dict = {}
        back = attention_backward(bk.asarray(dout), cache, grads)
        return bk.host(out, *back, cache.probs, grads["scores"])

    got, want = fused_and_reference(run)
    floors = test_attention.floors(q, k, v, dout, dense)
    dp = dout.astype(np.float64) @ v.astype(np.float64).swapaxes(-1, -2)
    assert_matches_reference(got, want, dtype, [*test_attention.NAMES, "probs", "dscores"],
                             [*floors, 0.0, terms_size(want[4], dp)])


@pytest.mark.parametrize(
    ("opt", "kwargs"),
    [(Adam, dict()), (Adam, dict(lr=0.01, weight_decay=0.1)),
     (Adam, dict(lr=0.02, betas=(0.3, 0.9), eps=1e-6)), (AdamW, dict(lr=0.01)),
     (AdamW, dict(lr=0.003, betas=(0.8, 0.99), eps=1e-7, weight_decay=0.3))],
    ids=["adam", "adam-weight-decay", "adam-beta1-below-half", "adamw", "adamw-varied"],
)
def test_fused_adam_matches_reference(kernel_backend, dtype, opt, kwargs):
    """Five steps, fused and reference, from the same start with the same gradients; compared
    as test_optim compares with torch (relative, plus a floor tied to max |θ|)."""
    bk = kernel_backend
    shapes = [(7,), (3, 5), (100, 768), (1,)]
    rng = np.random.default_rng(0)
    init = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(5)]

    def run():
        params = [Parameter(bk.asarray(a)) for a in init]
        optimizer = opt(params, **kwargs)
        for step in grads:
            for p, g in zip(params, step, strict=True):
                p.grad[...] = bk.asarray(g)
            optimizer.step()
        state = optimizer.state
        return [bk.host(p.data, m, v) for p, m, v in
                zip(params, state["exp_avg"], state["exp_avg_sq"], strict=True)]

    got, want = fused_and_reference(run)
    rtol, atol = (1e-6, 1e-7) if np.dtype(dtype) == np.float32 else (1e-12, 1e-13)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        for name, a, b in zip(("param", "exp_avg", "exp_avg_sq"), g, w, strict=True):
            assert a.dtype == b.dtype == np.dtype(dtype)
            np.testing.assert_allclose(a, b, rtol=rtol, atol=atol * terms_size(b),
                                       err_msg=f"params[{i}] {name}")
