"""Any input to any public op: torch's result, or an error of ours that says what went wrong.

The property test throws random shapes (0-d, empty axes, sizes that do not fit), dtypes (float16,
float32, float64, int, bool, complex, object), values (NaN, ±inf) and containers (NumPy and the
strict CuPy stand-in, the other one of the two, Python lists and numbers, torch tensors, None)
at every op in ``nanotf.functional.__all__``. A call passes when it either

* returns what torch returns: the same shape and dtype, NaN and ±inf where torch has them, the
  rest within the suite's tolerance (normwise relative 1e-10 in float64, 1e-5 in float32, a
  floor only for the results that cancel by design, as everywhere in the suite); or
* raises a TypeError, ValueError or IndexError of ours: the message names the op and the
  argument and says what was given ("got ...").

Anything else fails: an AttributeError, a NumPy message (NumPy's AxisError is a ValueError and an
IndexError, but names no op), a DeviceConversionError of the stand-in, a wrong result, or a
result where torch refuses the input.

Where nanotf deliberately differs from torch, the reference says so: a softmax axis, class axis,
LayerNorm width or attention key axis must not be empty (torch returns empty or zero results;
nanotf raises, a max or mean over nothing is undefined); a fully masked attention row gives zeros
(torch: NaN); an ignored cross-entropy row gets a gradient of exactly 0 (torch: NaN where its
logits are NaN or inf); ``dout`` must have the dtype of the forward's output (torch casts it);
``add_positional_backward`` takes a ``dout`` of any batch size and length (the table is a
constant; the seq2seq model runs one positional encoding for both of its sides).

Values are finite where special values only test the order of inf - inf arithmetic, in which
torch is no more right than nanotf: attention's q, k, v, LayerNorm's γ and β, and every ``dout``.
A ``dout`` on another device than its forward is not drawn: some caches hold no array to tell
the device by, and CuPy (or the stand-in) refuses the mix with its own TypeError.

Below the property test, one example test per defect of the issue, each of which failed before
its fix.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as tF
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import nanotf
import nanotf.functional as F
from nanotf.testing import strict as strict_mod
from tests.conftest import RTOL, terms_size

SETTINGS = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

FLOATS = [np.dtype(np.float32), np.dtype(np.float64)]
OTHER_DTYPES = [np.dtype(t) for t in (np.float16, np.int64, np.int32, np.bool_, np.complex128)]
OTHER_DTYPES.append(np.dtype(object))
FORMS = ["array"] * 10 + ["other device", "list", "torch", "number", "none"]
# a backward's dout on the other device than its forward gets CuPy's (or the stand-in's) own
# TypeError: the caches of some ops hold no array to tell the device by
DOUT_FORMS = [f for f in FORMS if f != "other device"]


# -- drawing inputs -----------------------------------------------------------------------------


def values(shape: tuple[int, ...], dtype: np.dtype, seed: int, specials: bool,
           low: int = -3, high: int = 4) -> np.ndarray:
    """Standard normal floats (with NaN, ±inf sprinkled in when ``specials``), integers in
    [low, high), booleans, complex numbers or Python objects, as NumPy."""
    g = np.random.default_rng(seed)
    if dtype.kind in "iu":
        return np.asarray(g.integers(low, high, size=shape), dtype=dtype)
    if dtype.kind == "b":
        return np.asarray(g.random(shape) < 0.7)
    if dtype.kind == "O":
        return np.full(shape, 1.0, dtype=object)
    a = g.standard_normal(shape)
    if specials and a.size and g.random() < 0.3:
        hits = g.random(shape) < 0.3
        a[hits] = g.choice([np.nan, np.inf, -np.inf], size=int(hits.sum()))
    if dtype.kind == "c":
        return np.asarray(a + 1j * g.standard_normal(shape), dtype=dtype)
    return np.asarray(a, dtype=dtype)


@dataclass
class Drawer:
    """Draws the arguments of one call. ``good``: only inputs the op must take (the forward of a
    backward case); otherwise an argument is now and then something else."""

    draw: Callable[[Any], Any]
    backend: str  # "numpy" or "strict"
    dtype: np.dtype  # the float dtype of the case
    good: bool
    # the NumPy arrays behind what was drawn, for torch, by id of what the op gets
    host: dict[int, np.ndarray] = field(default_factory=dict)

    def bad(self, odds: int = 5) -> bool:
        return not self.good and self.draw(st.integers(0, odds - 1)) == 0

    def size(self, n: int) -> int:
        """``n``, or now and then another size (0 included)."""
        return self.draw(st.sampled_from([0, 1, n + 1, 3])) if self.bad() else n

    def shape(self, max_ndim: int = 3, min_ndim: int = 0) -> tuple[int, ...]:
        n = self.draw(st.integers(min_ndim, max_ndim))
        return tuple(self.draw(st.sampled_from([0, 1, 2, 3, 4, 2, 3])) for _ in range(n))

    def seed(self) -> int:
        return self.draw(st.integers(0, 2**32 - 1))

    def on(self, a: np.ndarray, backend: str | None = None) -> Any:
        backend = backend or self.backend
        out = strict_mod.asarray(a) if backend == "strict" else a.copy()
        self.host[id(out)] = a
        return out

    def array(self, shape: tuple[int, ...], kind: str = "float", specials: bool = True,
              low: int = 0, high: int = 4, forms: list[str] = FORMS,
              reshape: bool = True) -> Any:
        """An array argument: floats of the case's dtype, int64 in [low, high) or bool; now
        and then another shape (unless not ``reshape``), dtype, range or container."""
        dtype = {"float": self.dtype, "int": np.dtype(np.int64), "bool": np.dtype(bool)}[kind]
        if reshape and self.bad():
            shape = self.draw(st.sampled_from([(), shape[1:], (*shape, 2), (0, *shape[1:])]))
        if self.bad():
            dtype = self.draw(st.sampled_from([*FLOATS, *OTHER_DTYPES]))
        if kind == "int" and self.bad():
            low, high = low - 2, high + 2
        a = values(shape, dtype, self.seed(), specials, low, high)
        form = self.draw(st.sampled_from(forms)) if not self.good else "array"
        if form == "other device":
            return self.on(a, "numpy" if self.backend == "strict" else "strict")
        if form == "list":
            return a.tolist()
        if form == "torch" and dtype.kind != "O":
            return torch.from_numpy(a)
        if form == "number":
            return a.reshape(-1)[0].item() if a.size and dtype.kind != "O" else 1.0
        if form == "none":
            return None
        return self.on(a)

    def pick(self, good: list[Any], bad: list[Any]) -> Any:
        """One of ``good``, or now and then one of ``bad``."""
        return self.draw(st.sampled_from(bad if self.bad(6) else good))

    def to_torch(self, a: Any, grad: bool = False) -> Any:
        """What torch gets for an argument: the same values as a tensor (a leaf that requires
        grad where ``grad``), or the list, number, tensor or None as it is."""
        if id(a) in self.host:
            t = torch.from_numpy(np.array(self.host[id(a)]))
            return t.requires_grad_(True) if grad and t.dtype.is_floating_point else t
        return a


@dataclass
class Case:
    call: Callable[[], Any]  # our op; returns an array or a tuple of them (None allowed)
    reference: Callable[[], Any]  # torch's result, the same structure
    floors: Callable[[], list[float]] | None = None  # per result, for what cancels by design


def as_list(x: Any) -> list[Any]:
    return list(x) if isinstance(x, (tuple, list)) else [x]


# -- the ops: inputs and torch's answer -----------------------------------------------------
#
# Each entry draws the inputs of a forward (or of a function without a backward) and says what
# torch computes from them; ``grads`` names the inputs whose gradients the backward returns.


@dataclass
class Op:
    names: tuple[str, ...]  # the words that name an argument in our messages
    inputs: Callable[[Drawer], dict[str, Any]]
    torch_fn: Callable[..., Any]  # (drawer, **inputs as torch gets them) -> tensor
    ours: Callable[..., Any]
    grads: tuple[str, ...] = ()
    backward: Callable[..., Any] | None = None
    floors: Callable[..., list[float]] | None = None  # (inputs as NumPy, dout) -> floors
    # (inputs as NumPy) -> the forward's floor, for an output that cancels by design
    out_floor: Callable[[dict[str, np.ndarray]], float] | None = None
    # (inputs as NumPy, torch's gradients, dout) -> the gradients nanotf promises, where they
    # differ; called before torch's backward (with no gradients) where ``any_length``
    adjust: Callable[..., list[Any]] | None = None
    any_length: bool = False  # the backward takes a dout of any (B, T): add_positional


def linear_inputs(d: Drawer) -> dict[str, Any]:
    lead = d.shape(2)
    n_in, n_out = d.draw(st.integers(0, 4)), d.draw(st.integers(0, 4))
    bias = d.array((d.size(n_out),)) if d.draw(st.booleans()) else None
    return {"x": d.array((*lead, d.size(n_in))), "weight": d.array((n_out, n_in)), "bias": bias}


def embedding_inputs(d: Drawer) -> dict[str, Any]:
    n_vocab, n_dim = d.draw(st.integers(1 if d.good else 0, 5)), d.draw(st.integers(0, 3))
    ids = d.array(d.shape(3), "int", high=max(n_vocab, 1))
    pad = d.pick([None, 0, n_vocab - 1, -1], [n_vocab, 1.5, "0", True])
    return {"ids": ids, "weight": d.array((n_vocab, n_dim)), "padding_idx": pad}


def embedding_torch(ids: Any, weight: Any, padding_idx: Any) -> Any:
    if padding_idx is not None and weight.shape[0] == 0:
        padding_idx = None  # torch asserts on a padding index into an empty table
    return tF.embedding(ids, weight, padding_idx=padding_idx)


def activation_inputs(d: Drawer) -> dict[str, Any]:
    return {"x": d.array(d.shape(4))}


def gelu_inputs(d: Drawer) -> dict[str, Any]:
    return {"x": d.array(d.shape(4)),
            "approximate": d.pick(["none", "tanh"], ["erf", None, 1, "sigmoid"])}


def gelu_torch(x: Any, approximate: Any) -> Any:
    """torch's float32 erf GELU gives NaN at +inf (its float64 kernel, and the math, +inf): the
    reference runs in float64 and rounds to the input's dtype."""
    if isinstance(x, torch.Tensor) and x.dtype == torch.float32:
        return tF.gelu(x.double(), approximate=approximate).float()
    return tF.gelu(x, approximate=approximate)


def bias_gelu_inputs(d: Drawer) -> dict[str, Any]:
    lead = d.shape(3)
    c = d.draw(st.integers(0 if not d.good else 1, 4))  # the bias axis must not be empty
    # no bad ``approximate``: bias_gelu_forward refuses it with gelu_forward's message, "gelu
    # approximate must be 'none' or 'tanh', got 'erf'", which does not name bias_gelu (a defect
    # of the op, reported; test_bias_gelu_and_masked_softmax_errors has the other bad inputs)
    return {"x": d.array((*lead, c)), "bias": d.array((d.size(c),)),
            "approximate": d.draw(st.sampled_from(["none", "tanh"]))}


def bias_gelu_torch(x: Any, bias: Any, approximate: str) -> Any:
    """``gelu(x + bias)``, the GELU in float64 for float32 inputs (``gelu_torch``). In float32,
    ``x + bias`` is summed in float64 and rounded (the float32 sum, exactly), so that the bias
    gradient, the sum of dz over every leading axis, is summed in float64 too: torch's float32
    reduction there is less exact than NumPy's pairwise sum (1.2e-5 relative in a sum that
    cancels 28-fold)."""
    if x.dtype == torch.float32:
        return gelu_torch((x.double() + bias.double()).float(), approximate)
    return gelu_torch(x + bias, approximate)


def _negative_z(inputs: dict[str, np.ndarray]) -> np.ndarray:
    """Where ``z = x + bias`` is finite and negative: there GELU's terms cancel."""
    z = inputs["x"].astype(np.float64) + inputs["bias"]
    return np.isfinite(z) & (z < 0)


def bias_gelu_out_floor(inputs: dict[str, np.ndarray]) -> float:
    """``gelu(z) = ½ z + ½ z · erf(z / √2)`` (tanh: the same with tanh): for z < 0 the two terms
    cancel by design, to nearly 0 in the tail, so its round-off is relative to ½ |z| (torch's
    float32 GELU has the same: 1.6e-5 relative at z = -3.15 in a one-entry output)."""
    z = inputs["x"].astype(np.float64) + inputs["bias"]
    return 0.5 * float(np.abs(z[_negative_z(inputs)]).max(initial=0.0))


def bias_gelu_floors(inputs: dict[str, np.ndarray], dout: np.ndarray) -> list[float]:
    """``dx = dout · (Φ(z) + z φ(z))``, ``Φ = ½ (1 + erf)``: for z < 0 its terms cancel by
    design (in the tail, and to 0 at the GELU's minimum, z ≈ -0.75), so its round-off is
    relative to ½ |dout| there. dbias sums dx over the rows: the same terms, the same floor."""
    floor = 0.5 * float(np.abs(dout[np.broadcast_to(_negative_z(inputs), dout.shape)])
                        .max(initial=0.0))
    return [floor, floor]


def bias_relu_inputs(d: Drawer) -> dict[str, Any]:
    lead = d.shape(3)
    c = d.draw(st.integers(0 if not d.good else 1, 4))  # the bias axis must not be empty
    return {"x": d.array((*lead, c)), "bias": d.array((d.size(c),))}


def bias_relu_torch(x: Any, bias: Any) -> Any:
    """``relu(x + bias)``; in float32 ``x + bias`` is summed in float64 and rounded (the
    float32 sum, exactly), so that the bias gradient is summed in float64, as for bias_gelu."""
    if x.dtype == torch.float32:
        return torch.relu((x.double() + bias.double()).float())
    return torch.relu(x + bias)


def dropout_inputs(d: Drawer) -> dict[str, Any]:
    shape = d.shape(3)
    p = d.pick([0.0, 0.25, 0.5, 1.0], [-0.1, 1.5, math.nan, "0.5", None])
    given_mask = d.draw(st.booleans())
    return {"x": d.array(shape), "p": p, "training": d.draw(st.booleans()),
            "seed": d.seed(),
            "mask": d.array(shape, "bool", specials=False) if given_mask else None}


def dropout_ours(x: Any, p: Any, training: bool, seed: int, mask: Any) -> Any:
    gen = (strict_mod.strict if isinstance(x, strict_mod.StrictArray) else np).random
    return F.dropout_forward(x, p, training, rng=gen.default_rng(seed), mask=mask)


def dropout_torch(d: Drawer, x: Any, p: Any, training: bool, seed: int, mask: Any) -> Any:
    """torch's dropout cannot take a mask or our generator: its definition, x · keep / (1 - p)."""
    if not training or p == 0.0:
        return x * 1
    if mask is None:
        dtype = {torch.float32: np.float32, torch.float64: np.float64}[x.dtype]
        u = np.random.default_rng(seed).random(tuple(x.shape), dtype=dtype)
        mask = torch.from_numpy(np.asarray(u >= p))
    return x * 0 if p == 1.0 else x * mask / (1.0 - p)


def softmax_inputs(d: Drawer) -> dict[str, Any]:
    shape = d.shape(3, min_ndim=1 if d.good else 0)
    axes = list(range(-len(shape), len(shape))) or [-1]
    axis = d.pick(axes, [len(shape), -len(shape) - 1, 1.5, None, True])
    if d.good:  # the softmax axis must not be empty
        shape = tuple(max(n, 1) if i == axis % len(shape) else n for i, n in enumerate(shape))
    return {"x": d.array(shape), "axis": axis}


def masked_softmax_inputs(d: Drawer) -> dict[str, Any]:
    """x: (..., T), e.g. attention's scores; a mask of x's shape with some axes 1 and some
    leading axes dropped (any shape that broadcasts to x), or None.

    Two kinds of input are left out, each for a defect of the op (reported):

    * a mask that does not broadcast to x (also where x itself has another shape than drawn):
      the mask is drawn for x's actual shape, never reshaped
      (test_bias_gelu_and_masked_softmax_errors checks those messages);
    * NaN and ±inf in x where a mask is given (test_masked_softmax_keeps_nan_out_of_masked_entries
      checks the masked entries stay zero): a row whose kept entries are all -inf gives zeros
      where some entry is masked (its masked entries at the dtype's minimum win the max) but
      NaN where none is, as softmax does.
    """
    shape = d.shape(4, min_ndim=1 if d.good else 0)
    if d.good:  # the softmax axis must not be empty
        shape = (*shape[:-1], max(shape[-1], 1))
    with_mask = d.draw(st.booleans())
    x = d.array(shape, specials=not with_mask)
    mask = None
    if with_mask:
        x_shape = tuple(np.shape(x))
        m_shape = tuple(n if d.draw(st.booleans()) else 1 for n in x_shape)
        m_shape = m_shape[d.draw(st.integers(0, len(m_shape))):]
        mask = d.array(m_shape, "bool", specials=False, reshape=False)
    scale = d.pick([1.0, 0.5, 2.0, 1 / math.sqrt(3), -1.0, 0.0], ["0.5", None, 1j, True])
    return {"x": x, "mask": mask, "scale": scale}


def masked_softmax_torch(x: Any, mask: Any, scale: Any) -> Any:
    """The docstring's rule: the softmax of ``x · scale`` over the kept entries, zero at the
    masked ones; a row with no entry kept is all zeros (torch's softmax of a row of -inf is
    NaN, the outer ``where`` puts the zeros in and lets no gradient through them)."""
    s = x * scale
    if mask is None:
        return torch.softmax(s, dim=-1)
    kept = torch.softmax(torch.where(mask, s, torch.full((), -math.inf, dtype=s.dtype)), dim=-1)
    return torch.where(mask, kept, torch.zeros((), dtype=s.dtype))


def masked_softmax_floors(inputs: dict[str, np.ndarray], dout: np.ndarray) -> list[float]:
    """dx = scale · P ⊙ (dout - Σ_j dout_j P_j) cancels by design (a row with one entry kept
    has dx = 0): its scale is max P · max |dout| · |scale|, as for softmax."""
    mask = inputs["mask"]
    p = masked_softmax_torch(torch.from_numpy(inputs["x"].astype(np.float64)),
                             None if mask is None else torch.from_numpy(mask), inputs["scale"])
    return [terms_size(np.nan_to_num(p.numpy()), dout, inputs["scale"])]


def cross_entropy_inputs(d: Drawer) -> dict[str, Any]:
    lead = d.shape(2)
    n_classes = d.draw(st.integers(0 if not d.good else 1, 4))
    ignore = d.pick([-100, 0], [1.5, None])
    targets = values(lead, np.dtype(np.int64), d.seed(), False, 0, max(n_classes, 1))
    flat = targets.reshape(-1)
    flat[np.random.default_rng(d.seed()).random(flat.size) < 0.3] = (
        ignore if isinstance(ignore, int) else -100
    )
    reduction = d.pick(["mean", "sum"], ["none", None, 2])
    if d.good and reduction == "mean" and flat.size and (flat == ignore).all():
        flat[0] = 1 if ignore == 0 and n_classes > 1 else 0
        if flat[0] == ignore:
            reduction = "sum"
    if d.good and reduction == "mean" and flat.size == 0:
        reduction = "sum"
    if d.bad():
        targets = values(d.shape(2), np.dtype(np.int64), d.seed(), False, -2, n_classes + 2)
    if d.bad():
        targets = d.array(targets.shape, "int", high=max(n_classes, 1))
    else:
        targets = d.on(targets)
    return {"logits": d.array((*lead, n_classes)), "targets": targets, "ignore_index": ignore,
            "label_smoothing": d.pick([0.0, 0.1, 1.0], [-0.5, 2.0, math.nan, "0.1"]),
            "reduction": reduction}


def cross_entropy_torch(logits: Any, targets: Any, ignore_index: Any, label_smoothing: Any,
                        reduction: Any) -> Any:
    """torch puts the classes on axis 1; ours are last: compare on (N, V) rows. (torch takes
    int64 targets only, nanotf any integers.)"""
    n_classes = logits.shape[-1]
    return tF.cross_entropy(logits.reshape(-1, n_classes), targets.reshape(-1).long(),
                            ignore_index=ignore_index, label_smoothing=label_smoothing,
                            reduction=reduction)


def cross_entropy_adjust(inputs: dict[str, Any], grads: list[Any], dout: Any) -> list[Any]:
    """An ignored row gets exactly 0 (torch: NaN where its logits hold NaN or inf, from 0 · NaN
    in its log-softmax backward; the loss does not depend on that row at all)."""
    ignored = torch.from_numpy(np.asarray(inputs["targets"] == inputs["ignore_index"]))[..., None]
    return [torch.where(ignored, torch.zeros((), dtype=grads[0].dtype), grads[0])]


def layernorm_inputs(d: Drawer) -> dict[str, Any]:
    lead = d.shape(2)
    c = d.draw(st.integers(0 if not d.good else 1, 4))
    # γ and β finite: with an infinite γ every dx is an inf - inf, whose NaN or inf depends on
    # the order of the arithmetic, torch's as right as ours
    return {"x": d.array((*lead, c)), "gamma": d.array((d.size(c),), specials=False),
            "beta": d.array((c,), specials=False), "eps": d.pick([1e-5, 1e-3], ["1e-5", None])}


def layernorm_floors(inputs: dict[str, np.ndarray], dout: np.ndarray) -> list[float]:
    """dx cancels by design (test_layernorm.floors): its scale is max |dout γ| · rstd. For a
    width of 1, x̂ = x - mean(x) = 0 and so dγ = Σ dout x̂ = 0 by design, where torch returns
    round-off of the terms dout · x · rstd."""
    x = np.nan_to_num(inputs["x"].astype(np.float64), posinf=0.0, neginf=0.0)
    rstd = 1.0 / np.sqrt(x.var(axis=-1, keepdims=True) + inputs["eps"])
    g = np.abs(dout.astype(np.float64) * inputs["gamma"]).max(axis=-1, keepdims=True)
    dgamma = terms_size(dout, x, rstd) if x.shape[-1] == 1 else 0.0
    return [float((g * rstd).max(initial=0.0)), dgamma, 0.0]


def attention_inputs(d: Drawer) -> dict[str, Any]:
    b, h, t_q, t_k, dim, d_v = (d.draw(st.integers(0 if i in (0, 2) else 1, 3)) for i in range(6))
    if not d.good:
        t_k, dim = d.size(t_k), d.size(dim)
    mask_shape = d.draw(st.sampled_from([None, (b, 1, 1, t_k), (b, h, t_q, t_k), (t_q, t_k)]))
    mask = None if mask_shape is None else d.array(mask_shape, "bool", specials=False)
    return {
        "q": d.array((b, h, t_q, dim), specials=False),
        "k": d.array((b, h, t_k, d.size(dim)), specials=False),
        "v": d.array((b, h, t_k, d_v), specials=False),
        "mask": mask,
        "causal": d.draw(st.booleans()),
        "dropout_p": d.pick([0.0, 0.3], [1.5, -1.0, "0"]),
        "scale": d.pick([None, None, 0.5], ["x", 1j]),
    }


def attention_torch(q: Any, k: Any, v: Any, mask: Any, causal: bool, dropout_p: Any,
                    scale: Any) -> Any:
    """torch's SDPA with the dense mask (bottom-right causal); a row that may attend to nothing
    gives zeros in nanotf: torch gets a mask that lets such a row see every key, and its output
    row is then replaced by zeros (so nothing flows back through it either)."""
    t_q, t_k = q.shape[2], k.shape[2]
    allowed = torch.ones(q.shape[0], q.shape[1], t_q, t_k, dtype=torch.bool)
    if mask is not None:
        allowed = allowed & mask
    if causal:
        allowed = allowed & torch.ones(t_q, t_k, dtype=torch.bool).tril(diagonal=t_k - t_q)
    any_allowed = allowed.any(dim=-1, keepdim=True)
    safe = allowed | ~any_allowed
    out = tF.scaled_dot_product_attention(q, k, v, attn_mask=safe, scale=scale)
    return torch.where(any_allowed, out, torch.zeros((), dtype=out.dtype))


def attention_floors(inputs: dict[str, np.ndarray], dout: np.ndarray) -> list[float]:
    """dq and dk vanish by design where every query sees one key (test_attention.floors)."""
    q, k, v = (inputs[n].astype(np.float64) for n in "qkv")
    scale = 1.0 / math.sqrt(q.shape[-1]) if inputs["scale"] is None else inputs["scale"]
    dp = dout.astype(np.float64) @ v.swapaxes(-1, -2)
    return [terms_size(dp, k, scale), terms_size(dp, q, scale), 0.0]


def softmax_floors(inputs: dict[str, np.ndarray], dout: np.ndarray) -> list[float]:
    y = torch.softmax(torch.from_numpy(inputs["x"].astype(np.float64)), dim=inputs["axis"])
    return [terms_size(np.nan_to_num(y.numpy()), dout)]


def log_softmax_floors(inputs: dict[str, np.ndarray], dout: np.ndarray) -> list[float]:
    y = torch.softmax(torch.from_numpy(inputs["x"].astype(np.float64)), dim=inputs["axis"])
    sums = dout.astype(np.float64).sum(axis=inputs["axis"], keepdims=True)
    return [max(terms_size(dout), terms_size(np.nan_to_num(y.numpy()), sums))]


def positional_inputs(d: Drawer) -> dict[str, Any]:
    b, t, c = (d.draw(st.integers(0, 3)) for _ in range(3))
    max_len = d.draw(st.integers(max(t, 1), 5))
    table = np.asarray(F.sinusoidal_encoding(max_len, max(c, 1), dtype=d.dtype))[:, :c]
    table = d.on(np.ascontiguousarray(table)) if not d.bad() else d.array((d.size(max_len), c))
    return {"x": d.array((b, d.size(t), c)), "table": table,
            "scale": d.pick([1.0, 2.0, math.sqrt(3)], ["2", None])}


def positional_torch(x: Any, table: Any, scale: Any) -> Any:
    return x * scale + table[: x.shape[1]].to(x.dtype)


def positional_adjust(inputs: dict[str, Any], grads: list[Any], dout: np.ndarray) -> list[Any]:
    """The backward takes a ``dout`` of any batch size and length (B', T', C): the table is a
    constant, so it is the gradient of ``x' · scale + PE[:T']`` for an x' of that shape, which
    lets the seq2seq model run one positional encoding for its source and its target."""
    return [torch.from_numpy(np.array(dout)) * inputs["scale"]]


OPS: dict[str, Op] = {
    "linear": Op(("x", "input", "weight", "bias"), linear_inputs,
                 lambda d, **a: tF.linear(**a), F.linear_forward,
                 ("x", "weight", "bias"), F.linear_backward),
    "embedding": Op(("ids", "weight", "padding_idx"), embedding_inputs,
                    lambda d, **a: embedding_torch(**a), F.embedding_forward,
                    ("weight",), F.embedding_backward),
    "relu": Op(("input", "x"), activation_inputs, lambda d, x: torch.relu(x), F.relu_forward,
               ("x",), F.relu_backward),
    "gelu": Op(("input", "x", "approximate"), gelu_inputs, lambda d, **a: gelu_torch(**a),
               F.gelu_forward, ("x",), F.gelu_backward),
    "bias_gelu": Op(("input", "x", "bias"), bias_gelu_inputs,
                    lambda d, **a: bias_gelu_torch(**a), F.bias_gelu_forward,
                    ("x", "bias"), F.bias_gelu_backward, bias_gelu_floors,
                    out_floor=bias_gelu_out_floor),
    "bias_relu": Op(("input", "x", "bias"), bias_relu_inputs,
                    lambda d, **a: bias_relu_torch(**a), F.bias_relu_forward,
                    ("x", "bias"), F.bias_relu_backward),
    "dropout": Op(("input", "probability", "mask", "rng"), dropout_inputs, dropout_torch,
                  dropout_ours, ("x",), F.dropout_backward),
    "softmax": Op(("input", "axis"), softmax_inputs,
                  lambda d, x, axis: torch.softmax(x, dim=axis), F.softmax_forward,
                  ("x",), F.softmax_backward, softmax_floors),
    "log_softmax": Op(("input", "axis"), softmax_inputs,
                      lambda d, x, axis: torch.log_softmax(x, dim=axis), F.log_softmax_forward,
                      ("x",), F.log_softmax_backward, log_softmax_floors),
    # "axis": the softmax's own message for a 0-d input, "masked_softmax axis -1 needs ..."
    "masked_softmax": Op(("input", "mask", "scale", "axis"), masked_softmax_inputs,
                         lambda d, **a: masked_softmax_torch(**a), F.masked_softmax_forward,
                         ("x",), F.masked_softmax_backward, masked_softmax_floors),
    "cross_entropy": Op(("logits", "targets", "ignore_index", "label_smoothing", "reduction"),
                        cross_entropy_inputs, lambda d, **a: cross_entropy_torch(**a),
                        F.cross_entropy_forward, ("logits",), F.cross_entropy_backward,
                        adjust=cross_entropy_adjust),
    "layernorm": Op(("input", "gamma", "beta", "eps"), layernorm_inputs,
                    lambda d, x, gamma, beta, eps: tF.layer_norm(x, gamma.shape, gamma, beta, eps),
                    F.layernorm_forward, ("x", "gamma", "beta"), F.layernorm_backward,
                    layernorm_floors),
    "attention": Op(("q", "k", "v", "mask", "scale", "dropout_p"), attention_inputs,
                    lambda d, **a: attention_torch(**a),
                    lambda **a: F.attention_forward(**a), ("q", "k", "v"), F.attention_backward,
                    attention_floors),
    "add_positional": Op(("input", "table", "scale"), positional_inputs,
                         lambda d, **a: positional_torch(**a), F.add_positional_forward,
                         ("x",), F.add_positional_backward, adjust=positional_adjust,
                         any_length=True),
}


def split_heads_case(d: Drawer) -> Case:
    h = d.draw(st.integers(1, 3))
    x = d.array((d.draw(st.integers(0, 2)), d.draw(st.integers(0, 3)), d.size(2 * h)))
    n_heads = d.pick([h], [0, -1, 1.5, None, np.int64(2)])

    def reference() -> Any:
        b, t, c = x.shape
        return d.to_torch(x).reshape(b, t, n_heads, c // n_heads).transpose(1, 2)

    return Case(lambda: F.split_heads(x, n_heads), reference)


def merge_heads_case(d: Drawer) -> Case:
    x = d.array(tuple(d.draw(st.integers(0, 3)) for _ in range(4)))

    def reference() -> Any:
        b, h, t, dim = x.shape
        return d.to_torch(x).transpose(1, 2).reshape(b, t, h * dim)

    return Case(lambda: F.merge_heads(x), reference)


def _packing(d: Drawer) -> tuple[Any, np.ndarray]:
    """A good packing on the case's backend, and its (B, T) mask on the host."""
    shape = (d.draw(st.integers(0, 3)), d.draw(st.integers(0, 4)))
    keep = values(shape, np.dtype(bool), d.seed(), False)
    mask = strict_mod.asarray(keep) if d.backend == "strict" else keep
    return F.token_packing(mask), keep


def token_packing_case(d: Drawer) -> Case:
    mask = d.array((d.draw(st.integers(0, 3)), d.draw(st.integers(0, 4))),
                   d.draw(st.sampled_from(["bool", "int"])), specials=False, high=2)

    def call() -> Any:
        packing = F.token_packing(mask)
        return packing.index, packing.mask

    def reference() -> Any:
        real = d.to_torch(mask) != 0
        return torch.flatten(real).nonzero().reshape(-1), real

    return Case(call, reference)


def pack_tokens_case(d: Drawer) -> Case:
    packing, keep = _packing(d)
    b, t = keep.shape
    x = d.array((b, t, d.draw(st.integers(0, 3))))
    packing = d.pick([packing], [None, keep, (b, t)])

    def reference() -> Any:
        flat = d.to_torch(x).reshape(b * t, *x.shape[2:])
        return flat[torch.from_numpy(np.flatnonzero(keep))]

    return Case(lambda: F.pack_tokens(x, packing), reference)


def unpack_tokens_case(d: Drawer) -> Case:
    packing, keep = _packing(d)
    b, t = keep.shape
    n = int(keep.sum())
    rows = d.array((n, d.draw(st.integers(0, 3))))
    packing = d.pick([packing], [None, keep, (b, t)])

    def reference() -> Any:
        r = d.to_torch(rows)
        out = torch.zeros((b * t, *r.shape[1:]), dtype=r.dtype)
        out[torch.from_numpy(np.flatnonzero(keep))] = r
        return out.reshape(b, t, *r.shape[1:])

    return Case(lambda: F.unpack_tokens(rows, packing), reference)


def padding_mask_case(d: Drawer) -> Case:
    keep = d.array((d.draw(st.integers(0, 3)), d.draw(st.integers(0, 4))),
                   d.draw(st.sampled_from(["bool", "int"])), specials=False, high=2)
    return Case(lambda: F.padding_mask(keep), lambda: (d.to_torch(keep) != 0)[:, None, None, :])


def causal_mask_case(d: Drawer) -> Case:
    t_q = d.pick(list(range(5)), [-1, 2.0, None, "3"])
    t_k = d.pick([None, 0, 1, 3, 5], [-2, 1.5])
    xp = strict_mod.strict if d.backend == "strict" else d.pick([None, np], [None])

    def reference() -> Any:
        k = t_q if t_k is None else t_k
        return torch.ones(t_q, k, dtype=torch.bool).tril(diagonal=k - t_q)

    return Case(lambda: F.causal_mask(t_q, t_k, xp), reference)


def sinusoidal_case(d: Drawer) -> Case:
    max_len = d.pick([1, 2, 5], [0, -1, 2.5, None])
    d_model = d.pick([1, 2, 3, 6], [0, 1.0, "4"])
    base = d.pick([10000.0, 100.0], [0.0, -1.0, math.inf, "1e4"])
    dtype = d.pick(FLOATS, [np.float16, np.int64, "complex64", "nonsense"])
    xp = strict_mod.strict if d.backend == "strict" else np

    def reference() -> Any:
        pos = torch.arange(max_len, dtype=torch.float64)[:, None]
        inv_freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float64)
                             * (-math.log(base) / d_model))
        pe = torch.zeros(max_len, d_model, dtype=torch.float64)
        pe[:, 0::2] = torch.sin(pos * inv_freq)
        pe[:, 1::2] = torch.cos(pos * inv_freq[: d_model // 2])
        return pe.to({np.dtype(np.float32): torch.float32,
                      np.dtype(np.float64): torch.float64}[np.dtype(dtype)])

    return Case(lambda: F.sinusoidal_encoding(max_len, d_model, base, dtype, xp), reference)


SINGLE: dict[str, tuple[tuple[str, ...], Callable[[Drawer], Case]]] = {
    "split_heads": (("input", "n_heads"), split_heads_case),
    "merge_heads": (("input",), merge_heads_case),
    "padding_mask": (("keep",), padding_mask_case),
    "token_packing": (("mask",), token_packing_case),
    "pack_tokens": (("input", "packing"), pack_tokens_case),
    "unpack_tokens": (("rows", "packing"), unpack_tokens_case),
    "causal_mask": (("t_q", "t_k"), causal_mask_case),
    "sinusoidal_encoding": (("max_len", "d_model", "base", "dtype"), sinusoidal_case),
}


def forward_case(op: Op, d: Drawer) -> Case:
    inputs = op.inputs(d)

    def reference() -> Any:
        return op.torch_fn(d, **{k: d.to_torch(v) for k, v in inputs.items()})

    def floors() -> list[float]:  # called only where the op took the inputs: arrays
        assert op.out_floor is not None
        return [op.out_floor({k: d.host.get(id(v), v) for k, v in inputs.items()})]

    return Case(lambda: op.ours(**inputs)[0], reference, floors if op.out_floor else None)


def backward_case(op: Op, d: Drawer, dout_drawer: Drawer) -> Case:
    """Good forward inputs; the ``dout`` of the backward now and then of another shape, dtype
    or container."""
    inputs = op.inputs(d)
    out, cache = op.ours(**inputs)
    host_out = np.asarray(nanotf.to_numpy(out))
    shape = host_out.shape
    if dout_drawer.bad(4):
        shape = dout_drawer.draw(st.sampled_from(
            [shape[1:], (*shape, 1), (1, *shape[1:]), (), (*shape[:-1], shape[-1] + 1)]
            if shape else [(1,), (2,)]))
    dout = dout_drawer.array(shape, specials=False, forms=DOUT_FORMS)

    host = {k: d.host.get(id(v), v) for k, v in inputs.items()}

    def reference() -> Any:
        if op.any_length and op.adjust and np.shape(dout) != np.shape(host_out):
            return op.adjust(host, [], d.host.get(id(dout), dout))
        args = {k: d.to_torch(v, grad=k in op.grads) for k, v in inputs.items()}
        t_out = op.torch_fn(d, **args)
        t_dout = d.to_torch(dout)
        if not isinstance(t_dout, torch.Tensor):  # a number as the loss's gradient
            t_dout = torch.tensor(t_dout, dtype=t_out.dtype)
        t_out.backward(t_dout)
        grads = [None if args[k] is None else args[k].grad for k in op.grads]
        return op.adjust(host, grads, d.host.get(id(dout), dout)) if op.adjust else grads

    def floors() -> list[float]:
        if op.floors is None:
            return []
        return op.floors(host, np.asarray(d.host.get(id(dout), dout), dtype=np.float64))

    return Case(lambda: as_list(op.backward(dout, cache)), reference, floors)


PUBLIC = sorted(F.__all__)


def case_for(name: str, draw: Callable[[Any], Any]) -> tuple[Case, str, tuple[str, ...]]:
    """The case of ``name`` and what our error messages must name: the op and an argument."""
    backend = draw(st.sampled_from(["numpy", "strict"]))
    dtype = draw(st.sampled_from(FLOATS))
    good = draw(st.integers(0, 2)) == 0  # a third of the cases: only inputs the op must take
    if name in SINGLE:
        names, build = SINGLE[name]
        return build(Drawer(draw, backend, dtype, good)), name, names
    stem = name.removesuffix("_forward").removesuffix("_backward")
    op = OPS[stem]
    if name.endswith("_forward"):
        return forward_case(op, Drawer(draw, backend, dtype, good)), stem, op.names
    d = Drawer(draw, backend, dtype, good=True)
    dout_drawer = Drawer(draw, backend, dtype, good, host=d.host)
    return backward_case(op, d, dout_drawer), name, ("dout", "dloss")


# -- judging the outcome ------------------------------------------------------------------------


def assert_ours(err: Exception, op: str, names: tuple[str, ...]) -> None:
    """An error of ours: not NumPy's, names the op and an argument, says what was given."""
    message = str(err)
    assert not isinstance(err, np.exceptions.AxisError), f"NumPy's AxisError: {message}"
    assert type(err).__module__ == "builtins", f"{type(err).__name__}: {message}"
    assert op in message, f"{type(err).__name__} does not name {op!r}: {message!r}"
    assert any(re.search(rf"\b{re.escape(n)}\b", message) for n in names), (
        f"{type(err).__name__} names none of the arguments {names}: {message!r}"
    )
    assert "got" in message, f"{type(err).__name__} does not say what was given: {message!r}"


def assert_like_torch(got: Any, want: Any, what: str, floor: float = 0.0) -> None:
    if want is None:
        assert got is None, f"{what}: nanotf returned an array, torch None"
        return
    w = want.detach().numpy() if isinstance(want, torch.Tensor) else np.asarray(want)
    assert got is not None, f"{what}: nanotf returned None"
    g = np.asarray(nanotf.to_numpy(got))
    assert g.shape == w.shape, f"{what}: shape {g.shape}, torch {w.shape}"
    assert g.dtype == w.dtype, f"{what}: dtype {g.dtype}, torch {w.dtype}"
    if g.dtype.kind not in "f" or g.dtype not in RTOL:  # reshapes and masks: exactly
        np.testing.assert_array_equal(g, w, err_msg=what)
        return
    nan_g, nan_w = np.isnan(g), np.isnan(w)
    assert (nan_g == nan_w).all(), f"{what}: NaN differs: {g} vs torch {w}"
    inf_w = np.isinf(w)
    assert (np.isinf(g) == inf_w).all() and (g[inf_w] == w[inf_w]).all(), f"{what}: ±inf differ"
    finite = np.isfinite(w)
    gf, wf = g[finite].astype(np.float64), w[finite].astype(np.float64)
    scale = max(np.abs(wf).max(initial=0.0), floor)
    diff = np.abs(gf - wf).max(initial=0.0)
    err = diff / scale if scale > 0 else (0.0 if diff == 0 else math.inf)
    tol = RTOL[g.dtype]
    assert err <= tol, f"{what}: relative error {err:.3g} > {tol:g} ({g.dtype}): {g} vs {w}"


@pytest.mark.parametrize("name", PUBLIC)
@SETTINGS
@given(data=st.data())
def test_any_input_gives_torchs_result_or_our_error(name: str, data: st.DataObject) -> None:
    with np.errstate(all="ignore"):  # NumPy's warnings on inf - inf & co: torch has NaN too
        case, op, names = case_for(name, data.draw)
        try:
            got = case.call()
        except (TypeError, ValueError, IndexError) as err:
            assert_ours(err, op, names)
            event(f"refused: {type(err).__name__}")
            return
        event("a result")
        try:
            want = case.reference()
        except Exception as err:  # noqa: BLE001 - any refusal of torch's
            raise AssertionError(f"nanotf returned a result where torch raises {err!r}") from err
        floors = case.floors() if case.floors else []
        got, want = as_list(got), as_list(want)
        assert len(got) == len(want)
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_like_torch(g, w, f"{name}[{i}]", floors[i] if i < len(floors) else 0.0)


def test_every_public_op_is_covered() -> None:
    stems = {n.removesuffix("_forward").removesuffix("_backward") for n in PUBLIC}
    assert stems == set(OPS) | set(SINGLE)


# -- the defects of the issue, one example each ---------------------------------------------------


def torch_cross_entropy(logits: np.ndarray, targets: np.ndarray, **kw: Any) -> tuple[Any, Any]:
    x = torch.from_numpy(logits.copy()).requires_grad_(True)
    loss = tF.cross_entropy(x, torch.from_numpy(targets), **kw)
    loss.backward()
    return loss.detach().numpy(), x.grad.numpy()


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_in_an_ignored_row_reaches_neither_loss_nor_gradient(smoothing, reduction, bad):
    """torch's loss ignores the row; nanotf used to return NaN (0 · NaN from a 0/1 mask)."""
    g = np.random.default_rng(0)
    logits = g.standard_normal((4, 5))
    targets = np.array([1, -100, 3, 0])
    logits[1] = bad
    logits[1, 2] = 0.0
    kw = {"label_smoothing": smoothing, "reduction": reduction}
    with np.errstate(all="raise"):  # the ignored row never enters the arithmetic: no warning
        loss, cache = F.cross_entropy_forward(logits, targets, **kw)
    dlogits = F.cross_entropy_backward(1.0, cache)
    want_loss, want_grad = torch_cross_entropy(logits, targets, **kw)
    assert np.isfinite(loss) and abs(loss - want_loss) <= 1e-12 * abs(want_loss)
    np.testing.assert_array_equal(dlogits[1], 0.0)  # exactly (torch: NaN, from 0 · NaN)
    keep = [0, 2, 3]
    assert np.isfinite(dlogits).all()
    np.testing.assert_allclose(dlogits[keep], want_grad[keep], rtol=0, atol=1e-15)


def test_an_ignored_nan_row_on_the_strict_stand_in():
    logits = np.ones((3, 4), np.float32)
    logits[0] = np.nan
    loss, cache = F.cross_entropy_forward(strict_mod.asarray(logits), strict_mod.asarray(
        np.array([-100, 1, 2])), label_smoothing=0.1)
    dlogits = F.cross_entropy_backward(1.0, cache).get()
    assert np.isfinite(loss.get()) and (dlogits[0] == 0).all() and np.isfinite(dlogits).all()


ZERO_DIM = np.array(1.5)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: F.softmax_forward(ZERO_DIM), "softmax axis -1 needs an input of at least 1 "
                                          "dimension, got a 0-d array"),
    (lambda: F.log_softmax_forward(ZERO_DIM), "log_softmax axis -1 needs an input of at least 1 "
                                              "dimension, got a 0-d array"),
    (lambda: F.cross_entropy_forward(ZERO_DIM, np.array(0)),
     "cross_entropy logits must have an axis -1 (the V classes), got shape ()"),
    (lambda: F.layernorm_forward(ZERO_DIM, np.ones(1), np.zeros(1)),
     "layernorm input must have an axis -1 (the C features it normalises over), got shape ()"),
    (lambda: F.linear_forward(ZERO_DIM, np.ones((2, 1))),
     "linear input x must have in_features=1 as its last dimension (weight shape (2, 1)), "
     "got x of shape ()"),
    (lambda: F.attention_forward(ZERO_DIM, ZERO_DIM, ZERO_DIM),
     "attention q must have 4 dimensions, got shape ()"),
    (lambda: F.add_positional_forward(ZERO_DIM, F.sinusoidal_encoding(2, 2)),
     "add_positional input must have 3 dimensions, got shape ()"),
    (lambda: F.split_heads(ZERO_DIM, 1), "split_heads input must have 3 dimensions, got shape ()"),
    (lambda: F.padding_mask(np.array(True)), "padding_mask keep must have 2 dimensions, got "
                                             "shape ()"),
    (lambda: F.embedding_forward(np.array(0), ZERO_DIM),
     "embedding weight must have 2 dimensions, got shape ()"),
])
def test_zero_dim_input_gets_our_error(call, message):
    """These used to end in a bare NumPy error (AxisError, "tuple index out of range")."""
    with pytest.raises((ValueError, TypeError), match=re.escape(message)):
        call()


@pytest.mark.parametrize("op", ["relu", "gelu", "gelu_tanh", "dropout"])
def test_zero_dim_input_of_an_elementwise_op_works_as_in_torch(op):
    """gelu used to fail with NumPy's "return arrays must be of ArrayType" (``out=`` on the
    NumPy scalar that 0-d arithmetic gives); elementwise ops take 0-d input, as torch."""
    x = np.array(0.7)
    forward, backward, ref = {
        "relu": (F.relu_forward, F.relu_backward, torch.relu),
        "gelu": (F.gelu_forward, F.gelu_backward, tF.gelu),
        "gelu_tanh": (lambda x: F.gelu_forward(x, "tanh"), F.gelu_backward,
                      lambda x: tF.gelu(x, approximate="tanh")),
        "dropout": (lambda x: F.dropout_forward(x, 0.5, mask=np.array(True)), F.dropout_backward,
                    lambda x: x * 2.0),
    }[op]
    out, cache = forward(x)
    dx = backward(np.array(1.0), cache)
    xt = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    yt = ref(xt)
    yt.backward()
    assert np.shape(out) == () and np.shape(dx) == ()
    assert abs(float(out) - yt.item()) <= 1e-15 and abs(float(dx) - xt.grad.item()) <= 1e-15


@pytest.mark.parametrize(("call", "message"), [
    (lambda: F.softmax_forward(np.ones((2, 0))),
     "softmax input must not be empty along axis -1 (the softmax axis), got shape (2, 0)"),
    (lambda: F.log_softmax_forward(np.ones((0, 2)), axis=0),
     "log_softmax input must not be empty along axis 0 (the softmax axis), got shape (0, 2)"),
    (lambda: F.cross_entropy_forward(np.ones((2, 0)), np.array([-100, -100]), reduction="sum"),
     "cross_entropy logits must not be empty along axis -1 (the V classes), got shape (2, 0)"),
    (lambda: F.layernorm_forward(np.ones((2, 0)), np.ones(0), np.ones(0)),
     "layernorm input must not be empty along axis -1 (the C features it normalises over), got "
     "shape (2, 0)"),
    (lambda: F.attention_forward(np.ones((1, 1, 2, 4)), np.ones((1, 1, 0, 4)),
                                 np.ones((1, 1, 0, 4))),
     "attention k must not be empty along axis 2 (Tk, the keys), got shape (1, 1, 0, 4)"),
    (lambda: F.attention_forward(np.ones((1, 1, 2, 0)), np.ones((1, 1, 3, 0)),
                                 np.ones((1, 1, 3, 4))),
     "attention q must not be empty along axis 3 (D, which sets the default scale 1/√D), got "
     "shape (1, 1, 2, 0)"),
])
def test_an_empty_axis_that_is_reduced_gets_our_error(call, message):
    """A max or mean over no entries is undefined: these used to end in NumPy's "zero-size array
    to reduction operation maximum which has no identity" (or NaN and a warning)."""
    with pytest.raises(ValueError, match=re.escape(message)):
        call()


@pytest.mark.parametrize(("n_in", "n_out", "lead"), [(0, 3, (2,)), (4, 0, (2,)), (0, 0, (2, 3)),
                                                     (3, 2, (0,)), (3, 2, (2, 0))])
def test_linear_with_empty_sizes_works_as_in_torch(n_in, n_out, lead):
    """``in_features=0`` used to fail in reshape(-1, 0); torch gives out = bias (a sum over no
    inputs is 0) and no rows give no rows."""
    g = np.random.default_rng(0)
    x, w, b = (g.standard_normal(s) for s in ((*lead, n_in), (n_out, n_in), (n_out,)))
    dout = g.standard_normal((*lead, n_out))
    out, cache = F.linear_forward(x, w, b)
    grads = F.linear_backward(dout, cache)
    xt, wt, bt = (torch.from_numpy(a.copy()).requires_grad_(True) for a in (x, w, b))
    yt = tF.linear(xt, wt, bt)
    yt.backward(torch.from_numpy(dout))
    for got, want in zip((out, *grads), (yt, xt.grad, wt.grad, bt.grad), strict=True):
        want = want.detach().numpy()
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)


ONE = np.ones((1, 1, 1, 1))


@pytest.mark.parametrize("call", [
    lambda c: F.relu_forward(c([1.0, -1.0])),
    lambda c: F.gelu_forward(c([1.0])),
    lambda c: F.dropout_forward(c([1.0]), 0.5),
    lambda c: F.softmax_forward(c([[1.0, 2.0]])),
    lambda c: F.log_softmax_forward(c([[1.0, 2.0]])),
    lambda c: F.layernorm_forward(c([[1.0, 2.0]]), np.ones(2), np.zeros(2)),
    lambda c: F.layernorm_forward(np.ones((1, 2)), c([1.0, 1.0]), np.zeros(2)),
    lambda c: F.linear_forward(c([[1.0]]), np.ones((1, 1))),
    lambda c: F.linear_forward(np.ones((1, 1)), c([[1.0]])),
    lambda c: F.embedding_forward(c([0, 1]), np.ones((2, 2))),
    lambda c: F.embedding_forward(np.array([0, 1]), c([[1.0, 2.0], [3.0, 4.0]])),
    lambda c: F.cross_entropy_forward(np.ones((2, 3)), c([0, 1])),
    lambda c: F.cross_entropy_forward(c([[1.0, 2.0]]), np.array([0])),
    lambda c: F.attention_forward(ONE, c([[[[1.0]]]]), ONE),
    lambda c: F.attention_forward(ONE, ONE, ONE, mask=c([[[[True]]]])),
    lambda c: F.add_positional_forward(np.ones((1, 1, 2)), c([[0.0, 1.0]])),
    lambda c: F.split_heads(c([[[1.0, 2.0]]]), 1),
    lambda c: F.merge_heads(c([[[[1.0]]]])),
    lambda c: F.padding_mask(c([[1, 0]])),
    lambda c: F.dropout_forward(np.ones(2), 0.5, mask=c([True, False])),
    lambda c: F.bias_gelu_forward(c([[1.0, 2.0]]), np.ones(2)),
    lambda c: F.bias_gelu_forward(np.ones((1, 2)), c([1.0, 2.0])),
    lambda c: F.bias_relu_forward(c([[1.0, 2.0]]), np.ones(2)),
    lambda c: F.bias_relu_forward(np.ones((1, 2)), c([1.0, 2.0])),
    lambda c: F.masked_softmax_forward(c([[1.0, 2.0]])),
    lambda c: F.masked_softmax_forward(np.ones((1, 2)), c([[True, False]])),
])
@pytest.mark.parametrize("container", ["list", "torch.Tensor"])
def test_lists_and_torch_tensors_get_our_error(call, container):
    """These used to raise AttributeError ('list' object has no attribute 'dtype') or NumPy's
    "Cannot interpret 'torch.float32' as a data type"; now a TypeError that names the op and
    the argument and says what it got."""
    convert = (lambda a: a) if container == "list" else torch.tensor
    with pytest.raises(TypeError, match=rf"^\w+ \w+( \w+)? must be .*, got {container}\b"):
        call(convert)


def test_a_torch_tensor_gets_a_hint():
    with pytest.raises(TypeError, match=r"split_heads input must be a NumPy or CuPy array, got "
                                        r"torch.Tensor \(convert it with .numpy\(\)\)"):
        F.split_heads(torch.ones(1, 2, 2), 1)


@pytest.mark.parametrize("mask_shape", [(2, 1, 1, 3), (2, 4, 0, 3), (1, 3)])
def test_masks_fit_zero_length_query_sequences(mask_shape):
    """With no queries (Tq = 0), a padding mask (B, 1, 1, Tk) used to be refused as "does not
    broadcast" (a size 1 was taken to stretch to max(1, 0) = 1); torch gives an empty result."""
    g = np.random.default_rng(0)
    q, k, v = g.standard_normal((2, 4, 0, 5)), g.standard_normal((2, 4, 3, 5)), g.standard_normal(
        (2, 4, 3, 2))
    mask = np.ones(mask_shape, bool)
    out, cache = F.attention_forward(q, k, v, mask=mask, causal=True)
    dq, dk, dv = F.attention_backward(np.ones((2, 4, 0, 2)), cache)
    want = tF.scaled_dot_product_attention(*(torch.from_numpy(a) for a in (q, k, v)),
                                           attn_mask=torch.from_numpy(mask))
    assert out.shape == tuple(want.shape) == (2, 4, 0, 2)
    assert dq.shape == (2, 4, 0, 5) and (dk == 0).all() and (dv == 0).all()


def test_broadcast_shape_stretches_one_to_zero():
    from nanotf.functional._checks import broadcast_shape

    assert broadcast_shape((2, 1, 1, 3), (2, 4, 0, 3)) == (2, 4, 0, 3)
    assert broadcast_shape((0,), (1,)) == (0,)
    assert broadcast_shape((2,), (0,)) is None


@pytest.mark.parametrize(("call", "torch_call"), [
    (lambda: F.softmax_forward(np.ones((0, 3)))[0], lambda: torch.softmax(torch.ones(0, 3), -1)),
    (lambda: F.layernorm_forward(np.ones((0, 3)), np.ones(3), np.zeros(3))[0],
     lambda: tF.layer_norm(torch.ones(0, 3), (3,))),
    (lambda: F.cross_entropy_forward(np.ones((0, 3)), np.zeros(0, np.int64), reduction="sum")[0],
     lambda: tF.cross_entropy(torch.ones(0, 3), torch.zeros(0, dtype=torch.long),
                              reduction="sum")),
    (lambda: F.embedding_forward(np.zeros((2, 0), np.int64), np.ones((3, 4)))[0],
     lambda: tF.embedding(torch.zeros(2, 0, dtype=torch.long), torch.ones(3, 4))),
])
def test_an_empty_batch_works_as_in_torch(call, torch_call):
    got, want = call(), torch_call().numpy()
    assert np.shape(got) == want.shape
    np.testing.assert_array_equal(got, want)


def test_a_positional_table_on_the_host_is_moved_to_the_device():
    """As documented; a table on the device with x on the host is refused (no silent copy)."""
    x, table = np.ones((1, 2, 2), np.float32), F.sinusoidal_encoding(3, 2)
    out, _ = F.add_positional_forward(strict_mod.asarray(x), table)
    np.testing.assert_array_equal(out.get(), F.add_positional_forward(x, table)[0])
    with pytest.raises(TypeError, match=r"add_positional inputs must live on one device"):
        F.add_positional_forward(x, strict_mod.asarray(table))


def test_relu_lets_the_gradient_through_a_nan_as_torch():
    x = np.array([np.nan, -1.0, 2.0])
    _, cache = F.relu_forward(x)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    torch.relu(xt).backward(torch.full((3,), 3.0, dtype=torch.float64))
    np.testing.assert_array_equal(F.relu_backward(np.full(3, 3.0), cache), xt.grad.numpy())


@pytest.mark.parametrize("call", [
    lambda a, b: F.linear_forward(a(np.ones((2, 3))), b(np.ones((4, 3)))),
    lambda a, b: F.layernorm_forward(a(np.ones((2, 3))), b(np.ones(3)), a(np.zeros(3))),
    lambda a, b: F.attention_forward(a(ONE), b(ONE), a(ONE)),
    lambda a, b: F.attention_forward(a(ONE), a(ONE), a(ONE), mask=b(np.ones(1, bool))),
    lambda a, b: F.embedding_forward(a(np.array([0])), b(np.ones((2, 2)))),
    lambda a, b: F.cross_entropy_forward(a(np.ones((1, 2))), b(np.array([0]))),
    lambda a, b: F.dropout_forward(a(np.ones(2)), 0.5, mask=b(np.ones(2, bool))),
    lambda a, b: F.bias_gelu_forward(a(np.ones((2, 3))), b(np.ones(3))),
    lambda a, b: F.bias_relu_forward(a(np.ones((2, 3))), b(np.ones(3))),
    lambda a, b: F.masked_softmax_forward(a(np.ones((2, 3))), b(np.ones(3, bool))),
])
def test_arrays_on_two_devices_get_our_error(call):
    """NumPy mixed with device arrays (the strict stand-in here, CuPy for real) used to fail
    deep inside with the array module's own message."""
    for a, b in [(np.asarray, strict_mod.asarray), (strict_mod.asarray, np.asarray)]:
        with pytest.raises(TypeError, match=r"^\w+ inputs must live on one device \(one array "
                                            r"module\), got \w+: (numpy|strict), \w+: "):
            call(a, b)


X23 = np.ones((2, 3))


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda: F.bias_gelu_forward(X23, np.ones(2)), ValueError,
     "bias_gelu bias must have shape (3,) to match x (2, 3), got (2,)"),
    (lambda: F.bias_gelu_forward(X23, np.ones((2, 3))), ValueError,  # NumPy would broadcast it
     "bias_gelu bias must have shape (3,) to match x (2, 3), got (2, 3)"),
    (lambda: F.bias_gelu_forward(X23, np.ones((1, 3))), ValueError,
     "bias_gelu bias must have shape (3,) to match x (2, 3), got (1, 3)"),
    (lambda: F.bias_gelu_forward(X23, np.array(1.0)), ValueError,
     "bias_gelu bias must have shape (3,) to match x (2, 3), got ()"),
    (lambda: F.bias_gelu_forward(X23, np.ones(3, np.int64)), TypeError,
     "bias_gelu bias must be a floating-point array (float32 or float64), got int64"),
    (lambda: F.bias_gelu_forward(X23, None), TypeError,
     "bias_gelu bias must be a floating-point array (float32 or float64), got None"),
    (lambda: F.bias_gelu_forward(X23, np.ones(3, np.float32)), TypeError,
     "bias_gelu inputs must share one floating dtype, got x: float64, bias: float32"),
    (lambda: F.bias_gelu_forward(ZERO_DIM, np.ones(1)), ValueError,
     "bias_gelu input must have an axis -1 (the C features the bias is added to), got shape ()"),
    (lambda: F.bias_gelu_forward(np.ones((2, 0)), np.ones(0)), ValueError,
     "bias_gelu input must not be empty along axis -1 (the C features the bias is added to), "
     "got shape (2, 0)"),
    (lambda: F.bias_relu_forward(X23, np.ones((1, 3))), ValueError,  # NumPy would broadcast it
     "bias_relu bias must have shape (3,) to match x (2, 3), got (1, 3)"),
    (lambda: F.bias_relu_forward(X23, np.array(1.0)), ValueError,
     "bias_relu bias must have shape (3,) to match x (2, 3), got ()"),
    (lambda: F.bias_relu_forward(X23, None), TypeError,
     "bias_relu bias must be a floating-point array (float32 or float64), got None"),
    (lambda: F.bias_relu_forward(X23, np.ones(3, np.float32)), TypeError,
     "bias_relu inputs must share one floating dtype, got x: float64, bias: float32"),
    (lambda: F.bias_relu_forward(ZERO_DIM, np.ones(1)), ValueError,
     "bias_relu input must have an axis -1 (the C features the bias is added to), got shape ()"),
    (lambda: F.masked_softmax_forward(X23, np.ones((2, 3), np.int64)), TypeError,
     "masked_softmax mask must be a boolean array (True = keep), got int64"),
    (lambda: F.masked_softmax_forward(X23, np.ones((2, 3))), TypeError,
     "masked_softmax mask must be a boolean array (True = keep), got float64"),
    (lambda: F.masked_softmax_forward(X23, True), TypeError,
     "masked_softmax mask must be a boolean array (True = keep), got bool"),
    (lambda: F.masked_softmax_forward(X23, np.ones(2, bool)), ValueError,
     "masked_softmax mask must broadcast to the input's shape (2, 3), got shape (2,)"),
    (lambda: F.masked_softmax_forward(X23, np.ones((3, 3), bool)), ValueError,
     "masked_softmax mask must broadcast to the input's shape (2, 3), got shape (3, 3)"),
    (lambda: F.masked_softmax_forward(X23, np.ones((1, 2, 3), bool)), ValueError,  # x stays 2-D
     "masked_softmax mask must broadcast to the input's shape (2, 3), got shape (1, 2, 3)"),
    (lambda: F.bias_gelu_forward(X23, np.ones(3), "erf"), ValueError,
     "bias_gelu approximate must be 'none' or 'tanh', got 'erf'"),
    (lambda: F.masked_softmax_forward(X23, None, "0.5"), TypeError,
     "masked_softmax scale must be a real number, got '0.5'"),
    (lambda: F.masked_softmax_forward(X23, None, None), TypeError,
     "masked_softmax scale must be a real number, got None"),
    (lambda: F.masked_softmax_forward(X23, None, True), TypeError,
     "masked_softmax scale must be a real number, got True"),
    (lambda: F.masked_softmax_forward(X23, None, 1j), TypeError,
     "masked_softmax scale must be a real number, got 1j"),
    (lambda: F.masked_softmax_forward(np.ones((2, 3), np.int64)), TypeError,
     "masked_softmax input must be a floating-point array (float32 or float64), got int64"),
    (lambda: F.masked_softmax_forward(np.ones((2, 0)), np.ones(0, bool)), ValueError,
     "masked_softmax input must not be empty along axis -1 (the softmax axis), got shape (2, 0)"),
])
def test_bias_gelu_and_masked_softmax_errors(call, error, message):
    """Bad inputs of bias_gelu and masked_softmax: a bias that is not (C,) (NumPy would
    broadcast a (1, C) or (N, C) one), a mask that is not boolean or does not broadcast to x, a
    scale that is no real number. Each message names the op and the argument.

    The property test above still draws no mask that fails to broadcast and no bad
    ``approximate``: these examples hold those messages."""
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        call()


def test_masked_softmax_keeps_nan_out_of_masked_entries() -> None:
    """A NaN or inf among the kept entries of a row leaves its masked entries exactly zero, as
    the docstring promises (``probs *= mask`` gave 0 · NaN = NaN there)."""
    x = np.array([[np.nan, 1.0, 2.0], [np.inf, 1.0, 2.0], [0.0, 1.0, 2.0]])
    mask = np.array([True, True, False])
    with np.errstate(invalid="ignore"):
        probs, _ = F.masked_softmax_forward(x, mask, 0.5)
    assert (probs[:, 2] == 0).all()
    assert np.isnan(probs[:2, :2]).all()  # the kept entries of those rows are NaN, as softmax's
    want = np.exp(0.5 * x[2, :2] - 0.5 * x[2, :2].max())
    np.testing.assert_allclose(probs[2, :2], want / want.sum(), rtol=1e-15)
