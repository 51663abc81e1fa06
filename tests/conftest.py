"""Shared fixtures and helpers of the test suite.

* ``xp_params``: the array backends an op test runs on: ``numpy``, ``strict`` (the CPU stand-in
  for CuPy that refuses silent host conversions) and ``cupy`` (marked ``gpu``: skipped where CuPy
  or a CUDA device is missing, with the reason).
* ``dtype``: float32 and float64.
* ``torch_reference``: runs a torch function on copies of NumPy inputs and back-propagates the
  fake loss ``(out * dout).sum()``, as in llm.c's layernorm tutorial.
* ``assert_close``: normwise relative error against the reference, at the tolerance of the dtype
  (``RTOL``), recorded per op so ``NANOTF_ERROR_TABLE=1 pytest`` prints the worst one seen.

Tolerances (normwise relative error ``max|got - want| / max|want|``):

* float64 vs torch: ``1e-10``. Both sides round at ~1e-16 per operation; the ops here chain at
  most a few dozen operations and short sums, so honest agreement is ~1e-15.
* float32 vs torch: ``1e-5``. float32 rounds at 6e-8; sums over up to a few hundred terms and
  the cancellations in LayerNorm's and softmax's backward stay two orders below this.
* finite differences (float64, seven-point stencil, h = 1e-3): ``GRADCHECK_RTOL = 1e-9``; a
  correct backward typically reaches ~1e-12, a wrong one is off by ~1e-2 or more.

Normwise rather than elementwise: elementwise relative error is undefined where an entry is
(near) zero. A result that vanishes or cancels by design (dq with one key, the key bias's
gradient, LayerNorm's and softmax's dx) is compared against a floor tied to the size of its
terms, never by the relative error of round-off against round-off: the one rule, stated where
``terms_size`` and ``rel_error`` are defined below, and tested in tests/test_comparison_rule.py.

For the tests of modules and whole models (``tests/nn``, ``tests/models``), against torch layers
and Hugging Face ``transformers``:

* ``model_dtype`` (float32 and float64) and ``float64``: the default dtype of the nanotf modules
  a test builds, float32 restored after.
* ``rel_error``: normwise relative error against the reference's own size or a floor (each
  test file states its tolerances); ``torch_key``, ``copy_into_torch`` and
  ``compare_param_grads`` map nanotf parameter names onto torch's layers; ``hf_pair``,
  ``padded_ids`` and ``assert_hf_grads_match`` do the same for a Hugging Face model, whose
  names nanotf shares; ``DropoutReplay`` makes training-mode dropout a fixed function for
  finite differences, and ``to_strict`` moves a model onto the strict CuPy stand-in.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as tF
from hypothesis import settings

import nanotf
from nanotf import backend as nanotf_backend
from nanotf.nn import Module
from nanotf.testing import strict as strict_mod

RTOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-5}
GRADCHECK_RTOL = 1e-9

# CI (the CI variable set, as .ci/run sets it) draws hypothesis's examples from a fixed seed, so
# a run there repeats; elsewhere every run explores new examples
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

# torch on one thread in the whole suite (the model tests used to set this when imported, which
# already made it session-wide whenever they were collected)
torch.set_num_threads(1)


# -- the gpu marker ---------------------------------------------------------------------------


def _cupy_unavailable_reason() -> str | None:
    """None when CuPy and a CUDA device work, else the reason nanotf gives."""
    try:
        nanotf_backend._import_cupy()
    except nanotf.BackendUnavailableError as err:
        return str(err)
    return None


CUPY_REASON = _cupy_unavailable_reason()
HAS_GPU = CUPY_REASON is None


def pytest_configure(config: pytest.Config) -> None:
    """Where CuPy is installed, its PerformanceWarning (a RuntimeWarning, which pyproject turns
    into an error) is shown, not raised: CuPy raises some of them from compiled code, which
    pyproject's ``default::RuntimeWarning:cupy`` (matched by the module that warns) misses."""
    if importlib.util.find_spec("cupy") is None:
        return
    try:
        from cupy._util import PerformanceWarning  # noqa: F401  (the name pytest resolves)
    except Exception:  # a CuPy that cannot load, or keeps the class elsewhere: nothing to add
        return
    config.addinivalue_line("filterwarnings", "default::cupy._util.PerformanceWarning")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if HAS_GPU:
        return
    skip = pytest.mark.skip(reason=f"gpu test: {CUPY_REASON}")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


# -- backends ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Backend:
    """Where a test puts its arrays: ``asarray`` moves host data there, ``host`` brings it back."""

    name: str
    xp: Any

    def asarray(self, a: Any) -> Any:
        if a is None:
            return None
        if self.name == "strict":
            return strict_mod.asarray(a)
        return self.xp.array(a, copy=True)

    def host(self, *arrays: Any) -> tuple[Any, ...]:
        """Copies on the host (None stays None); 0-d results become 0-d NumPy arrays."""
        return tuple(None if a is None else np.array(nanotf.to_numpy(a)) for a in arrays)

    def rng(self, seed: int) -> Any:
        """A fresh seeded generator that makes arrays on this backend."""
        return self.xp.random.default_rng(seed)


NUMPY = Backend("numpy", np)
STRICT = Backend("strict", strict_mod.strict)


def make_backend(name: str) -> Backend:
    if name == "numpy":
        return NUMPY
    if name == "strict":
        return STRICT
    if name == "cupy":
        if not HAS_GPU:
            pytest.skip(f"gpu test: {CUPY_REASON}")
        import cupy  # type: ignore[import-not-found]

        return Backend("cupy", cupy)
    raise ValueError(f"unknown test backend {name!r}")


BACKEND_NAMES = ["numpy", "strict", pytest.param("cupy", marks=pytest.mark.gpu)]


@pytest.fixture(params=BACKEND_NAMES)
def xp_params(request: pytest.FixtureRequest) -> Backend:
    """The backend an op test runs on: numpy, strict (CuPy stand-in), cupy (gpu)."""
    return make_backend(request.param)


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def fd_backend(request: pytest.FixtureRequest) -> Backend:
    """The backends of the finite-difference checks: numpy and cupy (gpu).

    A check runs the forward thousands of times; on the strict stand-in that costs seconds and
    adds nothing, since strict results equal NumPy's bit for bit (each ``test_strict_equals_numpy``)
    and ``tests/test_gradcheck.py`` runs gradcheck itself on strict arrays.
    """
    return make_backend(request.param)


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def dtype(request: pytest.FixtureRequest) -> np.dtype:
    return np.dtype(request.param)


@pytest.fixture(autouse=True)
def _restore_backend_state() -> Any:
    """Tests that switch backend, seed or default dtype leave nanotf as they found it."""
    saved = dict(nanotf_backend._state)
    yield
    nanotf_backend._state.clear()
    nanotf_backend._state.update(saved)


# -- references and comparisons ---------------------------------------------------------------


def torch_reference(
    fn: Callable[..., torch.Tensor], inputs: dict[str, Any], dout: np.ndarray
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``out = fn(**inputs)`` in torch and the gradients of ``(out * dout).sum()``.

    NumPy float arrays become leaf tensors that require grad (same dtype); other arrays (ids,
    masks) become plain tensors; everything else is passed as is. Returns ``out`` and
    ``{name: grad}`` for the float inputs, as NumPy arrays.
    """
    tensors: dict[str, Any] = {}
    for name, v in inputs.items():
        if isinstance(v, np.ndarray):
            t = torch.from_numpy(np.array(v))
            if v.dtype.kind == "f":
                t.requires_grad_(True)
            tensors[name] = t
        else:
            tensors[name] = v
    out = fn(**tensors)
    (out * torch.from_numpy(np.array(dout))).sum().backward()
    grads = {
        name: (t.grad.numpy() if t.grad is not None else np.zeros(t.shape, dtype=v.dtype))
        for (name, t), v in zip(tensors.items(), inputs.values(), strict=True)
        if isinstance(t, torch.Tensor) and t.requires_grad
    }
    return out.detach().numpy(), grads


# -- quantities that vanish by design: the one rule ------------------------------------------
#
# Some results are exactly zero in exact arithmetic: dq and dk of an attention whose every query
# sees one key (every weight is 1), dx of a softmax over one class or of a LayerNorm of width 1,
# the key projection's bias gradient (adding a constant to every score of a row leaves its softmax
# unchanged). Computed in floating point, both nanotf and the reference return round-off there,
# and which round-off depends on the kernel (torch picks different float32 kernels on AVX2 and on
# AVX-512/AMX CPUs): noise against noise has a relative error of about 1 whatever the code does.
# Round-off is relative to the size of the *terms* a result is computed from, not to the result.
# So such a result is compared normwise against a floor: ``rel_error(got, want, floor)`` with
# ``floor = terms_size(...)``, the largest size one of its terms can have (a product of the
# largest entries of its factors, computed from the inputs). A correct result then agrees to
# ~eps, a wrong one is off by O(floor) and fails. Tests pass a floor only for quantities that
# vanish or cancel by design (softmax's and LayerNorm's dx are sums built to cancel), never to
# excuse an ordinary result.


def terms_size(*factors: Any) -> float:
    """``Π max|factor|``: the largest size a term made of these factors can have (see above).

    A factor is an array (any backend, or a torch tensor) or a number (a scale, a count).
    """
    size = 1.0
    for f in factors:
        if isinstance(f, torch.Tensor):
            f = f.detach().numpy()
        size *= float(np.abs(np.asarray(nanotf.to_numpy(f), dtype=np.float64)).max(initial=0.0))
    return size


def rel_error(got: Any, want: Any, floor: float = 0.0) -> float:
    """Normwise relative error against the reference: ``max|got - want| / max(max|want|, floor)``.

    0 when both are zero. The scale leaves ``got`` out, so a result too large is not excused by
    its own size. ``got`` may live on any backend, ``want`` may be a torch tensor. ``floor``: the
    size of the terms of a result that vanishes by design (the rule above), else 0.
    """
    g = np.asarray(nanotf.to_numpy(got), dtype=np.float64)
    w = np.asarray(want.detach().numpy() if isinstance(want, torch.Tensor) else want, np.float64)
    if g.shape != w.shape:
        raise AssertionError(f"shapes differ: got {g.shape}, reference {w.shape}")
    if not np.isfinite(g).all():
        raise AssertionError("result has NaN or inf")
    if not np.isfinite(w).all():
        raise AssertionError("reference has NaN or inf (choose inputs where it is defined)")
    scale = max(np.abs(w).max(initial=0.0), floor)
    diff = np.abs(g - w).max(initial=0.0)
    if scale == 0.0:
        return 0.0 if diff == 0.0 else math.inf
    return float(diff / scale)


# worst error seen per (op, dtype): printed by NANOTF_ERROR_TABLE=1 pytest
WORST: dict[tuple[str, str], float] = defaultdict(float)


def assert_close(got: Any, want: Any, dtype: Any, what: str, floor: float = 0.0) -> None:
    """``got`` agrees with the reference ``want`` to ``RTOL[dtype]`` (normwise relative).

    ``what`` names the quantity (``"softmax.dx"``); the part before the dot names the op for
    the error table. ``floor``: see ``rel_error`` (only for a result that vanishes by design).
    """
    dt = np.dtype(dtype)
    err = rel_error(got, want, floor)
    key = (what.split(".")[0], dt.name)
    WORST[key] = max(WORST[key], err)
    assert err <= RTOL[dt], f"{what}: relative error {err:.3g} > {RTOL[dt]:g} ({dt.name})"


def assert_all_close(
    got: Sequence[Any],
    want: Sequence[Any],
    dtype: Any,
    names: Sequence[str],
    floors: Sequence[float] | None = None,
) -> None:
    floors = [0.0] * len(names) if floors is None else floors
    for g, w, name, floor in zip(got, want, names, floors, strict=True):
        assert_close(g, w, dtype, name, floor)


def assert_dtypes(arrays: Sequence[Any], dtype: Any, names: Sequence[str]) -> None:
    """No silent upcast: every output and gradient keeps the input dtype."""
    for a, name in zip(arrays, names, strict=True):
        assert a.dtype == np.dtype(dtype), f"{name} has dtype {a.dtype}, expected {dtype}"


def assert_same_on_strict(run: Callable[[Backend], Sequence[Any]]) -> None:
    """``run(backend)`` gives bit-identical host results on NumPy and on the strict stand-in."""
    want = run(NUMPY)
    got = run(STRICT)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        if w is None:
            assert g is None
            continue
        assert isinstance(g, np.ndarray), f"strict run returned {type(g).__name__}, not a host copy"
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_array_equal(g, w)


# worst finite-difference error per op (float64), for the same table
FD_WORST: dict[str, float] = defaultdict(float)


def assert_gradcheck(errors: dict[str, float], op: str) -> None:
    """Every finite-difference error of a ``gradcheck`` result is at most ``GRADCHECK_RTOL``."""
    assert errors, "gradcheck checked nothing"
    worst = max(errors.values())
    FD_WORST[op] = max(FD_WORST[op], worst)
    assert worst <= GRADCHECK_RTOL, f"gradcheck errors {errors} exceed {GRADCHECK_RTOL:g}"


def normal(rng: np.random.Generator, shape: Any, dtype: Any = np.float64) -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype)


# -- modules and models against torch and Hugging Face -----------------------------------------


@pytest.fixture(params=["float32", "float64"])
def model_dtype(request: pytest.FixtureRequest) -> Any:
    """The default dtype of the nanotf modules a test builds; float32 is restored after."""
    nanotf.set_default_dtype(request.param)
    yield np.dtype(request.param)
    nanotf.set_default_dtype("float32")


@pytest.fixture
def float64() -> Any:
    """float64 as the default dtype of the nanotf modules a test builds (float32 after)."""
    nanotf.set_default_dtype("float64")
    yield np.dtype(np.float64)
    nanotf.set_default_dtype("float32")


def has_exact_gelu() -> bool:
    try:
        import nanotf.functional._erf  # noqa: F401
    except ImportError:
        return False
    return True


needs_erf = pytest.mark.skipif(
    not has_exact_gelu(), reason="exact GELU needs nanotf.functional._erf (not there yet)"
)

TORCH_DTYPE = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}
TORCH_ACTIVATION = {
    "relu": "relu",
    "gelu": "gelu",  # exact erf form in both
    "gelu_new": lambda x: tF.gelu(x, approximate="tanh"),
}
# The key projection's bias (nanotf's seq2seq and torch.nn names, BERT's, DistilBERT's) gets a
# gradient that is zero in exact arithmetic: adding one constant to every score of a row leaves
# its softmax unchanged. Its terms are the gradients that flow through the model, so by the rule
# above its floor is the largest parameter gradient of the model (``grad_floor``).
KEY_BIAS = ("k_proj.bias", "attention.self.key.bias", "attention.k_lin.bias")


def grad_floor(name: str, grads: Any) -> float:
    """The floor of parameter ``name``'s gradient (rule above): ``terms_size`` of the largest of
    ``grads`` (every parameter gradient of the reference) for a key bias, else 0."""
    if not name.endswith(KEY_BIAS):
        return 0.0
    return max(terms_size(g) for g in grads)


def torch_key(name: str, d_model: int) -> tuple[str, slice]:
    """Our parameter name -> (torch name, rows of it): torch packs q, k, v into
    ``in_proj_weight`` (3C, C), names the cross-attention ``multihead_attn`` and keeps the FFN's
    linears on the layer itself."""
    name = ("." + name).replace(".cross_attn.", ".multihead_attn.").replace(".ff.linear", ".linear")
    name = name[1:]
    m = re.fullmatch(r"(.*?)\.?([qkv])_proj\.(weight|bias)", name)
    if m is None:
        return name, slice(None)
    i = "qkv".index(m[2])
    prefix = f"{m[1]}." if m[1] else ""
    return f"{prefix}in_proj_{m[3]}", slice(i * d_model, (i + 1) * d_model)


def copy_into_torch(module: Module, ref: torch.nn.Module, d_model: int) -> None:
    """Every torch parameter is written from ours, by name (every one of them exactly once)."""
    ref_params = dict(ref.named_parameters(remove_duplicate=False))
    written: set[str] = set()
    with torch.no_grad():
        for name, array in module.state_dict().items():
            key, rows = torch_key(name, d_model)
            assert key in ref_params, f"{name} -> {key} is not a torch parameter"
            ref_params[key][rows] = torch.from_numpy(np.array(nanotf.to_numpy(array)))
            written.add(key)
    assert written == set(ref_params), f"not written: {set(ref_params) - written}"


def compare_param_grads(module: Module, ref: torch.nn.Module, d_model: int, tol: float) -> None:
    """Every parameter gradient of ``module`` against its torch counterpart (``torch_key``), to
    ``tol``; every torch gradient is compared, and each of ours keeps the reference's dtype."""
    ref_params = dict(ref.named_parameters(remove_duplicate=False))
    mapped = {id(ref_params[torch_key(n, d_model)[0]]) for n, _ in module.named_parameters()}
    assert mapped == set(map(id, ref.parameters())), "a torch gradient is not compared"
    ref_grads = [p.grad for p in ref.parameters()]
    for name, p in module.named_parameters():
        key, rows = torch_key(name, d_model)
        want = ref_params[key].grad[rows].numpy()
        assert p.grad.dtype == want.dtype, f"d{name} has dtype {p.grad.dtype}, not {want.dtype}"
        err = rel_error(p.grad, want, grad_floor(name, ref_grads))
        assert err <= tol, f"d{name}: relative error {err:.3g} > {tol:g}"


def padded_ids(
    vocab: int = 100, batch: int = 3, length: int = 7, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Token ids in [1, vocab) and the attention mask (1 = real token) of a batch whose rows 1
    and 2 end in padding (id 0): the last two positions of row 1, the second half of row 2."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, vocab, (batch, length))
    mask = np.ones((batch, length), dtype=np.int64)
    mask[1, length - 2 :] = 0
    mask[2, length // 2 :] = 0
    ids[mask == 0] = 0
    return ids, mask


def tiny_bert_config(**changes: Any) -> dict[str, Any]:
    """A one-layer BERT config of width 8 (Hugging Face's keys), with ``changes`` applied."""
    config = dict(
        vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=16, hidden_act="gelu", hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, max_position_embeddings=8, type_vocab_size=2,
        layer_norm_eps=1e-12, pad_token_id=0, initializer_range=0.02,
    )
    return {**config, **changes}


def tiny_distilbert_config(**changes: Any) -> dict[str, Any]:
    """A one-layer DistilBERT config of width 8 (Hugging Face's keys), with ``changes``."""
    config = dict(
        vocab_size=20, dim=8, n_layers=1, n_heads=2, hidden_dim=16, activation="gelu",
        dropout=0.0, attention_dropout=0.0, max_position_embeddings=8,
        sinusoidal_pos_embds=False, pad_token_id=0, initializer_range=0.02,
    )
    return {**config, **changes}


def copy_from_hf(ours: Module, hf: torch.nn.Module) -> None:
    ours.load_state_dict({k: v.detach().numpy() for k, v in hf.state_dict().items()})


def hf_pair(hf_cls: Any, our_cls: Any, cfg: Any, dtype: Any) -> tuple[Any, Any]:
    """A Hugging Face model of config ``cfg`` (eval, float32 or .double()) and nanotf's, built
    ``from_config`` with the same weights copied in by name."""
    torch.manual_seed(0)
    hf = hf_cls(cfg).eval()
    if dtype == np.float64:
        hf = hf.double()
    ours = our_cls.from_config(cfg.to_dict())
    ours.eval()
    copy_from_hf(ours, hf)
    return hf, ours


def assert_hf_grads_match(ours: Module, hf: torch.nn.Module, dtype: Any, tol: float) -> float:
    """Every Hugging Face parameter's gradient equals nanotf's by name, to ``tol``, in ``dtype``;
    the key biases (zero by design) against their floor (``grad_floor``). Returns the worst
    error."""
    mine = dict(ours._named_parameters_all())  # tied parameters under each of their names
    hf_params = dict(hf.named_parameters())
    assert set(hf_params) <= set(mine)
    hf_grads = [p.grad for p in hf_params.values()]
    worst = 0.0
    for name, p in hf_params.items():
        got, want = nanotf.to_numpy(mine[name].grad), p.grad.numpy()
        assert got.dtype == dtype, f"{name}.grad has dtype {got.dtype}"
        err = rel_error(got, want, grad_floor(name, hf_grads))
        worst = max(worst, err)
        assert err <= tol, f"grad of {name}: relative error {err:.3g}"
    return worst


class DropoutReplay(Module):
    """Reseeds nanotf's generator before every forward, so training-mode dropout draws the same
    masks each time and the model is a fixed function that finite differences can check (its
    parameters are named ``model.*``)."""

    def __init__(self, model: Module, seed: int) -> None:
        super().__init__()
        self.model, self.seed = model, seed

    def forward(self, *args: Any) -> Any:
        nanotf.manual_seed(self.seed)
        return self.model.forward(*args)

    def backward(self, dout: Any) -> Any:
        return self.model.backward(dout)


def to_strict(model: Module) -> None:
    """Move every parameter onto the CPU stand-in for CuPy (refuses silent host conversion)."""
    for p in model.parameters():
        p.data, p.grad = strict_mod.asarray(p.data), strict_mod.asarray(p.grad)


def assert_model_same_on_strict(model: Module, inputs: Sequence[Any], douts: Sequence[Any]) -> None:
    """``model.forward(*inputs)`` and ``model.backward(*douts)`` on NumPy, then again with the
    model on the strict CuPy stand-in (no silent host conversion, as CuPy would refuse): the
    output and every parameter gradient are bit-identical. Leaves the model on the stand-in."""
    want = model.forward(*inputs)
    model.backward(*douts)
    grads = {n: p.grad.copy() for n, p in model.named_parameters()}
    model.zero_grad()
    to_strict(model)
    got = model.forward(*(strict_mod.asarray(a) for a in inputs))
    model.backward(*(strict_mod.asarray(d) for d in douts))
    np.testing.assert_array_equal(nanotf.to_numpy(got), want)
    for n, p in model.named_parameters():
        np.testing.assert_array_equal(nanotf.to_numpy(p.grad), grads[n], err_msg=n)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """``NANOTF_ERROR_TABLE=1 pytest ...`` prints the worst errors seen, per op."""
    if not os.environ.get("NANOTF_ERROR_TABLE") or not (WORST or FD_WORST):
        return
    ops = sorted({op for op, _ in WORST} | set(FD_WORST))

    def cell(e: float | None) -> str:
        return "-" if e is None else f"{e:.2e}"

    tr = terminalreporter
    tr.section("largest relative error (normwise)")
    tr.write_line(f"{'op':<20}{'torch f64':>12}{'torch f32':>12}{'FD f64':>12}")
    for op in ops:
        e64, e32 = WORST.get((op, "float64")), WORST.get((op, "float32"))
        tr.write_line(f"{op:<20}{cell(e64):>12}{cell(e32):>12}{cell(FD_WORST.get(op)):>12}")
