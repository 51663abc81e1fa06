"""Notebook 07, "Optimizers and schedules": the learner writes one Adam step,
``(theta, g, m, v, t, lr, beta1, beta2, eps) -> (theta, m, v)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..nn import Parameter
from ..optim import Adam
from .grading import WrongAnswer, exercise, largest_error


def _nanotf_adam(theta, g, m, v, t, lr, beta1, beta2, eps):
    """Update number ``t`` with ``nanotf.optim.Adam``, from the state (m, v) after ``t - 1``."""
    p = Parameter(np.array(theta, dtype=np.float64))
    opt = Adam([p], lr=lr, betas=(beta1, beta2), eps=eps)
    state = opt.state_dict()
    state.update({"step": t - 1, "exp_avg.0": np.array(m), "exp_avg_sq.0": np.array(v)})
    opt.load_state_dict(state)
    p.grad[...] = g
    opt.step()
    return p.data, opt.state["exp_avg"][0], opt.state["exp_avg_sq"][0]


def _reference(theta, g, m, v, t, lr, beta1, beta2, eps):
    return tuple(a.copy() for a in _nanotf_adam(theta, g, m, v, t, lr, beta1, beta2, eps))


def _no_bias_correction(theta, g, m, v, t, lr, beta1, beta2, eps):
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    return theta - lr * m / (np.sqrt(v) + eps), m, v


def _eps_inside_sqrt(theta, g, m, v, t, lr, beta1, beta2, eps):
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)
    return theta - lr * m_hat / np.sqrt(v_hat + eps), m, v


def _returns_corrected_moments(theta, g, m, v, t, lr, beta1, beta2, eps):
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)
    return theta - lr * m_hat / (np.sqrt(v_hat) + eps), m_hat, v_hat  # the state must stay raw


def _cases() -> list[dict[str, Any]]:
    """Steps 1, 2, 10 and 1000 with the defaults, the paper's betas and eps, a large learning
    rate, and gradients from 1e-5 to 10 (where eps matters and where it does not)."""
    rng = np.random.default_rng(707)
    cases = []
    for shape, t, lr, betas, eps, scale in [
        ((3, 4), 1, 1e-3, (0.9, 0.999), 1e-8, 1.0),
        ((5,), 2, 1e-3, (0.9, 0.98), 1e-9, 1e-5),
        ((2, 3, 2), 10, 0.1, (0.8, 0.99), 1e-8, 10.0),
        ((4, 4), 1000, 3e-4, (0.9, 0.98), 1e-6, 1e-3),
    ]:
        theta = rng.normal(size=shape)
        g = rng.normal(size=shape) * scale
        if t == 1:
            m, v = np.zeros(shape), np.zeros(shape)
        else:  # a state as earlier steps leave it: v ≥ 0, of the gradients' scale
            m = rng.normal(size=shape) * scale * 0.3
            v = rng.uniform(0.2, 2.0, size=shape) * scale**2
        cases.append(dict(theta=theta, g=g, m=m, v=v, t=t, lr=lr, beta1=betas[0],
                          beta2=betas[1], eps=eps))
    return cases


def _copied(case: dict[str, Any]) -> dict[str, Any]:
    """The case with fresh copies of its arrays (an answer may update them in place)."""
    return {k: a.copy() if isinstance(a, np.ndarray) else a for k, a in case.items()}


@exercise(
    "adam_step",
    notebook=7,
    tol=1e-9,
    hint="m ← β1·m + (1−β1)·g; v ← β2·v + (1−β2)·g²; m̂ = m/(1−β1^t), v̂ = v/(1−β2^t); "
    "θ ← θ − lr·m̂/(√v̂ + ε); return the raw m and v (not m̂, v̂) with the new θ",
    reference=_reference,
    mistakes={
        "no bias correction": _no_bias_correction,
        "ε inside the square root": _eps_inside_sqrt,
        "returned the bias-corrected moments as the state": _returns_corrected_moments,
    },
)
def check_adam_step(answer: Callable[..., Any]) -> float:
    """``answer(theta, g, m, v, t, lr, beta1, beta2, eps) -> (theta, m, v)`` against
    ``nanotf.optim.Adam`` at steps 1, 2, 10 and 1000 (float64). The error of θ is measured on
    its change, ``θ_new − θ``, so that a wrong step is not hidden by the size of θ."""
    worst = 0.0
    for i, case in enumerate(_cases()):
        want_theta, want_m, want_v = _nanotf_adam(**_copied(case))
        got = answer(**_copied(case))
        if not isinstance(got, (tuple, list)) or len(got) != 3:
            raise WrongAnswer(
                f"return the triple (theta, m, v), got {type(got).__name__}"
                + (f" of length {len(got)}" if isinstance(got, (tuple, list)) else "")
            )
        where = f"at step t={case['t']} (case {i})"
        largest_error(got[0], want_theta, what=f"theta {where}")  # type, shape, NaN checks
        step = np.asarray(got[0], dtype=np.float64) - case["theta"]
        worst = max(worst,
                    largest_error(step, want_theta - case["theta"], what=f"the step {where}"),
                    largest_error(got[1], want_m, what=f"m {where}"),
                    largest_error(got[2], want_v, what=f"v {where}"))
    return worst

