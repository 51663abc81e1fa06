"""The Numba kernels of the CPU (``nanotf.functional.fused.numba_kernels``) against their
reference ops, on NumPy arrays and on the strict stand-in.

* Registration: with Numba installed, the first NumPy (or stand-in) array an op sees registers
  every kernel of ``OPS`` for its module; a kernel registered by hand is kept.
* Each kernel against its reference op (run inside ``reference_only()``) at the tolerances of the
  op's torch checks (``RTOL``: float64 1e-10, float32 1e-5, normwise relative through
  ``rel_error``, with the op tests' floors for results that cancel by design), on the op tests'
  shapes and on odd sizes (1, 3 and 1000 rows of width 1, 7, 768 and 1025); a fused forward's
  cache fed to the reference backward and the other way round; inputs that are not C-contiguous.
* Determinism: two runs are bitwise equal, and so are runs on one thread and on two.
* The switch off: no kernel is called and every result is the reference's, bit for bit; the
  stand-in's results equal NumPy's bit for bit with the kernels on.

Skipped, with the reason, where Numba is not installed (it is the optional ``fast`` extra).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest

numba = pytest.importorskip("numba", reason="Numba is not installed (the optional 'fast' extra)")

from nanotf.functional import (  # noqa: E402  (after the skip)
    attention_backward,
    attention_forward,
    bias_gelu_backward,
    bias_gelu_forward,
    fused,
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
from nanotf.functional.fused import _threads, numba_kernels  # noqa: E402
from nanotf.nn import Parameter  # noqa: E402
from nanotf.optim import Adam, AdamW  # noqa: E402
from nanotf.testing import strict as strict_mod  # noqa: E402
from tests.conftest import (  # noqa: E402
    NUMPY,
    RTOL,
    STRICT,
    Backend,
    assert_same_on_strict,
    normal,
    rel_error,
    terms_size,
)
from tests.functional import test_attention, test_layernorm  # noqa: E402
from tests.functional.test_fused import BIAS_SHAPES, bias_data  # noqa: E402
from tests.functional.test_fused_numba_dropout import run_dropout  # noqa: E402

GELU = ["none", "tanh"]
WIDTHS = (1, 7, 768, 1025)
ODD = [(r, c) for r in (1, 3, 1000) for c in WIDTHS]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(autouse=True)
def kernels_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """The switch on, and Numba's kernels registered for NumPy and the stand-in (whatever an
    earlier test left in the registry), for each test; the real registry comes back after."""
    monkeypatch.setattr(fused, "_state", {"enabled": True})
    kernels = dict(fused._KERNELS)
    for op in fused.OPS:
        kernels[(op, "numpy")] = numba_kernels.KERNELS[op]
        kernels[(op, "strict")] = numba_kernels.STRICT_KERNELS[op]
    monkeypatch.setattr(fused, "_KERNELS", kernels)
    monkeypatch.setattr(fused, "_LAZY", {**fused._LAZY, "numpy": True, "strict": True})


def fused_and_reference(run):
    """``run()`` with the Numba kernels, then inside ``reference_only()``."""
    got = run()
    with reference_only():
        want = run()
    return got, want


def assert_matches_reference(got, want, dtype, names, floors=None) -> None:
    floors = [0.0] * len(names) if floors is None else floors
    for g, w, name, floor in zip(got, want, names, floors, strict=True):
        assert g.dtype == w.dtype == np.dtype(dtype), f"{name}: {g.dtype} vs {w.dtype}"
        assert g.shape == w.shape, f"{name}: {g.shape} vs {w.shape}"
        err = rel_error(g, w, floor)
        assert err <= RTOL[np.dtype(dtype)], f"{name}: fused vs reference {err:.3g} ({dtype})"


# -- registration -----------------------------------------------------------------------------


def test_numpy_and_the_stand_in_register_lazily(monkeypatch):
    """The first NumPy (stand-in) array registers every Numba kernel for "numpy" ("strict");
    a kernel registered by hand before stays; inside ``reference_only()`` nothing dispatches."""
    kernels = {key: k for key, k in fused._KERNELS.items() if key[1] not in ("numpy", "strict")}
    monkeypatch.setattr(fused, "_KERNELS", kernels)
    monkeypatch.setattr(fused, "_LAZY", {**fused._LAZY, "numpy": False, "strict": False})

    def mine(*args):
        return None

    fused.register("softmax_forward", "numpy", mine)
    x, s = np.zeros(3, np.float32), strict_mod.asarray(np.zeros(3, np.float32))
    for op in fused.OPS:
        want = mine if op == "softmax_forward" else numba_kernels.KERNELS[op]
        assert fused.kernel_for(op, x) is want
        assert fused.kernel_for(op, s) is numba_kernels.STRICT_KERNELS[op]
    assert fused._LAZY["numpy"] is True and fused._LAZY["strict"] is True
    with reference_only():
        assert fused.kernel_for("layernorm_forward", x) is None


def test_every_op_has_a_numba_kernel():
    assert set(numba_kernels.KERNELS) == set(numba_kernels.STRICT_KERNELS) == set(fused.OPS)


def test_the_switch_off_in_a_fresh_process_imports_no_numba():
    code = ("import sys, numpy as np, nanotf.functional as F; "
            "F.gelu_forward(np.ones(3)); print('numba' in sys.modules)")
    env = {**os.environ, fused.ENV_VAR: "0"}
    run = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert (run.returncode, run.stdout.strip()) == (0, "False"), run.stderr


def test_kernels_refuse_other_dtypes():
    x = np.zeros((2, 3), np.float16)
    with pytest.raises(TypeError, match=r"float32 or float64 inputs of one dtype, got \['float16'"):
        numba_kernels.gelu_forward(x, "none")
    with pytest.raises(TypeError, match=r"got \['float32', 'float64'\]"):
        numba_kernels.softmax_backward(np.zeros(3, np.float32), np.zeros(3))


def test_strict_kernels_refuse_numpy_arrays():
    with pytest.raises(strict_mod.DeviceConversionError, match="mixed with device arrays"):
        numba_kernels.STRICT_KERNELS["softmax_backward"](
            strict_mod.asarray(np.zeros(3)), np.zeros(3))


# -- GELU and bias + GELU ---------------------------------------------------------------------


def run_gelu(bk: Backend, x, bias, dout, approximate):
    a = bk.asarray
    out, cache = gelu_forward(a(x), approximate)
    dx = gelu_backward(a(dout), cache)
    bout, bcache = bias_gelu_forward(a(x), a(bias), approximate)
    iout, icache = bias_gelu_forward(a(x), a(bias), approximate, need_backward=False)
    assert icache is None
    return bk.host(out, cache.saved, dx, bout, bcache.gelu.x, bcache.gelu.saved,
                   *bias_gelu_backward(a(dout), bcache), iout)


GELU_NAMES = ["gelu.out", "gelu.saved", "gelu.dx", "bias_gelu.out", "bias_gelu.z",
              "bias_gelu.saved", "bias_gelu.dx", "bias_gelu.dbias", "bias_gelu.inference"]


@pytest.mark.parametrize("approximate", GELU)
@pytest.mark.parametrize("shape", BIAS_SHAPES + ODD)
def test_gelu_and_bias_gelu_match_reference(dtype, shape, approximate):
    x, bias, dout = bias_data(shape, dtype)
    got, want = fused_and_reference(lambda: run_gelu(NUMPY, x, bias, dout, approximate))
    assert_matches_reference(got, want, dtype, GELU_NAMES)
    assert got[1].shape == (x.size,) and got[5].shape == (x.size,)
    # the inference kernel is the training kernel's arithmetic with two stores left out
    np.testing.assert_array_equal(got[8], got[3])


@pytest.mark.parametrize("approximate", GELU)
def test_bias_gelu_inference_takes_non_contiguous_input_and_keeps_nothing(dtype, approximate):
    """``need_backward=False`` on Fortran-order and reversed-stride inputs, kernel against
    reference; its ``None`` cache is refused by the backward with a message that says why."""
    x, bias, dout = bias_data((40, 9), dtype)

    def run():
        return [bias_gelu_forward(xs, bias, approximate, need_backward=False)[0]
                for xs in (x.T.copy().T, x[:, ::-1], x[::-2])]

    got, want = fused_and_reference(run)
    assert_matches_reference(got, want, dtype, ["fortran", "reversed", "strided rows"])
    with pytest.raises(TypeError, match=r"needs the BiasGeluCache of bias_gelu_forward, got None "
                                        r"\(a forward with need_backward=False keeps none\)"):
        bias_gelu_backward(dout, None)
    with pytest.raises(TypeError, match="need_backward must be True or False, got int"):
        bias_gelu_forward(x, bias, approximate, need_backward=0)


@pytest.mark.parametrize("approximate", GELU)
def test_gelu_of_a_scalar_and_of_non_contiguous_input(dtype, approximate):
    x, bias, dout = bias_data((40, 9), dtype)

    def run():
        out0, cache0 = gelu_forward(np.asarray(x[1, 2]), approximate)  # 0-d
        xt, dt = x.T.copy().T, dout[:, ::-1]  # Fortran order, reversed strides
        out, cache = gelu_forward(xt, approximate)
        bout, bcache = bias_gelu_forward(xt, bias, approximate)
        return (out0, cache0.saved, out, gelu_backward(dt, cache), bout,
                *bias_gelu_backward(dt, bcache))

    got, want = fused_and_reference(run)
    assert_matches_reference(got, want, dtype,
                             ["out0", "saved0", "out", "dx", "bout", "bdx", "dbias"])


@pytest.mark.parametrize("approximate", GELU)
def test_gelu_caches_cross_over(dtype, approximate):
    """A fused forward's cache feeds the reference backward, and the other way round."""
    x, bias, dout = bias_data((16, 768), dtype)
    _, fused_cache = bias_gelu_forward(x, bias, approximate)
    _, fused_plain = gelu_forward(x, approximate)
    with reference_only():
        _, ref_cache = bias_gelu_forward(x, bias, approximate)
        _, ref_plain = gelu_forward(x, approximate)
        want = (*bias_gelu_backward(dout, ref_cache), gelu_backward(dout, ref_plain))
        ref_on_fused = (*bias_gelu_backward(dout, fused_cache), gelu_backward(dout, fused_plain))
    fused_on_ref = (*bias_gelu_backward(dout, ref_cache), gelu_backward(dout, ref_plain))
    for got in (ref_on_fused, fused_on_ref):
        assert_matches_reference(got, want, dtype, ["bias_gelu.dx", "bias_gelu.dbias", "gelu.dx"])


# -- LayerNorm ----------------------------------------------------------------------------------


def run_layernorm(bk: Backend, x, gamma, beta, dout, eps):
    a = bk.asarray
    out, cache = layernorm_forward(a(x), a(gamma), a(beta), eps=eps)
    return bk.host(out, cache.xhat, cache.rstd, *layernorm_backward(a(dout), cache))


LN_NAMES = ["layernorm.out", "layernorm.xhat", "layernorm.rstd", "layernorm.dx",
            "layernorm.dgamma", "layernorm.dbeta"]


@pytest.mark.parametrize("eps", test_layernorm.EPS)
@pytest.mark.parametrize("shape", test_layernorm.SHAPES + [(1, 1, 1)] + ODD)
def test_layernorm_matches_reference(dtype, shape, eps):
    x, gamma, beta, dout = test_layernorm.data(shape, dtype, offset=0.5)
    got, want = fused_and_reference(lambda: run_layernorm(NUMPY, x, gamma, beta, dout, eps))
    _, dx_floor, _, _ = test_layernorm.floors(x, gamma, dout, eps)
    # x̂ is 0 for a width of 1 and of size 1 elsewhere; dx cancels by design (test_layernorm)
    assert_matches_reference(got, want, dtype, LN_NAMES, [0.0, 1.0, 0.0, dx_floor, 0.0, 0.0])
    assert got[2].shape == (*shape[:-1], 1)


def test_layernorm_caches_cross_over(dtype):
    x, gamma, beta, dout = test_layernorm.data((3, 5, 768), dtype)
    _, fused_cache = layernorm_forward(x, gamma, beta)
    with reference_only():
        _, ref_cache = layernorm_forward(x, gamma, beta)
        want = layernorm_backward(dout, ref_cache)
        ref_on_fused = layernorm_backward(dout, fused_cache)
    fused_on_ref = layernorm_backward(dout, ref_cache)
    floors = [test_layernorm.floors(x, gamma, dout)[1], 0.0, 0.0]
    for got in (ref_on_fused, fused_on_ref):
        assert_matches_reference(got, want, dtype, ["dx", "dgamma", "dbeta"], floors)


def test_layernorm_takes_non_contiguous_arrays(dtype):
    x, gamma, beta, dout = test_layernorm.data((40, 7), dtype)

    def run():
        xt, dt = x.T.copy().T, dout.T.copy().T  # Fortran order
        out, cache = layernorm_forward(xt, gamma[::-1][::-1], beta)
        return (out, *layernorm_backward(dt, cache))

    got, want = fused_and_reference(run)
    floors = [0.0, test_layernorm.floors(x, gamma, dout)[1], 0.0, 0.0]
    assert_matches_reference(got, want, dtype, ["out", "dx", "dgamma", "dbeta"], floors)


# -- softmax and the masked, scaled softmax -----------------------------------------------------

SOFTMAX_SHAPES = [(1,), (1, 1, 1), (1, 1, 7), (2, 3, 5), (3, 1, 2, 9), (16, 8, 64, 64)] + ODD


@pytest.mark.parametrize("shape", SOFTMAX_SHAPES)
def test_softmax_matches_reference(dtype, shape):
    g = np.random.default_rng(0)
    x, dout = (3.0 * g.standard_normal(shape)).astype(dtype), normal(g, shape, dtype)

    def run():
        y, cache = softmax_forward(x, axis=-1)
        return y, softmax_backward(dout, cache)

    got, want = fused_and_reference(run)
    assert_matches_reference(got, want, dtype, ["softmax.out", "softmax.dx"],
                             [0.0, terms_size(want[0], dout)])


def masks(shape, kind, g):
    b, h, t_q, t_k = shape
    if kind == "none":
        return None
    if kind == "padding":
        return (np.arange(t_k)[None, :] < g.integers(1, t_k + 1, size=b)[:, None])[:, None, None]
    if kind == "dense":
        mask = g.random((b, 1, t_q, t_k)) < 0.6
        mask[..., 0] = True
        return mask
    mask = g.random((b, h, t_q, t_k)) < 0.5  # "fully-masked-rows"
    mask[:, :, 0] = False  # the first query of every head sees nothing
    return mask


@pytest.mark.parametrize("scale", [1.0, 0.125])
@pytest.mark.parametrize("mask_kind", ["none", "padding", "dense", "fully-masked-rows"])
@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 1, 1, 1), (2, 1, 3, 1025), (4, 2, 3, 1),
                                   (1, 2, 1000, 768)])
def test_masked_softmax_matches_reference(dtype, shape, mask_kind, scale):
    g = np.random.default_rng(0)
    x, dout = (3.0 * g.standard_normal(shape)).astype(dtype), normal(g, shape, dtype)
    mask = masks(shape, mask_kind, g)

    def run():
        probs, cache = masked_softmax_forward(x, mask, scale)
        return cache.scores, probs, masked_softmax_backward(dout, cache)

    got, want = fused_and_reference(run)
    np.testing.assert_array_equal(got[0], want[0])  # x · scale and the minimum: exact
    assert_matches_reference(got[1:], want[1:], dtype, ["masked_softmax.out", "masked_softmax.dx"],
                             [0.0, terms_size(want[1], dout, scale)])
    if mask_kind == "fully-masked-rows":
        np.testing.assert_array_equal(got[1][:, :, 0], 0.0)
        np.testing.assert_array_equal(got[2][:, :, 0], 0.0)
    if mask is not None:
        np.testing.assert_array_equal(got[1][~np.broadcast_to(mask, shape)], 0.0)


def test_softmax_caches_cross_over_and_non_contiguous_input(dtype):
    g = np.random.default_rng(1)
    x = (3.0 * g.standard_normal((2, 3, 6, 9))).astype(dtype).swapaxes(-1, -2)  # a view
    dout = normal(g, (2, 3, 9, 6), dtype)
    mask = masks((2, 3, 9, 6), "dense", g)
    probs, fused_cache = masked_softmax_forward(x, mask, 0.5)
    with reference_only():
        want_probs, ref_cache = masked_softmax_forward(x, mask, 0.5)
        want = masked_softmax_backward(dout, ref_cache)
        ref_on_fused = masked_softmax_backward(dout, fused_cache)
    fused_on_ref = masked_softmax_backward(dout, ref_cache)
    floor = terms_size(want_probs, dout, 0.5)
    assert_matches_reference([probs], [want_probs], dtype, ["masked_softmax.out"])
    for got in (ref_on_fused, fused_on_ref):
        assert_matches_reference([got], [want], dtype, ["masked_softmax.dx"], [floor])


@pytest.mark.parametrize(("size", "mask_kind"), test_attention.CASES)
def test_attention_matches_reference(dtype, size, mask_kind):
    q, k, v, dout, mask, causal, dense = test_attention.data(size, mask_kind, dtype)

    def run():
        out, cache = attention_forward(q, k, v, mask=mask, causal=causal)
        grads: dict = {}
        back = attention_backward(dout, cache, grads)
        return (out, *back, cache.probs, grads["scores"])

    got, want = fused_and_reference(run)
    floors = test_attention.floors(q, k, v, dout, dense)
    dp = dout.astype(np.float64) @ v.astype(np.float64).swapaxes(-1, -2)
    assert_matches_reference(got, want, dtype, [*test_attention.NAMES, "probs", "dscores"],
                             [*floors, 0.0, terms_size(want[4], dp)])


# -- Adam / AdamW -------------------------------------------------------------------------------

ADAM_CASES = [(Adam, dict()), (Adam, dict(lr=0.01, weight_decay=0.1)),
              (Adam, dict(lr=0.02, betas=(0.3, 0.9), eps=1e-6)), (AdamW, dict(lr=0.01)),
              (AdamW, dict(lr=0.003, betas=(0.8, 0.99), eps=1e-7, weight_decay=0.3))]
ADAM_IDS = ["adam", "adam-weight-decay", "adam-beta1-below-half", "adamw", "adamw-varied"]


def run_adam(bk: Backend, opt, kwargs, init, grads, strided=False):
    """Five steps from ``init`` with ``grads``; ``strided``: the first parameter a strided view
    (so every parameter goes through ``adam_update``, one by one, not ``adam_update_many``)."""
    params = [Parameter(bk.asarray(a)) for a in init]
    if strided:
        wide = bk.asarray(np.repeat(init[0][..., None], 2, axis=-1))  # (..., 2)
        params[0] = Parameter(wide[..., 0])
    optimizer = opt(params, **kwargs)
    for step in grads:
        for p, g in zip(params, step, strict=True):
            p.grad[...] = bk.asarray(g)
        optimizer.step()
    state = optimizer.state
    return [x for p, m, v in zip(params, state["exp_avg"], state["exp_avg_sq"], strict=True)
            for x in bk.host(p.data, m, v)]


def adam_data(dtype, shapes=((7,), (3, 5), (100, 768), (1,), ())):
    rng = np.random.default_rng(0)
    init = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(5)]
    return init, grads


@pytest.mark.parametrize(("opt", "kwargs"), ADAM_CASES, ids=ADAM_IDS)
def test_adam_matches_reference(dtype, opt, kwargs):
    """Five steps, fused and reference, from the same start with the same gradients; compared
    as test_optim compares with torch (relative, plus a floor tied to max |θ|)."""
    init, grads = adam_data(dtype)
    got, want = fused_and_reference(lambda: run_adam(NUMPY, opt, kwargs, init, grads))
    rtol, atol = (1e-6, 1e-7) if np.dtype(dtype) == np.float32 else (1e-12, 1e-13)
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        assert a.dtype == b.dtype == np.dtype(dtype) and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol * terms_size(b),
                                   err_msg=f"params[{i // 3}] {('θ', 'm', 'v')[i % 3]}")


@pytest.mark.parametrize(("opt", "kwargs"), ADAM_CASES, ids=ADAM_IDS)
def test_adam_many_equals_the_kernel_parameter_by_parameter(dtype, opt, kwargs, monkeypatch):
    """All parameters in one ``adam_update_many`` call give ``adam_update``'s bits, one
    parameter at a time (its own test compares that with the reference); a strided parameter
    sends them all to ``adam_update``, with the same result."""
    init, grads = adam_data(dtype)
    done = []  # what each call of the kernel answered
    many = fused._KERNELS[("adam_update_many", "numpy")]
    monkeypatch.setitem(fused._KERNELS, ("adam_update_many", "numpy"),
                        lambda *a, **kw: done.append(many(*a, **kw)) or done[-1])
    got = run_adam(NUMPY, opt, kwargs, init, grads)
    assert done == [True] * len(grads)
    strided = run_adam(NUMPY, opt, kwargs, init, grads, strided=True)
    assert done == [True] * len(grads) + [False] * len(grads)  # nothing done: one by one
    monkeypatch.delitem(fused._KERNELS, ("adam_update_many", "numpy"))
    assert_bitwise(got, run_adam(NUMPY, opt, kwargs, init, grads))
    assert_bitwise(strided, got)


def test_adam_many_builds_its_lists_again_for_new_arrays(dtype):
    """The typed lists are kept between steps and built again when an array is another object:
    a state loaded from a checkpoint, a parameter given new data. Each step then equals the
    step of a fresh optimizer that never kept lists (compared bit for bit)."""
    init, grads = adam_data(dtype)
    kw = dict(lr=0.01, weight_decay=0.1)

    def run(replace_between: bool):
        params = [Parameter(a.copy()) for a in init]
        opt = AdamW(params, **kw)
        lists = []
        for i, step in enumerate(grads):
            for p, g in zip(params, step, strict=True):
                p.grad[...] = g
            if replace_between and i == 2:
                opt.load_state_dict(opt.state_dict())  # new m, v arrays, the same values
                params[1].data = params[1].data.copy()
                params[3].grad = params[3].grad.copy()
            opt.step()
            lists.append(opt._fused_cache.get("lists"))
        return [x for p in params for x in (p.data, p.grad)], opt, lists

    want, _, kept = run(False)
    got, opt, rebuilt = run(True)
    assert_bitwise(got, want)
    assert all(a is kept[0] for a in kept)  # built once
    assert rebuilt[1] is rebuilt[0] and rebuilt[2] is not rebuilt[1] and rebuilt[3] is rebuilt[2]
    assert opt._fused_cache["arrays"][1] is opt.params[1].data
    constants = opt._kernel_constants(np.dtype(dtype))
    with pytest.raises(ValueError, match=r"as many \(at least one\) parameters, .* got 2, 1"):
        numba_kernels.adam_update_many([init[0]] * 2, [init[0]], [init[0]] * 2, [init[0]] * 2,
                                       cache={}, **constants)


@pytest.mark.parametrize("unfit", ["strided v", "another dtype", "integers"])
def test_adam_many_does_nothing_where_the_arrays_do_not_suit_it(dtype, unfit):
    """A strided array, two dtypes, integers: False, and every array as it was (the optimizer
    then updates parameter by parameter); the verdict is kept for the same arrays."""
    rng = np.random.default_rng(4)
    arrays = [[rng.standard_normal((6, 4)).astype(dtype) for _ in range(2)] for _ in range(4)]
    if unfit == "strided v":
        arrays[3][1] = np.zeros((6, 8), dtype)[:, ::2]
    elif unfit == "another dtype":
        arrays[1][0] = arrays[1][0].astype(np.float32 if dtype == np.float64 else np.float64)
    else:
        arrays = [[a.astype(np.int64) for a in group] for group in arrays]
    before = [a.copy() for group in arrays for a in group]
    cache: dict = {}
    kw = dict(l2=0.0, decay=None, w=0.1, beta2=0.999, step_size=0.01,
              bias_correction2_sqrt=0.05, eps=1e-8)
    for _ in range(2):
        assert numba_kernels.adam_update_many(*arrays, cache=cache, **kw) is False
        assert cache["lists"] is None
    assert_bitwise([a for group in arrays for a in group], before)


def test_adam_kernel_updates_non_contiguous_arrays_in_place(dtype):
    """θ, m, v that are strided views get the same update as contiguous copies, in place."""
    rng = np.random.default_rng(2)
    theta, g, m = (rng.standard_normal((6, 8)).astype(dtype) for _ in range(3))
    v = np.abs(rng.standard_normal((6, 8))).astype(dtype)
    kw = dict(l2=0.0, decay=0.99, w=float(dtype.type(0.1)), beta2=0.999, step_size=0.01,
              bias_correction2_sqrt=0.05, eps=1e-8)
    want = [a.copy() for a in (theta, m, v)]
    numba_kernels.adam_update(want[0], g, want[1], want[2], **kw)
    views = []
    for a in (theta, g, m, v):
        view = np.zeros((6, 16), dtype)[:, ::2]  # every other column: not contiguous
        view[...] = a
        views.append(view)
    numba_kernels.adam_update(*views, **kw)
    for got, w, before in zip(views[:1] + views[2:], want, (theta, m, v), strict=True):
        np.testing.assert_array_equal(got, w)
        assert not np.array_equal(got, before)


# -- determinism, threads, the switch, the stand-in ---------------------------------------------


def run_everything(bk: Backend, dtype=np.float32):
    x, bias, dout = bias_data((64, 768), dtype)
    _, gamma, beta, _ = test_layernorm.data((64, 768), dtype)
    g = np.random.default_rng(3)
    s = (3.0 * g.standard_normal((2, 4, 32, 33))).astype(dtype)
    ds = normal(g, s.shape, dtype)
    mask = masks(s.shape, "dense", g)
    a = bk.asarray
    out = list(run_gelu(bk, x, bias, dout, "none")) + list(run_gelu(bk, x, bias, dout, "tanh"))
    out += list(run_layernorm(bk, x, gamma, beta, dout, 1e-5))
    p, cache = masked_softmax_forward(a(s), a(mask), 0.3)
    y, ycache = softmax_forward(a(s))
    out += list(bk.host(p, masked_softmax_backward(a(ds), cache), y,
                        softmax_backward(a(ds), ycache)))
    out += run_dropout(bk, x, dout)  # PCG64's draw, the counter generator's, a given mask
    from nanotf.functional import bias_relu_backward, bias_relu_forward  # bias + ReLU

    r_out, r_cache = bias_relu_forward(a(x), a(bias))
    out += list(bk.host(r_out, r_cache.z, *bias_relu_backward(a(dout), r_cache)))
    from nanotf.functional import cross_entropy_backward, cross_entropy_forward  # the loss

    ce = np.random.default_rng(11)
    logits = (2.0 * ce.standard_normal((4, 9, 130))).astype(dtype)
    labels = ce.integers(1, 130, (4, 9))
    labels[:, 6:] = 0  # ignored
    loss, ce_cache = cross_entropy_forward(a(logits), a(labels), ignore_index=0,
                                           label_smoothing=0.1)
    out += list(bk.host(loss, ce_cache.probs, cross_entropy_backward(1.0, ce_cache)))
    init, grads = adam_data(dtype, shapes=((3000,), (64, 33)))
    out += run_adam(bk, AdamW, dict(lr=0.01), init, grads)  # adam_update_many
    out += run_adam(bk, AdamW, dict(lr=0.01), init, grads, strided=True)  # adam_update
    return out


def assert_bitwise(got, want):
    assert len(got) == len(want)
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        assert a.dtype == b.dtype and a.shape == b.shape, i
        np.testing.assert_array_equal(a, b, err_msg=f"result {i}")


def test_two_runs_are_bitwise_equal(dtype):
    assert_bitwise(run_everything(NUMPY, dtype), run_everything(NUMPY, dtype))


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="Numba has one thread here")
def test_one_thread_and_two_give_the_same_bits():
    before = fused.kernel_threads()
    seen: list[int] = []
    loop = numba_kernels._gelu_erf

    def spy(*args):  # the number of threads the kernel's loop runs on
        seen.append(numba.get_num_threads())
        return loop(*args)

    try:
        numba_kernels._gelu_erf = spy
        fused.set_kernel_threads(1)
        one = run_everything(NUMPY)
        fused.set_kernel_threads(2)
        two = run_everything(NUMPY)
    finally:
        fused.set_kernel_threads(before)
        numba_kernels._gelu_erf = loop
    assert 1 in seen and 2 in seen
    assert_bitwise(one, two)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="Numba has one thread here")
def test_a_kernel_leaves_the_callers_numba_threads_as_they_were():
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(2)
        assert fused.kernel_threads() == 1
        fused.kernel_for("gelu_forward", np.ones(3))(np.ones(3), "none")
        assert numba.get_num_threads() == 2
    finally:
        numba.set_num_threads(before)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2", None])
def test_set_kernel_threads_refuses_what_is_not_a_positive_integer(bad):
    with pytest.raises(ValueError, match=f"positive integer, got {re.escape(repr(bad))}"):
        fused.set_kernel_threads(bad)


@pytest.mark.parametrize(("value", "want"), [(None, 1), ("", 1), (" 3 ", 3), ("1", 1)])
def test_the_threads_environment_variable(value, want):
    assert _threads._parse_threads(value) == want


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_a_bad_threads_environment_variable_is_refused(value):
    with pytest.raises(ValueError, match=f"NANOTF_KERNEL_THREADS must be a positive integer.*"
                                         f"got {re.escape(repr(value))}"):
        _threads._parse_threads(value)


def test_switch_off_runs_the_reference_bit_for_bit(monkeypatch):
    """With the switch off no Numba kernel is called and every result is the reference's; with
    it on the kernels run (so the comparison is not of the reference with itself)."""
    calls: list[str] = []
    for op in fused.OPS:
        kernel = fused._KERNELS[(op, "numpy")]

        def counted(*args, _op=op, _kernel=kernel, **kwargs):
            calls.append(_op)
            return _kernel(*args, **kwargs)

        fused._KERNELS[(op, "numpy")] = counted
    on = run_everything(NUMPY)
    assert set(calls) == set(fused.OPS)
    calls.clear()
    set_fused_enabled(False)
    off = run_everything(NUMPY)
    assert calls == []
    with reference_only():
        ref = run_everything(NUMPY)
    assert_bitwise(off, ref)
    assert any(not np.array_equal(a, b) for a, b in zip(on, off, strict=True))


def test_stand_in_equals_numpy_with_the_kernels_on():
    assert_same_on_strict(run_everything)
    assert fused.kernel_for("adam_update", STRICT.asarray(np.zeros(1))) is (
        numba_kernels.STRICT_KERNELS["adam_update"])
