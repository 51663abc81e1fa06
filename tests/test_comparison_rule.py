"""The suite's comparison rule (``rel_error``, ``terms_size``, ``grad_floor`` in conftest).

The op tests pass on every CPU only if a quantity that vanishes by design is judged against the
size of its terms: torch's float32 kernels return exact zeros on one CPU (AMD Zen 3, AVX2) and
round-off near 1e-7 on another (Intel Sapphire Rapids, AVX-512/AMX) for the same dq of a
one-key attention. These tests replay both references without needing either CPU.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nanotf.functional import attention_backward, attention_forward
from tests.conftest import RTOL, grad_floor, rel_error, terms_size
from tests.functional.test_attention import SIZES, data, floors, reference

F32 = np.dtype(np.float32)


def one_key_attention() -> tuple[list[np.ndarray], tuple, list[float]]:
    """nanotf's out, dq, dk, dv for the one-key size, torch's reference and the floors."""
    q, k, v, dout, mask, causal, dense = data(SIZES[0], "none", np.float32)
    out, cache = attention_forward(q, k, v, mask=mask, causal=causal)
    got = [out, *attention_backward(dout, cache)]
    return got, reference(q, k, v, dout, dense), floors(q, k, v, dout, dense)


def test_one_key_dq_vanishes_by_design() -> None:
    got, want, floor = one_key_attention()
    assert floor[1] > 0 and floor[2] > 0, "dq and dk get a floor where every query sees one key"
    assert floor[0] == floor[3] == 0.0, "out and dv do not vanish: no floor"
    assert np.abs(got[1]).max() <= 1e-6 * floor[1]  # nanotf: zero up to round-off


@pytest.mark.parametrize("noise", [0.0, 3e-8, 1e-7, 4e-7])
def test_round_off_of_either_cpu_passes(noise: float) -> None:
    """A reference of exact zeros (AVX2) or of round-off ``noise · floor`` (AVX-512) passes."""
    got, want, floor = one_key_attention()
    rng = np.random.default_rng(0)
    for i in (1, 2):  # dq, dk
        noisy = want[i] + noise * floor[i] * rng.uniform(-1, 1, want[i].shape)
        assert rel_error(got[i], noisy, floor[i]) <= RTOL[F32]
        # without the floor, noise against noise is an error of about 1
        if noise > 0:
            assert rel_error(got[i], noisy) > 0.1


def test_a_wrong_vanishing_result_still_fails() -> None:
    """The floor excuses round-off, not a gradient that should be zero and is not."""
    got, want, floor = one_key_attention()
    wrong = got[1] + 1e-3 * floor[1]
    assert rel_error(wrong, want[1], floor[1]) > RTOL[F32]


def test_no_floor_where_nothing_vanishes() -> None:
    q, k, v, dout, _, _, dense = data(SIZES[1], "none", np.float32)
    assert floors(q, k, v, dout, dense) == [0.0, 0.0, 0.0, 0.0]


def test_terms_size_and_rel_error() -> None:
    assert terms_size(np.array([-3.0, 2.0]), torch.tensor([0.5]), 2.0) == 3.0
    assert rel_error(np.zeros(3), np.zeros(3)) == 0.0
    assert rel_error(np.ones(3), np.zeros(3)) == math.inf  # no scale: any difference fails
    assert rel_error(np.array([1.0, 2.0]), np.array([1.0, 4.0])) == 0.5
    # the result's own size never excuses it: a result 10x too large is an error of 9
    assert rel_error(np.array([10.0]), np.array([1.0])) == 9.0
    with pytest.raises(AssertionError, match="shapes differ"):
        rel_error(np.zeros(2), np.zeros(3))


def test_grad_floor_only_for_key_biases() -> None:
    grads = [np.array([1.0, -5.0]), torch.tensor([2.0])]
    assert grad_floor("encoder.layers.0.self_attn.k_proj.bias", grads) == 5.0
    assert grad_floor("encoder.layer.1.attention.self.key.bias", grads) == 5.0
    assert grad_floor("transformer.layer.0.attention.k_lin.bias", grads) == 5.0
    assert grad_floor("encoder.layers.0.self_attn.q_proj.bias", grads) == 0.0
    assert grad_floor("transformer.layer.0.attention.k_lin.weight", grads) == 0.0
