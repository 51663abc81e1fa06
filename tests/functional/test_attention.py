"""Scaled dot-product attention (masks, dropout), split/merge heads, padding and causal masks.

The reference is ``torch.nn.functional.scaled_dot_product_attention`` with a boolean
``attn_mask`` (True = may attend), and for dropout its definition written out in torch.
nanotf's causal mask is aligned to the bottom right (torch's ``causal_lower_right``): for
Tq = Tk it is the usual lower triangle.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as tF
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn.attention.bias import causal_lower_right

from nanotf.functional import (
    attention_backward,
    attention_forward,
    causal_mask,
    dropout_forward,
    merge_heads,
    padding_mask,
    split_heads,
)
from nanotf.gradcheck import gradcheck
from tests.conftest import (
    Backend,
    assert_all_close,
    assert_dtypes,
    assert_gradcheck,
    assert_same_on_strict,
    terms_size,
    torch_reference,
)

# (B, H, Tq, Tk, D, Dv): batch 1 and length 1; 3 heads of odd size 5; Tq < Tk with Dv != D;
# Tq > Tk; a head size of 1
SIZES = [(1, 1, 1, 1, 4, 4), (2, 3, 4, 4, 5, 5), (2, 2, 3, 6, 4, 3), (1, 3, 6, 3, 5, 5),
         (3, 1, 5, 5, 1, 2)]
MASKS = ["none", "padding", "causal", "padding+causal", "dense"]
# with Tq > Tk the bottom-right causal mask leaves the first queries nothing: tested on its own
CASES = [(s, m) for s in SIZES for m in MASKS if not ("causal" in m and s[2] > s[3])]
NAMES = ["attention.out", "attention.dq", "attention.dk", "attention.dv"]


def data(size, mask_kind, dtype, seed=0):
    """q, k, v, dout and the mask as nanotf takes it (bool) plus the dense (B, H, Tq, Tk) mask
    for torch, built independently (torch's tril and broadcasting). No row is fully masked."""
    b, h, t_q, t_k, d, d_v = size
    g = np.random.default_rng(seed)
    q, k = (g.standard_normal((b, h, t, d)).astype(dtype) for t in (t_q, t_k))
    v = g.standard_normal((b, h, t_k, d_v)).astype(dtype)
    dout = g.standard_normal((b, h, t_q, d_v)).astype(dtype)
    dense = torch.ones(b, h, t_q, t_k, dtype=torch.bool)
    mask, causal = None, "causal" in mask_kind
    if "padding" in mask_kind:
        # one real key or more: with one, dq and dk of that row vanish by design (``floors``)
        lengths = g.integers(1, t_k + 1, size=b)
        keep = np.arange(t_k)[None, :] < lengths[:, None]  # (B, Tk)
        mask = padding_mask(keep)
        dense = dense & torch.from_numpy(keep)[:, None, None, :]
    if causal:
        dense = dense & torch.ones(t_q, t_k, dtype=torch.bool).tril(diagonal=t_k - t_q)
    if mask_kind == "dense":
        # one mask per head, or one for all heads (broadcast) where H is even
        mask = g.random((b, h if h % 2 else 1, t_q, t_k)) < 0.7
        mask[..., g.integers(0, t_k)] = True  # a key every query sees
        dense = dense & torch.from_numpy(mask)
    return q, k, v, dout, mask, causal, dense


def run(bk: Backend, q, k, v, dout, mask, causal, **kw):
    out, cache = attention_forward(
        bk.asarray(q), bk.asarray(k), bk.asarray(v), mask=bk.asarray(mask), causal=causal, **kw
    )
    return bk.host(out, *attention_backward(bk.asarray(dout), cache))


def floors(q, k, v, dout, dense, scale=None):
    """Floors of the results that vanish by design (``terms_size`` in conftest).

    Where every query sees exactly one key (Tk = 1, say), every weight is 1 and dS = P ⊙ (dP -
    Σ_j P_j dP_j) = 0, so dq = dS K · scale and dk = dSᵀ Q · scale are exactly zero; torch's
    float32 kernels return round-off of the terms P dP K · scale there (dP = dout Vᵀ), and which
    round-off depends on the CPU. Elsewhere nothing vanishes and no floor is used.
    """
    if int(dense.sum(dim=-1).max()) > 1:
        return [0.0, 0.0, 0.0, 0.0]
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    dp = dout.astype(np.float64) @ v.astype(np.float64).swapaxes(-1, -2)  # (B, H, Tq, Tk)
    return [0.0, terms_size(dp, k, scale), terms_size(dp, q, scale), 0.0]


def reference(q, k, v, dout, dense, scale=None):
    out, grads = torch_reference(
        lambda q, k, v: tF.scaled_dot_product_attention(q, k, v, attn_mask=dense, scale=scale),
        {"q": q, "k": k, "v": v},
        dout,
    )
    return out, grads["q"], grads["k"], grads["v"]


@pytest.mark.parametrize(("size", "mask_kind"), CASES)
def test_gradcheck(fd_backend: Backend, size, mask_kind):
    q, k, v, _, mask, causal, _ = data(size, mask_kind, np.float64)
    errors = gradcheck(
        attention_forward,
        attention_backward,
        {"q": fd_backend.asarray(q), "k": fd_backend.asarray(k), "v": fd_backend.asarray(v)},
        forward_kwargs={"mask": fd_backend.asarray(mask), "causal": causal},
    )
    assert_gradcheck(errors, "attention")


@pytest.mark.parametrize(("size", "mask_kind"), CASES)
def test_matches_torch(xp_params: Backend, dtype, size, mask_kind):
    q, k, v, dout, mask, causal, dense = data(size, mask_kind, dtype)
    got = run(xp_params, q, k, v, dout, mask, causal)
    want = reference(q, k, v, dout, dense)
    assert_all_close(got, want, dtype, NAMES, floors(q, k, v, dout, dense))
    assert_dtypes(got, dtype, NAMES)


def test_2d_mask_broadcasts_over_batch_and_heads(xp_params: Backend, dtype):
    q, k, v, dout, _, _, _ = data((2, 3, 4, 5, 5, 5), "none", dtype)
    mask = np.random.default_rng(3).random((4, 5)) < 0.6
    mask[:, 0] = True
    got = run(xp_params, q, k, v, dout, mask, False)
    assert_all_close(got, reference(q, k, v, dout, torch.from_numpy(mask)), dtype, NAMES)


@pytest.mark.parametrize("scale", [0.125, 1.0, 2.5])
def test_explicit_scale_matches_torch(dtype, scale):
    q, k, v, dout, mask, causal, dense = data((2, 3, 4, 4, 5, 5), "padding", dtype)
    got = run(Backend("numpy", np), q, k, v, dout, mask, causal, scale=scale)
    assert_all_close(got, reference(q, k, v, dout, dense, scale=scale), dtype, NAMES)


@pytest.mark.parametrize(("t_q", "t_k"), [(4, 4), (3, 6), (1, 5)])
def test_causal_is_torchs_lower_right_causal_bias(dtype, t_q, t_k):
    q, k, v, dout, _, _, _ = data((2, 3, t_q, t_k, 5, 5), "none", dtype)
    got = run(Backend("numpy", np), q, k, v, dout, None, True)
    want = reference(q, k, v, dout, causal_lower_right(t_q, t_k))
    assert_all_close(got, want, dtype, NAMES)
    if t_q == t_k:  # square: also torch's is_causal=True (which aligns top-left)
        out = tF.scaled_dot_product_attention(*map(torch.from_numpy, (q, k, v)), is_causal=True)
        assert_all_close(got[:1], [out.numpy()], dtype, NAMES[:1])


# -- dropout on the attention weights --------------------------------------------------------


def attention_dropout_reference(q, k, v, dout, dense, keep, p):
    """softmax → masked → times keep / (1 - p) → @ v, in torch, so dV uses P after dropout."""

    def f(q, k, v):
        s = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
        probs = torch.softmax(s.masked_fill(~dense, float("-inf")), dim=-1)
        return (probs * torch.from_numpy(keep) / (1 - p)) @ v

    out, grads = torch_reference(f, {"q": q, "k": k, "v": v}, dout)
    return out, grads["q"], grads["k"], grads["v"]


@pytest.mark.parametrize("p", [0.1, 0.5])
@pytest.mark.parametrize("mask_kind", ["none", "padding+causal"])
def test_dropout_matches_torch(xp_params: Backend, dtype, mask_kind, p):
    size = (2, 3, 4, 6, 5, 5)
    q, k, v, dout, mask, causal, dense = data(size, mask_kind, dtype)
    got = run(xp_params, q, k, v, dout, mask, causal, dropout_p=p, training=True,
              rng=xp_params.rng(11))
    # the same generator state draws the same mask on an array of the same shape and dtype
    ones = xp_params.asarray(np.ones(size[:3] + size[3:4], dtype))
    keep = xp_params.host(dropout_forward(ones, p, rng=xp_params.rng(11))[0])[0] != 0
    assert 0 < keep.mean() < 1
    want = attention_dropout_reference(q, k, v, dout, dense, keep, p)
    assert_all_close(got, want, dtype, NAMES)
    assert_dtypes(got, dtype, NAMES)


def test_dropout_gradcheck(fd_backend: Backend):
    q, k, v, _, mask, causal, _ = data((2, 2, 3, 4, 3, 3), "padding+causal", np.float64)

    def forward(q, k, v):  # a fresh generator per call: the same mask every time
        return attention_forward(q, k, v, mask=fd_backend.asarray(mask), causal=causal,
                                 dropout_p=0.3, training=True, rng=fd_backend.rng(3))

    inputs = {"q": q, "k": k, "v": v}
    errors = gradcheck(forward, attention_backward,
                       {n: fd_backend.asarray(a) for n, a in inputs.items()})
    assert_gradcheck(errors, "attention")


def test_dropout_is_off_in_eval():
    q, k, v, dout, mask, causal, _ = data((2, 3, 4, 4, 5, 5), "padding", np.float64)
    a = run(Backend("numpy", np), q, k, v, dout, mask, causal, dropout_p=0.5, training=False)
    b = run(Backend("numpy", np), q, k, v, dout, mask, causal)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


# -- a query that may attend to nothing -------------------------------------------------------


def test_fully_masked_row_gives_zeros_not_nan(xp_params: Backend, dtype):
    """torch's masked softmax would give NaN (0/0) there; nanotf gives zero weights, a zero
    output and zero gradients for that query, and leaves every other row as torch has it."""
    q, k, v, dout, _, _, _ = data((2, 3, 4, 5, 5, 5), "none", dtype)
    mask = np.ones((2, 1, 4, 5), bool)
    mask[0, 0, 2] = False  # batch 0, query 2 (all heads): nothing to attend to
    mask[1, 0, 0, 1:] = False  # batch 1, query 0: only key 0
    out, dq, dk, dv = got = run(xp_params, q, k, v, dout, mask, False)
    assert all(np.isfinite(a).all() for a in got)
    np.testing.assert_array_equal(out[0, :, 2], 0.0)
    np.testing.assert_array_equal(dq[0, :, 2], 0.0)

    # the naive masked softmax is NaN on that row
    s = torch.from_numpy(q) @ torch.from_numpy(k).transpose(-1, -2)
    naive = torch.softmax(s.masked_fill(~torch.from_numpy(mask), float("-inf")), dim=-1)
    assert torch.isnan(naive[0, :, 2]).all()

    # the rest equals torch run without that query (its gradient contributions are zero)
    rows = [0, 1, 3]
    want = reference(q[0:1, :, rows], k[0:1], v[0:1], dout[0:1, :, rows],
                     torch.from_numpy(mask[0:1, :, rows]))
    assert_all_close([out[0:1, :, rows], dq[0:1, :, rows], dk[0:1], dv[0:1]], want, dtype, NAMES)


def test_fully_masked_row_gradcheck(fd_backend: Backend):
    q, k, v, _, _, _, _ = data((1, 2, 3, 4, 3, 3), "none", np.float64)
    mask = np.ones((1, 1, 3, 4), bool)
    mask[..., 1, :] = False
    inputs = {"q": q, "k": k, "v": v}
    errors = gradcheck(attention_forward, attention_backward,
                       {n: fd_backend.asarray(a) for n, a in inputs.items()},
                       forward_kwargs={"mask": fd_backend.asarray(mask)})
    assert_gradcheck(errors, "attention")


def test_causal_with_more_queries_than_keys():
    """Bottom-right alignment with Tq > Tk: the first Tq - Tk queries see no key (zeros)."""
    q, k, v, dout, _, _, _ = data((1, 2, 5, 3, 4, 4), "none", np.float64)
    out, dq, dk, dv = run(Backend("numpy", np), q, k, v, dout, None, True)
    np.testing.assert_array_equal(out[:, :, :2], 0.0)
    np.testing.assert_array_equal(dq[:, :, :2], 0.0)
    dense = torch.ones(3, 3, dtype=torch.bool).tril()
    want = reference(q[:, :, 2:], k, v, dout[:, :, 2:], dense)
    assert_all_close([out[:, :, 2:], dq[:, :, 2:], dk, dv], want, np.float64, NAMES)


def test_strict_equals_numpy():
    q, k, v, dout, mask, causal, _ = data((2, 3, 4, 6, 5, 5), "padding+causal", np.float32)
    assert_same_on_strict(lambda bk: run(bk, q, k, v, dout, mask, causal))
    assert_same_on_strict(
        lambda bk: run(bk, q, k, v, dout, mask, causal, dropout_p=0.2, training=True,
                       rng=bk.rng(0))
    )


# -- heads and masks --------------------------------------------------------------------------


@pytest.mark.parametrize(("b", "t", "h", "d"), [(1, 1, 1, 4), (2, 4, 3, 5), (3, 2, 4, 1)])
def test_split_and_merge_heads_match_torch(xp_params: Backend, dtype, b, t, h, d):
    x = np.random.default_rng(0).standard_normal((b, t, h * d)).astype(dtype)
    (split,) = xp_params.host(split_heads(xp_params.asarray(x), h))
    want = torch.from_numpy(x).view(b, t, h, d).transpose(1, 2).numpy()
    np.testing.assert_array_equal(split, want)
    assert split.dtype == dtype
    (merged,) = xp_params.host(merge_heads(xp_params.asarray(split)))
    np.testing.assert_array_equal(merged, x)


def test_split_and_merge_are_contiguous():
    x = np.random.default_rng(0).standard_normal((2, 4, 15))
    s = split_heads(x, 3)
    assert s.flags.c_contiguous and s.shape == (2, 3, 4, 5)
    m = merge_heads(s)
    assert m.flags.c_contiguous and m.shape == (2, 4, 15)


def test_split_heads_gradcheck(fd_backend: Backend):
    """split is a reshape and a transpose: its backward is merge (and the other way round)."""
    x = fd_backend.asarray(np.random.default_rng(0).standard_normal((2, 4, 15)))
    errors = gradcheck(lambda x: (split_heads(x, 3), None), lambda dout, _: merge_heads(dout),
                       {"x": x})
    assert_gradcheck(errors, "split_merge_heads")
    y = fd_backend.asarray(np.random.default_rng(1).standard_normal((2, 3, 4, 5)))
    errors = gradcheck(lambda y: (merge_heads(y), None), lambda dout, _: split_heads(dout, 3),
                       {"y": y})
    assert_gradcheck(errors, "split_merge_heads")


def test_multi_head_self_attention_gradcheck(fd_backend: Backend):
    """x (B, T, C) → three head splits → masked attention → merge, end to end."""
    b, t, h, d = 2, 4, 3, 5
    g = np.random.default_rng(0)
    x = fd_backend.asarray(g.standard_normal((b, t, h * d)))
    keep = fd_backend.asarray(np.array([[1, 1, 1, 0], [1, 1, 1, 1]]))
    mask = padding_mask(keep)

    def forward(x):
        heads = split_heads(x, h)
        out, cache = attention_forward(heads, heads * 0.5, heads * 2.0, mask=mask, causal=True)
        return merge_heads(out), cache

    def backward(dout, cache):
        dq, dk, dv = attention_backward(split_heads(dout, h), cache)
        return merge_heads(dq + 0.5 * dk + 2.0 * dv)

    assert_gradcheck(gradcheck(forward, backward, {"x": x}), "attention")


def test_padding_mask(xp_params: Backend):
    keep = xp_params.asarray(np.array([[1, 1, 0], [1, 0, 0]]))
    (m,) = xp_params.host(padding_mask(keep))
    assert m.shape == (2, 1, 1, 3) and m.dtype == bool
    np.testing.assert_array_equal(m[:, 0, 0], [[True, True, False], [True, False, False]])


@pytest.mark.parametrize(("t_q", "t_k"), [(1, 1), (4, 4), (3, 6), (5, 2)])
def test_causal_mask(xp_params: Backend, t_q, t_k):
    (m,) = xp_params.host(causal_mask(t_q, t_k, xp_params.xp))
    want = torch.ones(t_q, t_k, dtype=torch.bool).tril(diagonal=t_k - t_q).numpy()
    np.testing.assert_array_equal(m, want)
    if t_q == t_k:
        np.testing.assert_array_equal(m, np.tril(np.ones((t_q, t_q), bool)))


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize("mask_dtype", [np.int64, np.float32])
def test_non_bool_mask_is_refused(mask_dtype):
    q, k, v, *_ = data((2, 3, 4, 4, 5, 5), "none", np.float32)
    mask = np.ones((2, 1, 1, 4), mask_dtype)
    given = np.dtype(mask_dtype)
    with pytest.raises(TypeError, match=rf"mask must be a boolean array.*got {given}"):
        attention_forward(q, k, v, mask=mask)


@pytest.mark.parametrize("shape", [(2, 4), (3, 1, 1, 4), (2, 1, 4, 5), (1, 2, 1, 1, 4)])
def test_mask_that_does_not_broadcast(shape):
    q, k, v, *_ = data((2, 3, 4, 4, 5, 5), "none", np.float32)
    with pytest.raises(ValueError, match=(
        rf"mask of shape {re_shape(shape)} does not broadcast to the scores "
        r"\(B, H, Tq, Tk\) = \(2, 3, 4, 4\)"
    )):
        attention_forward(q, k, v, mask=np.ones(shape, bool))


def re_shape(shape):
    return "\\(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + "\\)"


def test_integer_input_is_refused():
    q, k, v, *_ = data((2, 3, 4, 4, 5, 5), "none", np.float32)
    with pytest.raises(TypeError, match=r"attention q must be a floating-point.*got int64"):
        attention_forward(q.astype(np.int64), k, v)


def test_mixed_dtypes_are_refused():
    q, k, v, *_ = data((2, 3, 4, 4, 5, 5), "none", np.float32)
    with pytest.raises(TypeError, match=r"one floating dtype.*q: float32, k: float64"):
        attention_forward(q, k.astype(np.float64), v)


def test_mismatched_shapes():
    q, k, v, *_ = data((2, 3, 4, 4, 5, 5), "none", np.float32)
    with pytest.raises(ValueError, match=r"got q \(2, 3, 4, 5\), k \(2, 3, 4, 4\)"):
        attention_forward(q, k[..., :4], v)


def test_split_heads_needs_divisible_width():
    with pytest.raises(ValueError, match=r"width 10 is not divisible by the number of heads 3"):
        split_heads(np.zeros((2, 4, 10)), 3)


def test_split_heads_needs_3d():
    with pytest.raises(ValueError, match=r"must have 3 dimensions, got shape \(4, 10\)"):
        split_heads(np.zeros((4, 10)), 2)


# -- properties -------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    b=st.integers(1, 3), h=st.integers(1, 3), t_q=st.integers(1, 6), t_k=st.integers(1, 6),
    d=st.integers(1, 6), seed=st.integers(0, 2**32 - 1), density=st.floats(0.0, 1.0),
    causal=st.booleans(), spread=st.sampled_from([1.0, 30.0]),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_property_random_masks_never_nan(b, h, t_q, t_k, d, seed, density, causal, spread,
                                         dtype):
    """Any boolean mask, fully masked rows included: weights are finite, lie in [0, 1], are
    exactly 0 where masked, and each row sums to 1 (or to 0 when it may attend to nothing)."""
    g = np.random.default_rng(seed)
    q, k = ((spread * g.standard_normal((b, h, t, d))).astype(dtype) for t in (t_q, t_k))
    mask = g.random((b, h, t_q, t_k)) < density
    # V = I makes the output the attention matrix itself: out = P @ I = P
    eye = np.broadcast_to(np.eye(t_k, dtype=dtype), (b, h, t_k, t_k)).copy()
    probs, cache = attention_forward(q, k, eye, mask=mask, causal=causal)
    assert probs.dtype == dtype
    allowed = mask & np.tril(np.ones((t_q, t_k), bool), k=t_k - t_q) if causal else mask
    assert np.isfinite(probs).all()
    assert (probs >= 0).all() and (probs <= 1).all()
    np.testing.assert_array_equal(probs[~allowed], 0.0)
    sums = probs.sum(axis=-1)
    any_allowed = allowed.any(axis=-1)
    np.testing.assert_allclose(sums[any_allowed], 1.0, rtol=1e-5 if dtype == np.float32 else 1e-12)
    np.testing.assert_array_equal(sums[~any_allowed], 0.0)
    grads = attention_backward(g.standard_normal(probs.shape).astype(dtype), cache)
    assert all(np.isfinite(x).all() and x.dtype == dtype for x in grads)
