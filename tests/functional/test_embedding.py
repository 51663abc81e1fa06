"""embedding_forward / embedding_backward: finite differences (padding row apart), torch, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch.nn.functional as tF

from nanotf.functional import embedding_backward, embedding_forward
from nanotf.gradcheck import gradcheck, numerical_gradient, relative_error
from tests.conftest import (
    Backend,
    assert_all_close,
    assert_dtypes,
    assert_gradcheck,
    assert_same_on_strict,
    normal,
    torch_reference,
)

# (ids shape, vocabulary, width): batch 1, length 1, a vector of ids, repeated ids (V small)
SHAPES = [((1, 1), 4, 3), ((2, 5), 3, 4), ((7,), 10, 5), ((3, 4, 2), 6, 1)]
PADDING = [None, 0, 2, -1]


def data(ids_shape, n_vocab, n_dim, dtype, seed=0):
    g = np.random.default_rng(seed)
    ids = g.integers(0, n_vocab, size=ids_shape)
    w = normal(g, (n_vocab, n_dim), dtype)
    dout = normal(g, (*ids_shape, n_dim), dtype)
    return ids, w, dout


def run(bk: Backend, ids, w, dout, padding_idx=None):
    out, cache = embedding_forward(bk.asarray(ids), bk.asarray(w), padding_idx=padding_idx)
    dw = embedding_backward(bk.asarray(dout), cache)
    return bk.host(out, dw)


@pytest.mark.parametrize(("ids_shape", "n_vocab", "n_dim"), SHAPES)
def test_gradcheck(fd_backend: Backend, ids_shape, n_vocab, n_dim):
    ids, w, _ = data(ids_shape, n_vocab, n_dim, np.float64)
    inputs = {"ids": fd_backend.asarray(ids), "weight": fd_backend.asarray(w)}
    assert_gradcheck(gradcheck(embedding_forward, embedding_backward, inputs), "embedding")


@pytest.mark.parametrize("padding_idx", [0, 2, -1])
def test_gradcheck_without_the_padding_row(fd_backend: Backend, padding_idx):
    """Every row but padding_idx against finite differences; the padding row on its own below."""
    n_vocab, n_dim = 4, 3
    ids = np.array([[0, 1, 2, 3], [2, 2, 3, 0]])
    w = normal(np.random.default_rng(1), (n_vocab, n_dim))
    dout = normal(np.random.default_rng(2), (2, 4, n_dim))
    dev_w = fd_backend.asarray(w)
    _, cache = embedding_forward(fd_backend.asarray(ids), dev_w, padding_idx=padding_idx)
    analytic = fd_backend.host(embedding_backward(fd_backend.asarray(dout), cache))[0]

    pad_row = padding_idx % n_vocab
    others = [i for i in range(w.size) if i // n_dim != pad_row]
    dev_ids = fd_backend.asarray(ids)
    numeric = numerical_gradient(
        lambda: embedding_forward(dev_ids, dev_w, padding_idx)[0],
        dev_w,
        fd_backend.asarray(dout),
        indices=others,
    )
    numeric = fd_backend.host(numeric)[0]
    err = relative_error(analytic.reshape(-1)[others], numeric.reshape(-1)[others])
    assert_gradcheck({"weight": err}, "embedding")
    # by definition (as in torch) the padding row gets no gradient, though its FD is not zero
    np.testing.assert_array_equal(analytic[pad_row], 0.0)
    assert np.abs(dout[ids == pad_row].sum(axis=0)).max() > 0


def test_padding_row_forward_is_the_weight_row():
    w = normal(np.random.default_rng(0), (3, 2))
    out, _ = embedding_forward(np.array([0, 1, 0]), w, padding_idx=0)
    np.testing.assert_array_equal(out[0], w[0])


def test_repeated_ids_add_up():
    w = np.zeros((3, 2))
    dout = np.arange(10.0).reshape(5, 2)
    _, cache = embedding_forward(np.array([1, 1, 1, 0, 1]), w)
    dw = embedding_backward(dout, cache)
    np.testing.assert_array_equal(dw, [[6.0, 7.0], [0 + 2 + 4 + 8, 1 + 3 + 5 + 9], [0.0, 0.0]])


@pytest.mark.parametrize("padding_idx", PADDING)
@pytest.mark.parametrize(("ids_shape", "n_vocab", "n_dim"), SHAPES)
def test_matches_torch(xp_params: Backend, dtype, ids_shape, n_vocab, n_dim, padding_idx):
    ids, w, dout = data(ids_shape, n_vocab, n_dim, dtype)
    got = run(xp_params, ids, w, dout, padding_idx)
    out, grads = torch_reference(
        lambda ids, w: tF.embedding(ids, w, padding_idx=padding_idx), {"ids": ids, "w": w}, dout
    )
    names = ["embedding.out", "embedding.dW"]
    assert_all_close(got, (out, grads["w"]), dtype, names)
    assert_dtypes(got, dtype, names)


def test_strict_equals_numpy():
    ids, w, dout = data((2, 5), 3, 4, np.float32)
    assert_same_on_strict(lambda bk: run(bk, ids, w, dout, padding_idx=1))


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [-1, 10, 11])
def test_ids_out_of_range(xp_params: Backend, bad):
    ids = xp_params.asarray(np.array([[0, 3, bad]]))
    w = xp_params.asarray(np.zeros((10, 4), np.float32))
    with pytest.raises(IndexError, match=rf"token ids must lie in \[0, 10\), got a value of {bad}"):
        embedding_forward(ids, w)


def test_float_ids_are_refused():
    with pytest.raises(TypeError, match=r"token ids must be an integer array, got float32"):
        embedding_forward(np.zeros(3, np.float32), np.zeros((10, 4), np.float32))


def test_integer_weight_is_refused():
    with pytest.raises(TypeError, match=r"embedding weight must be a floating-point.*got int64"):
        embedding_forward(np.zeros(3, np.int64), np.zeros((10, 4), np.int64))


def test_padding_idx_out_of_range():
    with pytest.raises(IndexError, match=r"padding_idx must lie in \[-10, 10\), got 10"):
        embedding_forward(np.zeros(3, np.int64), np.zeros((10, 4), np.float32), padding_idx=10)


def test_weight_must_be_2d():
    with pytest.raises(ValueError, match=r"weight must have 2 dimensions, got shape \(10,\)"):
        embedding_forward(np.zeros(3, np.int64), np.zeros(10, np.float32))
