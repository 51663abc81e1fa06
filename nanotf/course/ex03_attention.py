"""Notebook 03, "Attention, masks and 1/√d": the learner writes the attention backward."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..functional import attention_backward, attention_forward, padding_mask
from .grading import WrongAnswer, exercise, largest_error

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]


def _reference(dout: Any, q: Any, k: Any, v: Any, probs: Any, scale: float) -> Arrays:
    dv = probs.swapaxes(-1, -2) @ dout  # (B, H, Tk, Dv)
    dprobs = dout @ v.swapaxes(-1, -2)  # (B, H, Tq, Tk)
    dscores = probs * (dprobs - (dprobs * probs).sum(axis=-1, keepdims=True))
    return dscores @ k * scale, dscores.swapaxes(-1, -2) @ q * scale, dv


def _softmax_as_identity(dout: Any, q: Any, k: Any, v: Any, probs: Any, scale: float) -> Arrays:
    dv = probs.swapaxes(-1, -2) @ dout
    dscores = dout @ v.swapaxes(-1, -2)  # dP passed on as dS: the softmax's Jacobian left out
    return dscores @ k * scale, dscores.swapaxes(-1, -2) @ q * scale, dv


def _forgot_the_scale(dout: Any, q: Any, k: Any, v: Any, probs: Any, scale: float) -> Arrays:
    dv = probs.swapaxes(-1, -2) @ dout
    dprobs = dout @ v.swapaxes(-1, -2)
    dscores = probs * (dprobs - (dprobs * probs).sum(axis=-1, keepdims=True))
    return dscores @ k, dscores.swapaxes(-1, -2) @ q, dv  # no · scale


def _dk_without_transpose(dout: Any, q: Any, k: Any, v: Any, probs: Any, scale: float) -> Arrays:
    dv = probs.swapaxes(-1, -2) @ dout
    dprobs = dout @ v.swapaxes(-1, -2)
    dscores = probs * (dprobs - (dprobs * probs).sum(axis=-1, keepdims=True))
    return dscores @ k * scale, dscores @ q * scale, dv  # dS Q: (Tq, D), not dSᵀ Q: (Tk, D)


def _sum_without_p(dout: Any, q: Any, k: Any, v: Any, probs: Any, scale: float) -> Arrays:
    dv = probs.swapaxes(-1, -2) @ dout
    dprobs = dout @ v.swapaxes(-1, -2)
    dscores = probs * (dprobs - dprobs.sum(axis=-1, keepdims=True))  # Σ dP, not Σ dP ⊙ P
    return dscores @ k * scale, dscores.swapaxes(-1, -2) @ q * scale, dv


def _cases() -> list[dict[str, Any]]:
    """Inputs of several shapes (Tq ≠ Tk, length 1) and masks, and nanotf's gradients for them."""
    rng = np.random.default_rng(303)
    cases = []
    for (b, h, t_q, t_k, d, d_v), kind in [
        ((2, 3, 4, 5, 6, 7), "none"),
        ((2, 2, 5, 5, 4, 4), "causal+padding"),
        ((2, 2, 3, 6, 4, 3), "padding, one sequence all padding"),
        ((1, 1, 1, 1, 3, 2), "none"),
    ]:
        q = rng.normal(size=(b, h, t_q, d))
        k = rng.normal(size=(b, h, t_k, d))
        v = rng.normal(size=(b, h, t_k, d_v))
        mask, causal = None, False
        if kind.startswith("causal"):
            keep = np.ones((b, t_k), dtype=bool)
            keep[1, :2] = False  # left padding: with the causal mask, queries 0, 1 see nothing
            mask, causal = padding_mask(keep), True
        elif kind.startswith("padding"):
            keep = np.ones((b, t_k), dtype=bool)
            keep[0, -2:] = False
            keep[1, :] = False  # a fully masked batch element
            mask = padding_mask(keep)
        _, cache = attention_forward(q, k, v, mask=mask, causal=causal)
        dout = rng.normal(size=(b, h, t_q, d_v))
        cases.append(dict(q=q, k=k, v=v, probs=cache.probs, scale=1.0 / math.sqrt(d), dout=dout,
                          kind=kind, want=attention_backward(dout, cache)))
    return cases


@exercise(
    "attention_backward",
    notebook=3,
    tol=1e-9,
    hint="dV = Pᵀ dO, dP = dO Vᵀ, dS = P ⊙ (dP − Σⱼ dP ⊙ P), dQ = dS K · scale, "
    "dK = dSᵀ Q · scale (transposes with .swapaxes(-1, -2))",
    reference=_reference,
    mistakes={
        "softmax treated as the identity": _softmax_as_identity,
        "forgot the scale": _forgot_the_scale,
        "dK = dS Q without the transpose": _dk_without_transpose,
        "Σ dP without P in the softmax backward": _sum_without_p,
    },
)
def check_attention_backward(answer: Callable[..., Any]) -> float:
    """``answer(dout, q, k, v, probs, scale) -> (dq, dk, dv)`` against nanotf's
    ``attention_backward`` (itself checked against finite differences and PyTorch), in float64,
    with Tq ≠ Tk, causal and padding masks, and a fully masked row."""
    worst = 0.0
    for case in _cases():
        args = {name: case[name] for name in ("q", "k", "v", "probs")}
        want = case["want"]
        got = answer(case["dout"].copy(), *(a.copy() for a in args.values()), case["scale"])
        if not isinstance(got, (tuple, list)) or len(got) != 3:
            length = f" of length {len(got)}" if isinstance(got, (tuple, list)) else ""
            raise WrongAnswer(
                f"your function should return the tuple (dq, dk, dv), "
                f"got {type(got).__name__}{length}"
            )
        shapes = f"q {case['q'].shape}, k {case['k'].shape}, v {case['v'].shape}, {case['kind']}"
        for name, g, w in zip(("dq", "dk", "dv"), got, want, strict=True):
            worst = max(worst, largest_error(g, w, what=f"{name} for {shapes}"))
    return worst
