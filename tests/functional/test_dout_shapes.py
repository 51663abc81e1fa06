"""Every backward checks its ``dout``: the shape and dtype of its forward's output, one check
(``_checks.check_dout``) used by every op.

Without it NumPy broadcasts a wrong ``dout`` into some gradients and not into others: the issue's
example, ``layernorm_backward`` given ``dout`` of shape (C,) for an output of shape (N, C),
broadcast it into dx but not into dβ (dβ = 1 instead of N), a silently inconsistent gradient.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

import nanotf.functional as F
from nanotf.testing import strict as strict_mod


def forward_of(name: str, dtype: Any = np.float32) -> tuple[Any, Any]:
    """(out, cache) of the forward of ``name``'s backward, on small inputs of ``dtype``."""
    g = np.random.default_rng(0)

    def r(*shape: int) -> np.ndarray:
        return g.standard_normal(shape).astype(dtype)

    forwards: dict[str, Callable[[], tuple[Any, Any]]] = {
        "linear_backward": lambda: F.linear_forward(r(4, 3), r(5, 3), r(5)),
        "embedding_backward": lambda: F.embedding_forward(np.array([[1, 2], [3, 1]]), r(4, 3)),
        "relu_backward": lambda: F.relu_forward(r(4, 3)),
        "gelu_backward": lambda: F.gelu_forward(r(4, 3)),
        "bias_gelu_backward": lambda: F.bias_gelu_forward(r(4, 3), r(3)),
        "bias_relu_backward": lambda: F.bias_relu_forward(r(4, 3), r(3)),
        "dropout_backward": lambda: F.dropout_forward(r(4, 3), 0.5, rng=np.random.default_rng(0)),
        "softmax_backward": lambda: F.softmax_forward(r(4, 3)),
        "log_softmax_backward": lambda: F.log_softmax_forward(r(4, 3)),
        "masked_softmax_backward": lambda: F.masked_softmax_forward(
            r(2, 4, 3), np.array([True, False, True]), 0.5
        ),
        "cross_entropy_backward": lambda: F.cross_entropy_forward(r(4, 3), np.array([0, 1, 2, 0])),
        "layernorm_backward": lambda: F.layernorm_forward(r(4, 3), r(3), r(3)),
        "attention_backward": lambda: F.attention_forward(
            r(2, 1, 4, 3), r(2, 1, 5, 3), r(2, 1, 5, 2)
        ),
        "add_positional_backward": lambda: F.add_positional_forward(
            r(2, 4, 3), F.sinusoidal_encoding(6, 3, dtype=dtype)
        ),
    }
    return forwards[name]()


BACKWARDS = sorted(n for n in F.__all__ if n.endswith("_backward"))


def test_every_backward_is_covered() -> None:
    assert set(BACKWARDS) == {
        "add_positional_backward", "attention_backward", "bias_gelu_backward",
        "bias_relu_backward",
        "cross_entropy_backward", "dropout_backward", "embedding_backward", "gelu_backward",
        "layernorm_backward", "linear_backward", "log_softmax_backward",
        "masked_softmax_backward", "relu_backward", "softmax_backward",
    }


def test_layernorm_dout_of_one_row_is_refused() -> None:
    """The issue's example: dout (C,) for an output (N, C) used to give dx broadcast over the
    rows but dβ = dout (1 instead of N): now an error that says what was expected."""
    x = np.random.default_rng(0).standard_normal((4, 3))
    _, cache = F.layernorm_forward(x, np.ones(3), np.zeros(3))
    with pytest.raises(ValueError, match=re.escape(
        "layernorm_backward: dout must have the shape of the forward's output (..., C) = (4, 3), "
        "got (3,)"
    )):
        F.layernorm_backward(np.ones(3), cache)


def wrong_shapes(shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Shapes NumPy would broadcast against ``shape`` (or that merely hold as many numbers)."""
    if shape == ():
        return [(1,), (3,), (1, 1)]
    return [shape[1:], (1, *shape[1:]), (*shape, 1), (*shape[:-1], shape[-1] + 1),
            (math.prod(shape),)]


@pytest.mark.parametrize("name", BACKWARDS)
def test_a_dout_of_another_shape_is_refused(name: str) -> None:
    out, cache = forward_of(name)
    backward = getattr(F, name)
    arg = "dloss" if name == "cross_entropy_backward" else "dout"
    for shape in wrong_shapes(tuple(np.shape(out))):
        with pytest.raises(ValueError, match=rf"^{name}: {arg} must have the shape of the "
                                             rf"forward's output .*got {re.escape(str(shape))}"):
            backward(np.ones(shape, np.float32), cache)


@pytest.mark.parametrize("name", BACKWARDS)
def test_a_dout_that_is_no_float_array_is_refused(name: str) -> None:
    out, cache = forward_of(name)
    backward = getattr(F, name)
    arg = "dloss" if name == "cross_entropy_backward" else "dout"
    ones = np.ones(np.shape(out), np.float32)
    for dout, given in [(ones.tolist(), "list"), (torch.from_numpy(ones), "torch.Tensor"),
                        (ones.astype(np.int64), "int64"), (ones.astype(bool), "bool"),
                        (ones.astype(np.float16), "float16"), (None, "None")]:
        if name == "cross_entropy_backward" and given == "list":
            continue  # the 0-d loss's "list" is a plain float, which its backward takes
        with pytest.raises(TypeError, match=rf"^{name} {arg} must be a floating-point array "
                                            rf"\(float32 or float64\), got {re.escape(given)}"):
            backward(dout, cache)


@pytest.mark.parametrize("name", BACKWARDS)
def test_a_dout_of_another_dtype_is_refused(name: str) -> None:
    """A float64 dout for a float32 forward would make some gradients float64 and leave the
    in-place ones float32."""
    out, cache = forward_of(name, np.float32)
    with pytest.raises(TypeError, match=rf"^{name}: d\w+ must have the dtype of the forward's "
                                        r"output, float32, got float64"):
        getattr(F, name)(np.ones(np.shape(out), np.float64), cache)


@pytest.mark.parametrize("name", BACKWARDS)
def test_the_right_dout_is_taken_on_both_backends(name: str) -> None:
    out, cache = forward_of(name)
    grads = getattr(F, name)(np.ones(np.shape(out), np.float32), cache)
    assert all(g is None or g.dtype == np.float32 for g in (grads if isinstance(grads, tuple)
                                                             else (grads,)))


def test_the_loss_takes_a_number() -> None:
    _, cache = forward_of("cross_entropy_backward")
    want = F.cross_entropy_backward(np.ones((), np.float32), cache)
    for dloss in (1.0, 1, np.float32(1.0), np.float64(1.0)):
        np.testing.assert_array_equal(F.cross_entropy_backward(dloss, cache), want)
    for dloss in (True, "1", 1j):
        with pytest.raises(TypeError, match=r"cross_entropy_backward dloss must be"):
            F.cross_entropy_backward(dloss, cache)


def test_positional_backward_checks_batch_and_length_too() -> None:
    """The seq2seq model keeps one positional cache per side, so the check is exact: a dout of
    another batch size or length is refused, not silently scaled."""
    out, cache = forward_of("add_positional_backward")
    b, t, c = out.shape
    np.testing.assert_array_equal(
        F.add_positional_backward(np.ones(out.shape, np.float32), cache), cache.scale
    )
    for shape in [(b + 1, t, c), (b, t + 1, c)]:
        with pytest.raises(ValueError, match=re.escape(
            f"add_positional_backward: dout must have the shape of the forward's output "
            f"(B, T, C) = {out.shape}, got {shape}"
        )):
            F.add_positional_backward(np.ones(shape, np.float32), cache)


def test_dout_check_on_the_strict_stand_in() -> None:
    """The check reads only shapes and dtypes: it runs on device arrays without host copies."""
    x, gamma, beta = (strict_mod.asarray(a) for a in (np.arange(12.0).reshape(4, 3) % 5,
                                                      np.ones(3), np.zeros(3)))
    _, cache = F.layernorm_forward(x, gamma, beta)
    with pytest.raises(ValueError, match=r"layernorm_backward: dout must have the shape"):
        F.layernorm_backward(strict_mod.asarray(np.ones(3)), cache)
    dx, dgamma, dbeta = F.layernorm_backward(strict_mod.asarray(np.ones((4, 3))), cache)
    np.testing.assert_array_equal(dbeta.get(), [4.0, 4.0, 4.0])
