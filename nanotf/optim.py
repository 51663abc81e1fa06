"""Optimizers, learning-rate schedules and gradient clipping, written out by hand.

After a backward pass every ``Parameter`` holds its weights ``θ`` in ``.data`` and the gradient
of the loss ``g = ∂L/∂θ`` in ``.grad``. An optimizer turns the gradient into a change of the
weights. All three here follow ``torch.optim`` exactly (same formulas, same order of operations,
same state), so a nanotf run and a PyTorch run from the same weights and gradients agree to the
last few bits, and the tests check that after every step.

``SGD``: gradient descent, ``θ ← θ − lr·g``. With *momentum* μ it keeps a running sum of past
gradients ``b ← μ·b + g`` and steps along ``b`` instead, which smooths out noisy gradients and
speeds up travel along directions where the gradient keeps its sign. *Nesterov* momentum looks one
step ahead: it steps along ``g + μ·b``.

``Adam`` (Kingma & Ba 2015): keeps two running averages per weight, of the gradient
(``m``, the first moment: which way to go) and of its square (``v``, the second moment: how large
the gradient usually is), and steps ``lr · m̂ / (√v̂ + ε)``. Dividing by ``√v̂`` gives every weight
its own step size: weights with large, noisy gradients move carefully, weights with small steady
gradients move faster. Both averages start at zero and are therefore too small in the first steps;
*bias correction* divides them by ``1 − β^t`` to undo that. The Transformer paper trains with
``Adam(betas=(0.9, 0.98), eps=1e-9)`` and the Noam schedule (``noam_lr``).

``AdamW`` (Loshchilov & Hutter 2019): Adam with *decoupled* weight decay. ``Adam(weight_decay=λ)``
adds ``λ·θ`` to the gradient (L2 regularisation), so the decay is divided by ``√v̂`` like
everything else and weights with large gradients are hardly decayed. AdamW instead shrinks the
weights directly, ``θ ← θ·(1 − lr·λ)``, before the Adam step: every weight decays at the same rate.

Schedules: ``noam_lr`` (linear warm-up, then ``1/√step`` decay, as in "Attention Is All You
Need") and ``cosine_lr`` (linear warm-up, then half a cosine down to ``min_lr``) are plain
functions of the step number; ``LRScheduler(optimizer, fn)`` sets ``optimizer.lr = fn(t)`` before
update number ``t``. ``clip_grad_norm`` rescales all gradients together when their global L2 norm
is too large, the usual guard against a single exploding step.

How the code is written:

* Updates happen in place: ``θ``, ``m``, ``v`` and the momentum buffers are the same array
  objects for the whole run (``p.data`` is never replaced), and every intermediate goes into one
  of two scratch arrays that all parameters of a dtype share, through ``out=``. A step allocates
  no new arrays; in NumPy each ``a * b + c`` would otherwise allocate two temporaries per
  parameter per step.
* The array module comes from the arrays (``get_array_module``), so the same code runs on NumPy
  and CuPy.
* ``state_dict()`` is a flat ``{str: numpy array | int | float}`` dict (``"step"``, ``"lr"``,
  ``"exp_avg.3"``, ...), host-side, ready for ``numpy.savez`` or safetensors.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from .backend import get_array_module, to_numpy
from .nn._checks import describe, is_array
from .nn.parameter import Parameter

__all__ = [
    "SGD",
    "Adam",
    "AdamW",
    "LRScheduler",
    "Optimizer",
    "clip_grad_norm",
    "cosine_lr",
    "noam_lr",
]


# -- input checks (every error says what was expected and what was given) -------------------------


def _real(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a Python float, checked to be finite and inside the given interval."""
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        value = value.item()  # 0-d arrays, e.g. scalars read back from an .npz checkpoint
    left = "(-inf" if low is None else f"{'(' if low_open else '['}{low:g}"
    right = "inf)" if high is None else f"{high:g}{')' if high_open else ']'}"
    interval = f"{left}, {right}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number in {interval}, got {value!r}")
    v = float(value)
    bad = (
        not math.isfinite(v)
        or (low is not None and (v < low or (low_open and v == low)))
        or (high is not None and (v > high or (high_open and v == high)))
    )
    if bad:
        raise ValueError(f"{name}: expected a real number in {interval}, got {value!r}")
    return v


def _integer(name: str, value: Any, *, low: int) -> int:
    """``value`` as a Python int, checked to be ``>= low``."""
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer >= {low}, got {value!r}")
    if value < low:
        raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")
    return int(value)


def _flag(name: str, value: Any) -> bool:
    """A boolean hyperparameter; ``0``/``1`` are accepted because checkpoints store numbers."""
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        value = value.item()
    if isinstance(value, numbers.Number) and value in (0, 1):
        return bool(value)
    raise TypeError(f"{name}: expected True or False, got {value!r}")


def _param_list(
    params: Any, who: str, *, allow_empty: bool = False, allow_single: bool = False
) -> list[Parameter]:
    """``params`` as a list of distinct ``Parameter`` objects."""
    if isinstance(params, Parameter):
        if allow_single:
            return [params]
        raise TypeError(
            f"{who}: expected an iterable of Parameter (e.g. model.parameters()), "
            "got a single Parameter; wrap it in a list"
        )
    if isinstance(params, Mapping):
        raise TypeError(
            f"{who}: expected an iterable of Parameter, got a {type(params).__name__}; "
            "pass list(d.values())"
        )
    if not isinstance(params, Iterable) or isinstance(params, (str, bytes)):
        raise TypeError(f"{who}: expected an iterable of Parameter, got {type(params).__name__}")
    out = list(params)
    if not out and not allow_empty:
        raise ValueError(f"{who}: expected at least one Parameter, got an empty list")
    seen: dict[int, int] = {}
    for i, p in enumerate(out):
        if not isinstance(p, Parameter):
            hint = (
                " (named_parameters() yields (name, Parameter) pairs: pass parameters())"
                if isinstance(p, tuple)
                else ""
            )
            raise TypeError(
                f"{who}[{i}]: expected a nanotf.nn.Parameter, got {type(p).__name__}{hint}"
            )
        if id(p) in seen:
            raise ValueError(
                f"{who}[{i}] is the same Parameter as {who}[{seen[id(p)]}]: expected each "
                "Parameter once (a tied weight is one Parameter and gets one update)"
            )
        seen[id(p)] = i
    return out


def _host_copy(a: Any) -> np.ndarray:
    """A NumPy copy of ``a`` that later in-place updates cannot change."""
    host = to_numpy(a)
    return host.copy() if host is a else host


def _state_array(who: str, key: str, a: Any, p: Parameter, i: int) -> Any:
    """State array ``a`` (saved for ``params[i]``) as a new array of ``p``'s array module,
    shape and dtype, after checking that it is one: a real floating-point array (NumPy, or of
    the parameter's array module) of the parameter's shape, all finite. Refused, with a
    ``TypeError`` or ``ValueError`` naming ``key``: Python lists and numbers, torch tensors
    (convert with ``.detach().cpu().numpy()``), complex arrays (the imaginary part would be
    dropped), bool, integer, string and object arrays, and NaN or inf (a corrupt state)."""
    xp = get_array_module(p.data)
    shape = tuple(p.data.shape)
    where = f"{who}: {key!r}"
    if not (isinstance(a, np.ndarray) or (is_array(a) and get_array_module(a) is xp)):
        raise TypeError(
            f"{where}: expected a NumPy array (the state of params[{i}]), got {describe(a)}"
        )
    if not np.issubdtype(a.dtype, np.floating):
        raise TypeError(
            f"{where}: expected a real floating-point array (params[{i}] is {p.data.dtype}), "
            f"got {describe(a)}"
        )
    if tuple(a.shape) != shape:
        raise ValueError(f"{where}: expected shape {shape} (params[{i}]), given {tuple(a.shape)}")
    with np.errstate(over="ignore"):  # float64 values beyond float32's range become inf: refused
        out = xp.array(a, dtype=p.data.dtype)  # a copy, on the parameter's device
    finite = xp.isfinite(out)
    if not bool(to_numpy(finite.all())):
        bad = int(to_numpy((~finite).sum()))
        raise ValueError(
            f"{where}: expected finite values, got {bad} NaN or infinite value(s) (a corrupt "
            f"state{'' if a.dtype == out.dtype else f', or values outside {out.dtype} range'})"
        )
    return out


# -- the optimizers -------------------------------------------------------------------------------


class Optimizer:
    """What every optimizer shares: the parameter list, ``lr``, the step count, the per-parameter
    state arrays (``self.state[name][i]``), scratch space, ``zero_grad`` and ``state_dict``.

    A subclass names its hyperparameters (``_hyper_names``), checks them (``_check_hyper``), says
    which state arrays it keeps (``_buffer_names``) and writes the update of one parameter
    (``_update``).
    """

    _hyper_names: tuple[str, ...] = ("lr",)

    def __init__(self, params: Iterable[Parameter], hyper: dict[str, Any]) -> None:
        self.params: list[Parameter] = _param_list(params, "params")
        self._set_hyper(self._check_hyper(hyper))
        #: number of updates done so far; update number t (1, 2, ...) uses t in bias corrections
        self.step_count = 0
        #: per-parameter state arrays, e.g. ``state["exp_avg"][i]``, same shape/dtype as ``θ_i``
        self.state: dict[str, list[Any]] = {}
        self._allocate_state()
        self._layout = [(p.data.shape, p.data.dtype) for p in self.params]
        self._scratch = self._make_scratch(2)

    # -- hyperparameters --------------------------------------------------------------------------
    @property
    def lr(self) -> float:
        """The learning rate of the next step; a schedule may set it between steps."""
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        self._lr = _real("lr", value, low=0.0)

    def _check_hyper(self, hyper: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def _set_hyper(self, hyper: dict[str, Any]) -> None:
        for name, value in hyper.items():
            setattr(self, name, value)

    def _hyper(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._hyper_names}

    def _buffer_names(self, hyper: dict[str, Any]) -> tuple[str, ...]:
        """Names of the state arrays kept for each parameter under these hyperparameters."""
        return ()

    # -- memory -----------------------------------------------------------------------------------
    def _allocate_state(self) -> None:
        self.state = {}
        for name in self._buffer_names(self._hyper()):
            self.state[name] = [get_array_module(p.data).zeros_like(p.data) for p in self.params]

    def _make_scratch(self, count: int) -> list[tuple[Any, ...]]:
        """``count`` scratch arrays shaped like each parameter, all views into ``count`` flat
        buffers per (array type, dtype) as long as the largest such parameter: the memory cost
        is that of one parameter, not of the whole model."""
        sizes: dict[tuple[type, Any], int] = {}
        owner: dict[tuple[type, Any], Parameter] = {}
        for p in self.params:
            key = (type(p.data), p.data.dtype)
            sizes[key] = max(sizes.get(key, 0), int(p.data.size))
            owner.setdefault(key, p)
        flat = {
            key: [get_array_module(owner[key].data).empty((n,), dtype=key[1]) for _ in range(count)]
            for key, n in sizes.items()
        }
        views = []
        for p in self.params:
            bufs = flat[(type(p.data), p.data.dtype)]
            views.append(tuple(b[: p.data.size].reshape(p.data.shape) for b in bufs))
        return views

    # -- the training-loop API ------------------------------------------------------------------
    def zero_grad(self) -> None:
        """Set every parameter's gradient to zero (in place)."""
        for p in self.params:
            p.zero_grad()

    def step(self) -> None:
        """Update every parameter from its ``.grad`` (an all-zero gradient still updates, as in
        PyTorch: momentum and weight decay keep acting)."""
        for i, p in enumerate(self.params):
            shape, dtype = self._layout[i]
            if p.data.shape != shape or p.data.dtype != dtype or p.grad.shape != shape:
                raise ValueError(
                    f"params[{i}]: expected data and grad of shape {shape} and dtype {dtype} "
                    f"(as when the optimizer was built), got data {tuple(p.data.shape)} "
                    f"{p.data.dtype} and grad {tuple(p.grad.shape)}; build the optimizer after "
                    "resizing or casting the model"
                )
        self.step_count += 1
        for i, p in enumerate(self.params):
            self._update(i, p)

    def _update(self, i: int, p: Parameter) -> None:
        raise NotImplementedError

    # -- checkpoints ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The whole optimizer as a flat dict of host values: ``"step"``, ``"num_params"``, the
        hyperparameters (``"lr"``, ...) as Python numbers, and one NumPy array per parameter and
        state (``"exp_avg.0"``, ``"exp_avg.1"``, ...), copies that later steps do not change."""
        out: dict[str, Any] = {"step": self.step_count, "num_params": len(self.params)}
        for name, value in self._hyper().items():
            out[name] = int(value) if isinstance(value, bool) else value
        for name, arrays in self.state.items():
            for i, a in enumerate(arrays):
                out[f"{name}.{i}"] = _host_copy(a)
        return out

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a ``state_dict()``: step count, hyperparameters (``lr`` included, as PyTorch
        does) and state arrays, copied to the parameters' device and dtype.

        Everything is checked before anything changes, so a refused load leaves the optimizer
        exactly as it was. A state array must be a real floating-point NumPy array (or one of
        the parameters' array module) of its parameter's shape, with finite values: complex,
        integer, bool, string and object arrays, torch tensors, Python lists and numbers are
        refused (``TypeError``), and so are NaN and inf (``ValueError``: a corrupt state).
        """
        kind = type(self).__name__
        if not isinstance(state, Mapping):
            raise TypeError(
                f"{kind}.load_state_dict: expected a dict of str -> array or number, "
                f"got {type(state).__name__}"
            )
        if "num_params" not in state:
            raise ValueError(
                f"{kind}.load_state_dict: expected a key 'num_params', "
                f"given keys {sorted(state, key=str)}"
            )
        n = _integer("num_params", state["num_params"], low=0)
        if n != len(self.params):
            raise ValueError(
                f"{kind}.load_state_dict: expected a state for {len(self.params)} parameters, "
                f"given one for {n}"
            )
        missing = [k for k in self._hyper_names if k not in state]
        if missing:
            raise ValueError(
                f"{kind}.load_state_dict: expected the hyperparameters {list(self._hyper_names)}, "
                f"missing {missing} (is this the state of another optimizer?)"
            )
        hyper = self._check_hyper({k: state[k] for k in self._hyper_names})
        buffers = self._buffer_names(hyper)
        expected = {
            "step",
            "num_params",
            *self._hyper_names,
            *(f"{b}.{i}" for b in buffers for i in range(n)),
        }
        if set(state) != expected:
            raise ValueError(
                f"{kind}.load_state_dict: keys do not match; missing "
                f"{sorted(expected - set(state))}, "
                f"unexpected {sorted(set(state) - expected, key=str)}"
            )
        step = _integer("step", state["step"], low=0)
        # every array checked and converted (to the parameter's device and dtype) before any
        # attribute changes: a refused load leaves the optimizer exactly as it was
        new_state = {
            b: [
                _state_array(f"{kind}.load_state_dict", f"{b}.{i}", state[f"{b}.{i}"], p, i)
                for i, p in enumerate(self.params)
            ]
            for b in buffers
        }
        # commit (nothing below can fail)
        self._set_hyper(hyper)
        self.step_count = step
        self.state = new_state

    def __repr__(self) -> str:
        hyper = ", ".join(f"{k}={v!r}" for k, v in self._hyper().items())
        return f"{type(self).__name__}({len(self.params)} parameters, {hyper})"


class SGD(Optimizer):
    r"""Stochastic gradient descent with optional momentum, dampening, Nesterov and weight decay.

    For each parameter ``θ`` with gradient ``g``, at update ``t`` (as ``torch.optim.SGD``)::

        d ← g + λ·θ                         weight decay λ (L2), if λ ≠ 0
        b ← d                               t = 1: the momentum buffer starts as the first d
        b ← μ·b + (1 − τ)·d                 t > 1: momentum μ, dampening τ
        d ← d + μ·b    (Nesterov)   or   d ← b    (plain momentum)       if μ ≠ 0
        θ ← θ − lr·d

    Nesterov needs ``momentum > 0`` and ``dampening == 0`` (as in PyTorch). State:
    ``state["momentum_buffer"][i]`` when ``momentum != 0``.
    """

    _hyper_names = ("lr", "momentum", "dampening", "weight_decay", "nesterov")
    momentum: float
    dampening: float
    weight_decay: float
    nesterov: bool

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(
            params,
            dict(
                lr=lr,
                momentum=momentum,
                dampening=dampening,
                weight_decay=weight_decay,
                nesterov=nesterov,
            ),
        )

    def _check_hyper(self, hyper: dict[str, Any]) -> dict[str, Any]:
        h = dict(
            lr=_real("lr", hyper["lr"], low=0.0),
            momentum=_real("momentum", hyper["momentum"], low=0.0),
            dampening=_real("dampening", hyper["dampening"], low=0.0, high=1.0),
            weight_decay=_real("weight_decay", hyper["weight_decay"], low=0.0),
            nesterov=_flag("nesterov", hyper["nesterov"]),
        )
        if h["nesterov"] and (h["momentum"] <= 0 or h["dampening"] != 0):
            raise ValueError(
                "nesterov=True: expected momentum > 0 and dampening == 0, "
                f"got momentum={h['momentum']:g}, dampening={h['dampening']:g}"
            )
        return h

    def _buffer_names(self, hyper: dict[str, Any]) -> tuple[str, ...]:
        return ("momentum_buffer",) if hyper["momentum"] != 0 else ()

    def _update(self, i: int, p: Parameter) -> None:
        xp = get_array_module(p.data)
        theta, d = p.data, p.grad
        s0, s1 = self._scratch[i]
        mu, tau, lam = self.momentum, self.dampening, self.weight_decay
        if lam != 0:  # d ← g + λ·θ
            xp.multiply(theta, lam, out=s0)
            xp.add(d, s0, out=s0)
            d = s0
        if mu != 0:
            b = self.state["momentum_buffer"][i]
            if self.step_count == 1:  # b ← d  (no dampening on the first step)
                xp.copyto(b, d)
            else:  # b ← μ·b + (1 − τ)·d
                xp.multiply(b, mu, out=b)
                if tau != 0:
                    xp.multiply(d, 1.0 - tau, out=s1)
                    xp.add(b, s1, out=b)
                else:
                    xp.add(b, d, out=b)
            if self.nesterov:  # d ← d + μ·b
                xp.multiply(b, mu, out=s1)
                xp.add(d, s1, out=s1)
                d = s1
            else:  # d ← b
                d = b
        xp.multiply(d, -self.lr, out=s1)  # θ ← θ − lr·d
        xp.add(theta, s1, out=theta)


class Adam(Optimizer):
    r"""Adam, as ``torch.optim.Adam``: weight decay, if any, is L2 added to the gradient.

    For each parameter ``θ`` with gradient ``g``, at update ``t = 1, 2, ...``::

        g ← g + λ·θ                              weight decay λ (L2), if λ ≠ 0
        m ← β1·m + (1 − β1)·g                    first moment, m₀ = 0
        v ← β2·v + (1 − β2)·g²                   second moment, v₀ = 0
        m̂ = m / (1 − β1^t),  v̂ = v / (1 − β2^t)  bias correction
        θ ← θ − lr·m̂ / (√v̂ + ε)

    Written as PyTorch evaluates it: ``m ← m + (1 − β1)·(g − m)`` (its ``lerp``; for β1 ≤ 0.5
    from the other end, ``m ← g − β1·(g − m)``), and
    ``θ ← θ − (lr / (1 − β1^t))·m / (√v / √(1 − β2^t) + ε)`` with the bias corrections computed
    in Python floats (float64). State: ``state["exp_avg"][i]`` (m), ``state["exp_avg_sq"][i]`` (v).
    """

    _hyper_names = ("lr", "beta1", "beta2", "eps", "weight_decay", "decoupled_weight_decay")
    _decoupled = False
    beta1: float
    beta2: float
    eps: float
    weight_decay: float
    decoupled_weight_decay: bool

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas: expected a pair (beta1, beta2), got {betas!r}")
        super().__init__(
            params,
            dict(
                lr=lr,
                beta1=betas[0],
                beta2=betas[1],
                eps=eps,
                weight_decay=weight_decay,
                decoupled_weight_decay=self._decoupled,
            ),
        )

    @property
    def betas(self) -> tuple[float, float]:
        return (self.beta1, self.beta2)

    def _check_hyper(self, hyper: dict[str, Any]) -> dict[str, Any]:
        decoupled = _flag("decoupled_weight_decay", hyper["decoupled_weight_decay"])
        if decoupled != self._decoupled:
            mine, theirs = type(self).__name__, "AdamW" if decoupled else "Adam"
            raise ValueError(
                f"{mine}: expected decoupled_weight_decay={int(self._decoupled)} ({mine}), "
                f"given {int(decoupled)} (a state of {theirs})"
            )
        return dict(
            lr=_real("lr", hyper["lr"], low=0.0),
            beta1=_real("betas[0]", hyper["beta1"], low=0.0, high=1.0, high_open=True),
            beta2=_real("betas[1]", hyper["beta2"], low=0.0, high=1.0, high_open=True),
            eps=_real("eps", hyper["eps"], low=0.0),
            weight_decay=_real("weight_decay", hyper["weight_decay"], low=0.0),
            decoupled_weight_decay=decoupled,
        )

    def _buffer_names(self, hyper: dict[str, Any]) -> tuple[str, ...]:
        return ("exp_avg", "exp_avg_sq")

    def _update(self, i: int, p: Parameter) -> None:
        xp = get_array_module(p.data)
        theta, g = p.data, p.grad
        m, v = self.state["exp_avg"][i], self.state["exp_avg_sq"][i]
        s0, s1 = self._scratch[i]
        lr, b1, b2, eps, lam = self.lr, self.beta1, self.beta2, self.eps, self.weight_decay
        t = self.step_count
        if lam != 0:
            if self.decoupled_weight_decay:  # AdamW: θ ← θ·(1 − lr·λ)
                xp.multiply(theta, 1.0 - lr * lam, out=theta)
            else:  # Adam: g ← g + λ·θ
                xp.multiply(theta, lam, out=s0)
                xp.add(g, s0, out=s0)
                g = s0
        # m ← β1·m + (1 − β1)·g, as torch's lerp evaluates it: from the nearer end, with the
        # weight w = 1 − β1 first rounded to θ's dtype (so for β1 > 0.5 the factor is 1 − w)
        w = float(theta.dtype.type(1.0 - b1))
        xp.subtract(g, m, out=s1)
        if w < 0.5:  # m ← m + w·(g − m)
            xp.multiply(s1, w, out=s1)
            xp.add(m, s1, out=m)
        else:  # m ← g − (1 − w)·(g − m)   (exactly g when β1 = 0)
            xp.multiply(s1, 1.0 - w, out=s1)
            xp.subtract(g, s1, out=m)
        # v ← β2·v + (1 − β2)·g·g
        xp.multiply(v, b2, out=v)
        xp.multiply(g, 1.0 - b2, out=s1)
        xp.multiply(s1, g, out=s1)
        xp.add(v, s1, out=v)
        # bias corrections, in Python floats
        step_size = lr / (1.0 - b1**t)
        bias_correction2_sqrt = (1.0 - b2**t) ** 0.5
        # denominator √v / √(1 − β2^t) + ε  (= √v̂ + ε), into s1
        xp.sqrt(v, out=s1)
        xp.divide(s1, bias_correction2_sqrt, out=s1)
        xp.add(s1, eps, out=s1)
        # θ ← θ − step_size·m / denominator  (g, i.e. s0, is no longer needed)
        xp.multiply(m, -step_size, out=s0)
        xp.divide(s0, s1, out=s0)
        xp.add(theta, s0, out=theta)


class AdamW(Adam):
    r"""AdamW, as ``torch.optim.AdamW``: Adam with decoupled weight decay (default λ = 0.01).

    For each parameter ``θ`` with gradient ``g``, at update ``t = 1, 2, ...``::

        θ ← θ·(1 − lr·λ)                         decay the weights directly, not through g
        m ← β1·m + (1 − β1)·g
        v ← β2·v + (1 − β2)·g²
        m̂ = m / (1 − β1^t),  v̂ = v / (1 − β2^t)
        θ ← θ − lr·m̂ / (√v̂ + ε)

    Unlike ``Adam(weight_decay=λ)``, the decay is not divided by ``√v̂``, so every weight decays
    at the same rate ``lr·λ`` per step.
    """

    _decoupled = True

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
    ) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


# -- learning-rate schedules ----------------------------------------------------------------------


def noam_lr(step: int, d_model: int, warmup: int, factor: float = 1.0) -> float:
    r"""The learning rate of "Attention Is All You Need" (the "Noam" schedule)::

        lr(step) = factor · d_model^(−1/2) · min(step^(−1/2), step · warmup^(−3/2))

    It rises linearly for ``warmup`` steps, peaks at ``step == warmup`` with
    ``factor / √(d_model · warmup)``, then decays like ``1/√step``. ``step`` starts at 1
    (the paper: d_model 512, warmup 4000, factor 1).
    """
    step = _integer("step", step, low=1)
    d_model = _integer("d_model", d_model, low=1)
    warmup = _integer("warmup", warmup, low=1)
    factor = _real("factor", factor, low=0.0)
    return factor * d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)


def cosine_lr(
    step: int, base_lr: float, warmup: int, total_steps: int, min_lr: float = 0.0
) -> float:
    r"""Linear warm-up, then half a cosine from ``base_lr`` down to ``min_lr``::

        lr(step) = base_lr · step / warmup                                  step < warmup
        lr(step) = min_lr + ½·(base_lr − min_lr)·(1 + cos(π·s))             warmup ≤ step ≤ total
                   with s = (step − warmup) / (total_steps − warmup)
        lr(step) = min_lr                                                   step > total_steps

    ``step`` counts from 0 (lr 0) and reaches ``base_lr`` at ``step == warmup``; ``warmup=0``
    starts the cosine at once. The same curve as PyTorch's ``LinearLR`` followed by
    ``CosineAnnealingLR(T_max=total_steps - warmup, eta_min=min_lr)``.
    """
    step = _integer("step", step, low=0)
    warmup = _integer("warmup", warmup, low=0)
    total_steps = _integer("total_steps", total_steps, low=warmup + 1)
    base_lr = _real("base_lr", base_lr, low=0.0)
    min_lr = _real("min_lr", min_lr, low=0.0, high=base_lr)
    if step < warmup:
        return base_lr * step / warmup
    if step >= total_steps:
        return min_lr
    s = (step - warmup) / (total_steps - warmup)
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * s))


class LRScheduler:
    """Drives ``optimizer.lr`` from a function of the step number.

    Call ``scheduler.step()`` once per training step, *before* ``optimizer.step()``: it advances
    the count to ``t`` and sets ``optimizer.lr = fn(t)``, so update number ``t = 1, 2, ...`` uses
    ``fn(t)`` (as the Annotated Transformer's ``NoamOpt``)::

        sched = LRScheduler(opt, lambda t: noam_lr(t, d_model=512, warmup=4000))
        for batch in batches:
            ...forward, backward...
            sched.step()
            opt.step()
            opt.zero_grad()

    Constructing it leaves ``optimizer.lr`` as it is.
    """

    def __init__(self, optimizer: Optimizer, fn: Callable[[int], float]) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"optimizer: expected a nanotf.optim.Optimizer, got {type(optimizer).__name__}"
            )
        if not callable(fn):
            raise TypeError(f"fn: expected a function step -> lr, got {type(fn).__name__}")
        self.optimizer = optimizer
        self.fn = fn
        self.step_count = 0

    def step(self) -> float:
        """Advance to the next step and set (and return) its learning rate."""
        self.step_count += 1
        self.optimizer.lr = self.fn(self.step_count)
        return self.optimizer.lr

    @property
    def lr(self) -> float:
        """The optimizer's current learning rate."""
        return self.optimizer.lr

    def state_dict(self) -> dict[str, int]:
        return {"step": self.step_count}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the step count (and set ``optimizer.lr = fn(step)`` when ``step >= 1``).

        Checked before anything changes: the keys, the step, and the learning rate ``fn(step)``
        that it implies; a refused load leaves the scheduler and the optimizer as they were.
        """
        who = "LRScheduler.load_state_dict"
        if not isinstance(state, Mapping):
            raise TypeError(f"{who}: expected a dict {{'step': int}}, got {type(state).__name__}")
        if set(state) != {"step"}:
            raise ValueError(f"{who}: expected keys ['step'], given {sorted(state, key=str)}")
        step = _integer("step", state["step"], low=0)
        lr = _real(f"{who}: fn({step})", self.fn(step), low=0.0) if step >= 1 else None
        # commit (nothing below can fail)
        if lr is not None:
            self.optimizer.lr = lr
        self.step_count = step


# -- gradient clipping ----------------------------------------------------------------------------

_NORM_CHUNK = 1 << 16  # elements squared and summed at a time by clip_grad_norm


def _sum_of_squares(grads: list[Any]) -> float:
    """``Σ g²`` over all elements of all ``grads``, as a Python float.

    Each gradient is squared in chunks of 65536 elements into one small scratch array and
    each chunk summed in the gradient's own dtype (float32 stays float32: NumPy's pairwise
    summation keeps the relative error near ``log2(65536)·ε``); the chunk sums are added in
    float64. So no full-size temporary and no float64 copy of the gradients are made, and the
    norm stays accurate at any size: 5e-9 relative error measured on 10⁷ float32 elements,
    where one float32 dot product is off by 5e-5 (and torch's float32 norm by 4e-4). float16
    gradients are squared in float32. Only a chunk whose float32 sum overflows (a chunk norm
    above ~1.8e19) while its elements are finite is summed again, in float64.
    """
    chunks: list[tuple[Any, Any]] = []  # (array module, flat slice)
    sums: list[Any] = []  # 0-d arrays on the gradients' device: one transfer at the end
    scratch: dict[tuple[type, Any], Any] = {}  # one chunk-sized array per (array type, dtype)
    for g in grads:
        xp = get_array_module(g)
        acc = xp.result_type(g.dtype, xp.float32)
        key = (type(g), acc)
        if key not in scratch or scratch[key].size < min(g.size, _NORM_CHUNK):
            scratch[key] = xp.empty((min(g.size, _NORM_CHUNK),), dtype=acc)
        flat = g.reshape(-1)
        for start in range(0, int(flat.size), _NORM_CHUNK):
            piece = flat[start : start + _NORM_CHUNK]
            sq = scratch[key][: piece.size]
            with np.errstate(over="ignore"):  # an overflowing chunk is redone below
                xp.multiply(piece, piece, out=sq, dtype=acc)
                sums.append(xp.sum(sq))
            chunks.append((xp, piece))
    if not sums:
        return 0.0
    if len({xp for xp, _ in chunks}) == 1:  # one transfer; tolist() gives exact float64s
        host = to_numpy(chunks[0][0].stack(sums)).tolist()
    else:
        host = [float(to_numpy(s)) for s in sums]
    total = 0.0
    for (xp, piece), s in zip(chunks, host, strict=True):
        if not math.isfinite(s) and bool(to_numpy(xp.isfinite(piece).all())):
            wide = piece.astype(xp.float64)
            s = float(to_numpy(xp.sum(xp.multiply(wide, wide, out=wide))))
        total += s
    return total


def clip_grad_norm(
    params: Parameter | Iterable[Parameter], max_norm: float, error_if_nonfinite: bool = False
) -> float:
    r"""Scale all gradients together so that their global L2 norm is at most ``max_norm``.

    As ``torch.nn.utils.clip_grad_norm_``::

        total = √(Σ_params Σ_elements g²)
        if total > max_norm:   g ← g · max_norm / (total + 1e-6)     for every gradient, in place

    (strictly: when ``max_norm / (total + 1e-6) < 1``). Returns ``total``, the norm *before*
    clipping, as a Python float (worth logging: spikes show instabilities). A gradient with
    nan/inf makes ``total`` non-finite and, as in PyTorch, the gradients nan; with
    ``error_if_nonfinite=True`` that raises instead. See ``_sum_of_squares`` for how the norm
    is accumulated without upcasting float32 gradients to float64.
    """
    plist = _param_list(params, "params", allow_empty=True, allow_single=True)
    max_norm = _real("max_norm", max_norm, low=0.0, low_open=True)
    if not plist:
        return 0.0
    total = math.sqrt(_sum_of_squares([p.grad for p in plist]))
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(
            f"clip_grad_norm: expected a finite total gradient norm, got {total} "
            "(a gradient holds nan or inf); pass error_if_nonfinite=False to clip anyway"
        )
    coef = max_norm / (total + 1e-6)
    if not coef >= 1.0:  # also true for nan, which then spreads to the gradients as in PyTorch
        for p in plist:
            get_array_module(p.grad).multiply(p.grad, coef, out=p.grad)
    return total
