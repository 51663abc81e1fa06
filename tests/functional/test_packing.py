"""``token_packing``, ``pack_tokens`` and ``unpack_tokens``: finite differences, torch, the
adjoint identity, and bad input.

The two are each other's backward; finite differences (float64) check each pair, torch's
indexing and its autograd check forward and backward (exactly: they move values, they compute
nothing), and hypothesis checks ``<pack(x), r> = <x, unpack(r)>`` on random masks.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nanotf.functional import TokenPacking, pack_tokens, token_packing, unpack_tokens
from nanotf.gradcheck import gradcheck
from tests.conftest import Backend, assert_gradcheck, normal

MASKS = [
    np.array([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]], bool),  # three lengths
    np.array([[0, 0], [1, 1]], bool),  # an empty row
    np.array([[1, 0, 1, 1, 0]], bool),  # holes: positions need not be a prefix
]


def _pack_pair(x, packing):
    return pack_tokens(x, packing), packing


def _unpack_pair(rows, packing):
    return unpack_tokens(rows, packing), packing


@pytest.mark.parametrize("mask", MASKS)
@pytest.mark.parametrize("width", [(), (3,), (2, 3)])
def test_gradcheck(fd_backend: Backend, mask, width):
    packing = token_packing(fd_backend.asarray(mask))
    g = np.random.default_rng(0)
    x = fd_backend.asarray(normal(g, (*mask.shape, *width)))
    errors = gradcheck(_pack_pair, lambda d, p: unpack_tokens(d, p), {"x": x},
                       forward_kwargs={"packing": packing})
    assert_gradcheck(errors, "pack_tokens")
    rows = fd_backend.asarray(normal(g, (int(mask.sum()), *width)))
    errors = gradcheck(_unpack_pair, lambda d, p: pack_tokens(d, p), {"rows": rows},
                       forward_kwargs={"packing": packing})
    assert_gradcheck(errors, "unpack_tokens")


@pytest.mark.parametrize("mask", MASKS)
def test_matches_torch(xp_params: Backend, dtype, mask):
    g = np.random.default_rng(1)
    b, t = mask.shape
    n, c = int(mask.sum()), 3
    x, dpacked = normal(g, (b, t, c), dtype), normal(g, (n, c), dtype)
    rows, dunpacked = normal(g, (n, c), dtype), normal(g, (b, t, c), dtype)
    packing = token_packing(xp_params.asarray(mask))
    got_packed = pack_tokens(xp_params.asarray(x), packing)
    got_dx = unpack_tokens(xp_params.asarray(dpacked), packing)  # pack's backward
    got_unpacked = unpack_tokens(xp_params.asarray(rows), packing)
    got_drows = pack_tokens(xp_params.asarray(dunpacked), packing)  # unpack's backward

    real = torch.from_numpy(mask)
    tx = torch.from_numpy(x).requires_grad_(True)
    want_packed = tx[real]  # torch's boolean index: the real tokens in row order
    want_packed.backward(torch.from_numpy(dpacked))
    tr = torch.from_numpy(rows).requires_grad_(True)
    want_unpacked = torch.zeros(b, t, c, dtype=tr.dtype).index_put((real,), tr)
    want_unpacked.backward(torch.from_numpy(dunpacked))
    for got, want in [(got_packed, want_packed), (got_dx, tx.grad),
                      (got_unpacked, want_unpacked), (got_drows, tr.grad)]:
        (host,) = xp_params.host(got)
        assert host.dtype == dtype
        np.testing.assert_array_equal(host, want.detach().numpy())


def test_packing_holds_the_real_positions():
    packing = token_packing(np.array([[1, 1, 0], [0, 1, 0]]))  # an integer 0/1 mask
    assert isinstance(packing, TokenPacking)
    np.testing.assert_array_equal(packing.index, [0, 1, 4])
    assert packing.shape == (2, 3) and packing.n_tokens == 3
    assert packing.mask.dtype == bool


@settings(max_examples=60, deadline=None)
@given(b=st.integers(1, 4), t=st.integers(1, 6), c=st.integers(1, 3), seed=st.integers(0, 2**31))
def test_pack_and_unpack_are_adjoint(b, t, c, seed):
    """<pack(x), r> = <x, unpack(r)>, and pack undoes unpack, on any mask."""
    g = np.random.default_rng(seed)
    mask = g.random((b, t)) < 0.6
    packing = token_packing(mask)
    x, r = g.standard_normal((b, t, c)), g.standard_normal((int(mask.sum()), c))
    left = float(np.sum(pack_tokens(x, packing) * r))
    right = float(np.sum(x * unpack_tokens(r, packing)))
    assert abs(left - right) <= 1e-12 * max(1.0, np.abs(x).sum() * np.abs(r).max(initial=0.0))
    np.testing.assert_array_equal(pack_tokens(unpack_tokens(r, packing), packing), r)
    np.testing.assert_array_equal(unpack_tokens(r, packing)[~mask], 0.0)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda p: token_packing(np.ones(3, bool)), ValueError,
         r"token_packing mask must have 2 dimensions, got shape \(3,\)"),
        (lambda p: token_packing(np.ones((2, 2))), TypeError,
         r"token_packing mask must be boolean .* got float64"),
        (lambda p: pack_tokens(np.ones((2, 3, 4)), np.ones((2, 3), bool)), TypeError,
         r"pack_tokens packing must be a TokenPacking \(token_packing\(mask\)\), got bool"),
        (lambda p: pack_tokens(np.ones((3, 2, 4)), p), ValueError,
         r"pack_tokens input must have the packing's \(batch, length\) = \(2, 3\) .* got shape "
         r"\(3, 2, 4\)"),
        (lambda p: unpack_tokens(np.ones((4, 4)), p), ValueError,
         r"unpack_tokens rows must have one row per real token, \(N, \.\.\.\) with N = 3, got "
         r"shape \(4, 4\)"),
        (lambda p: unpack_tokens([1.0, 2.0, 3.0], p), TypeError,
         r"unpack_tokens rows must be a NumPy or CuPy array, got list"),
    ],
)
def test_bad_input_gets_a_clear_error(call, error, message):
    packing = token_packing(np.array([[1, 1, 0], [0, 1, 0]], bool))
    with pytest.raises(error, match=message):
        call(packing)
