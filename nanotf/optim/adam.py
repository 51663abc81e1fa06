"""``Adam`` (Kingma & Ba 2015) and ``AdamW`` (Loshchilov & Hutter 2019), as ``torch.optim``.

Adam keeps two running averages per weight, of the gradient (``m``, which way to go) and of its
square (``v``, how large the gradient usually is), and steps ``lr · m̂ / (√v̂ + ε)``, where the
hats undo the bias of averages that start at zero. AdamW is the same update with the weight
decay *decoupled*: it shrinks the weights directly instead of adding ``λ·θ`` to the gradient.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..backend import get_array_module
from ..functional import fused
from ..nn.parameter import Parameter
from .base import Optimizer
from .checks import as_flag, as_real

__all__ = ["Adam", "AdamW"]


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
    #: the weight decay λ when none is given (``AdamW`` decays by default, ``Adam`` does not)
    default_weight_decay = 0.0
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
        weight_decay: float | None = None,
    ) -> None:
        """``weight_decay`` None is the class's default: 0 for ``Adam``, 0.01 for ``AdamW`` (as
        PyTorch)."""
        if weight_decay is None:
            weight_decay = self.default_weight_decay
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
        decoupled = as_flag("decoupled_weight_decay", hyper["decoupled_weight_decay"])
        if decoupled != self._decoupled:
            mine, theirs = type(self).__name__, "AdamW" if decoupled else "Adam"
            raise ValueError(
                f"{mine}: expected decoupled_weight_decay={int(self._decoupled)} ({mine}), "
                f"given {int(decoupled)} (a state of {theirs})"
            )
        return dict(
            lr=as_real("lr", hyper["lr"], low=0.0),
            beta1=as_real("betas[0]", hyper["beta1"], low=0.0, high=1.0, high_open=True),
            beta2=as_real("betas[1]", hyper["beta2"], low=0.0, high=1.0, high_open=True),
            eps=as_real("eps", hyper["eps"], low=0.0),
            weight_decay=as_real("weight_decay", hyper["weight_decay"], low=0.0),
            decoupled_weight_decay=decoupled,
        )

    def _buffer_names(self, hyper: dict[str, Any]) -> tuple[str, ...]:
        return ("exp_avg", "exp_avg_sq")

    def _kernel_constants(self, dtype: Any) -> dict[str, Any]:
        """What the fused kernels take besides the arrays: the update's constants at this step."""
        lr, b1, b2, lam = self.lr, self.beta1, self.beta2, self.weight_decay
        t = self.step_count
        decoupled = lam != 0 and self.decoupled_weight_decay
        return dict(
            l2=lam if not self.decoupled_weight_decay else 0.0,
            decay=1.0 - lr * lam if decoupled else None,
            w=float(dtype.type(1.0 - b1)),
            beta2=b2,
            step_size=lr / (1.0 - b1**t),
            bias_correction2_sqrt=(1.0 - b2**t) ** 0.5,
            eps=self.eps,
        )

    def _update_all(self) -> bool:
        """Every parameter in one call of the fused ``adam_update_many`` kernel, where there is
        one for their array module and all of θ, g, m, v suit it (C-contiguous, of one dtype:
        the usual case): the same update as ``_update``'s kernel, without a Python round trip
        per parameter (the tiny preset's 88 parameters: 0.5 ms a step instead of 1.9). False
        where it does not run, and each parameter goes through ``_update``."""
        thetas = [p.data for p in self.params]
        kernel = fused.kernel_for("adam_update_many", thetas[0]) if thetas else None
        if kernel is None:
            return False
        grads = [p.grad for p in self.params]
        return bool(kernel(thetas, grads, self.state["exp_avg"], self.state["exp_avg_sq"],
                           cache=self._fused_cache, **self._kernel_constants(thetas[0].dtype)))

    def _update(self, i: int, p: Parameter) -> None:
        xp = get_array_module(p.data)
        theta, g = p.data, p.grad
        m, v = self.state["exp_avg"][i], self.state["exp_avg_sq"][i]
        s0, s1 = self._scratch[i]
        lr, b1, b2, eps, lam = self.lr, self.beta1, self.beta2, self.eps, self.weight_decay
        t = self.step_count
        kernel = fused.kernel_for("adam_update", theta)
        if kernel is not None and theta.dtype == g.dtype == m.dtype == v.dtype:
            # one fused kernel for θ's array module updates θ, m, v in place, step by step as
            # below (nanotf.functional.fused)
            kernel(theta, g, m, v, **self._kernel_constants(theta.dtype))
            return
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
    default_weight_decay = 1e-2
