"""``SGD``: gradient descent, with optional momentum, dampening, Nesterov and weight decay.

``θ ← θ − lr·g``. With *momentum* μ it keeps a running sum of past gradients ``b ← μ·b + g``
and steps along ``b`` instead, which smooths out noisy gradients and speeds up travel along
directions where the gradient keeps its sign. *Nesterov* momentum looks one step ahead: it steps
along ``g + μ·b``. As ``torch.optim.SGD``, in place (see ``nanotf.optim``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..backend import get_array_module
from ..nn.parameter import Parameter
from .base import Optimizer
from .checks import as_flag, as_real

__all__ = ["SGD"]


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
            lr=as_real("lr", hyper["lr"], low=0.0),
            momentum=as_real("momentum", hyper["momentum"], low=0.0),
            dampening=as_real("dampening", hyper["dampening"], low=0.0, high=1.0),
            weight_decay=as_real("weight_decay", hyper["weight_decay"], low=0.0),
            nesterov=as_flag("nesterov", hyper["nesterov"]),
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
