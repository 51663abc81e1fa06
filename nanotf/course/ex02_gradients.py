"""Notebook 02, "Trusting a gradient": the learner fixes a GELU (tanh form) backward in which a bug
was planted."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..functional import gelu_backward, gelu_forward
from ..gradcheck import numerical_gradient
from .grading import exercise, largest_error

_C = 0.044715
_S = math.sqrt(2.0 / math.pi)


def _reference(dout: np.ndarray, x: np.ndarray) -> np.ndarray:
    return gelu_backward(dout, gelu_forward(x, approximate="tanh")[1])


def _planted_bug(dout: np.ndarray, x: np.ndarray) -> np.ndarray:
    t = np.tanh(_S * (x + _C * x**3))
    return dout * (0.5 * (1 + t) + 0.5 * x * (1 - t**2) * _S * (1 + _C * x**2))  # 1 + c x², not 3c


def _no_product_rule(dout: np.ndarray, x: np.ndarray) -> np.ndarray:
    t = np.tanh(_S * (x + _C * x**3))
    return dout * 0.5 * (1 + t)  # the derivative of ½(1 + tanh u) times x, without x's own part


def _tanh_prime_wrong(dout: np.ndarray, x: np.ndarray) -> np.ndarray:
    t = np.tanh(_S * (x + _C * x**3))
    du_dx = _S * (1 + 3 * _C * x**2)
    return dout * (0.5 * (1 + t) + 0.5 * x * (1 - t) * du_dx)  # 1 − t, not 1 − t²


def _exact_gelu_instead(dout: np.ndarray, x: np.ndarray) -> np.ndarray:
    return gelu_backward(dout, gelu_forward(x)[1])  # Φ(x) + x φ(x): the erf form's derivative


@exercise(
    "gelu_backward_bug",
    notebook=2,
    tol=1e-8,
    hint="dGELU/dx = ½(1 + t) + ½ x (1 − t²) du/dx with t = tanh u; check du/dx by "
    "differentiating u = √(2/π) (x + c x³) term by term",
    reference=_reference,
    mistakes={
        "the planted bug (1 + c x²)": _planted_bug,
        "forgot the product rule": _no_product_rule,
        "tanh' = 1 − t": _tanh_prime_wrong,
        "the erf GELU's derivative": _exact_gelu_instead,
    },
)
def check_gelu_backward_bug(answer: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> float:
    """``answer(dout, x) -> dx`` against the seven-point finite difference of
    ``gelu_forward(x, approximate="tanh")``, in float64, on inputs from -6 to 6 (both the curved
    middle and the saturated tails) and of several shapes."""
    rng = np.random.default_rng(202)
    worst = 0.0
    for shape in [(9,), (3, 4), (2, 3, 5)]:
        x = rng.normal(size=shape) * 2.5
        x.reshape(-1)[0] = 0.0  # a GELU has no kink: 0 is fine
        dout = rng.normal(size=shape)
        numeric = numerical_gradient(lambda x=x: gelu_forward(x, approximate="tanh")[0], x, dout)
        got = answer(dout.copy(), x.copy())
        worst = max(worst, largest_error(got, numeric, what=f"dx for x of shape {shape}"))
    return worst
