"""Sinusoidal positional encoding and add_positional: an independent torch formula, base 10000."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nanotf.functional import add_positional_backward, add_positional_forward, sinusoidal_encoding
from nanotf.gradcheck import gradcheck
from tests.conftest import (
    STRICT,
    Backend,
    assert_all_close,
    assert_close,
    assert_dtypes,
    assert_gradcheck,
    assert_same_on_strict,
    normal,
    torch_reference,
)

# (max_len, d_model): one position, one and odd widths, the paper's width
TABLES = [(1, 4), (7, 1), (9, 5), (50, 16), (64, 512), (20, 33)]


def torch_table(max_len, d_model, dtype):
    """The PyTorch tutorial's construction (exp of arange · -log(10000) / d), in float64;
    for an odd d_model the cosines take the first d // 2 frequencies."""
    position = torch.arange(max_len, dtype=torch.float64).unsqueeze(1)
    div_term = torch.exp(
        torch.arange(0, d_model, 2, dtype=torch.float64) * (-math.log(10000.0) / d_model)
    )
    pe = torch.zeros(max_len, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(position * div_term)
    pe[:, 1::2] = torch.cos(position * div_term[: d_model // 2])
    return pe.numpy().astype(dtype)


@pytest.mark.parametrize(("max_len", "d_model"), TABLES)
def test_table_matches_torch(xp_params: Backend, dtype, max_len, d_model):
    table = sinusoidal_encoding(max_len, d_model, dtype=dtype, xp=xp_params.xp)
    (got,) = xp_params.host(table)
    assert got.shape == (max_len, d_model) and got.dtype == dtype
    assert_close(got, torch_table(max_len, d_model, dtype), dtype, "sinusoidal.table")


def test_base_is_ten_thousand():
    """Straight from the paper: PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(...).
    A base of 100000 (a bug NumPy peers shipped) is off by 0.007 at position 1, dimension 2."""
    d = 4
    table = sinusoidal_encoding(10, d, dtype=np.float64)
    for pos in (0, 1, 3, 9):
        for i in range(d // 2):
            angle = pos / 10000 ** (2 * i / d)
            assert table[pos, 2 * i] == pytest.approx(math.sin(angle), rel=1e-14, abs=1e-15)
            assert table[pos, 2 * i + 1] == pytest.approx(math.cos(angle), rel=1e-14, abs=1e-15)
    assert table[1, 2] == pytest.approx(math.sin(0.01), rel=1e-14)
    wrong = sinusoidal_encoding(10, d, base=100000.0, dtype=np.float64)
    assert abs(wrong[1, 2] - table[1, 2]) > 5e-3


def test_first_row_and_range():
    table = sinusoidal_encoding(100, 9, dtype=np.float64)
    np.testing.assert_array_equal(table[0, 0::2], 0.0)  # sin 0
    np.testing.assert_array_equal(table[0, 1::2], 1.0)  # cos 0
    assert np.abs(table).max() <= 1.0


def test_default_dtype_is_float32():
    assert sinusoidal_encoding(4, 6).dtype == np.float32


# -- add_positional ---------------------------------------------------------------------------

# (B, T, C, max_len, scale): batch 1, length 1, odd widths, T < max_len, the paper's √d scale
CASES = [(1, 1, 4, 1, 1.0), (2, 3, 5, 8, 1.0), (3, 6, 8, 6, math.sqrt(8)), (1, 4, 7, 10, 0.5)]


def data(b, t, c, max_len, dtype, seed=0):
    g = np.random.default_rng(seed)
    return normal(g, (b, t, c), dtype), sinusoidal_encoding(max_len, c, dtype=dtype), normal(
        g, (b, t, c), dtype
    )


def run(bk: Backend, x, table, dout, scale):
    out, cache = add_positional_forward(bk.asarray(x), bk.asarray(table), scale)
    return bk.host(out, add_positional_backward(bk.asarray(dout), cache))


@pytest.mark.parametrize(("b", "t", "c", "max_len", "scale"), CASES)
def test_add_positional_gradcheck(fd_backend: Backend, b, t, c, max_len, scale):
    x, table, _ = data(b, t, c, max_len, np.float64)
    errors = gradcheck(
        add_positional_forward,
        add_positional_backward,
        {"x": fd_backend.asarray(x), "table": fd_backend.asarray(table)},
        wrt=["x"],
        forward_kwargs={"scale": scale},
    )
    assert_gradcheck(errors, "add_positional")


@pytest.mark.parametrize(("b", "t", "c", "max_len", "scale"), CASES)
def test_add_positional_matches_torch(xp_params: Backend, dtype, b, t, c, max_len, scale):
    x, table, dout = data(b, t, c, max_len, dtype)
    got = run(xp_params, x, table, dout, scale)
    pe = torch.from_numpy(torch_table(max_len, c, dtype))
    out, grads = torch_reference(lambda x: x * scale + pe[:t], {"x": x}, dout)
    names = ["add_positional.out", "add_positional.dx"]
    assert_all_close(got, (out, grads["x"]), dtype, names)
    assert_dtypes(got, dtype, names)


def test_float64_table_does_not_upcast_float32_input():
    x, _, dout = data(2, 3, 4, 5, np.float32)
    out, dx = run(Backend("numpy", np), x, sinusoidal_encoding(5, 4, dtype=np.float64), dout, 2.0)
    assert out.dtype == np.float32 and dx.dtype == np.float32


def test_host_table_with_device_input():
    """A table built on the host is moved to the input's device explicitly (xp.asarray)."""
    x, table, _ = data(2, 3, 4, 5, np.float32)
    out, _ = add_positional_forward(STRICT.asarray(x), table, 1.0)
    np.testing.assert_array_equal(out.get(), add_positional_forward(x, table, 1.0)[0])


def test_strict_equals_numpy():
    x, table, dout = data(2, 3, 5, 8, np.float32)
    assert_same_on_strict(lambda bk: run(bk, x, table, dout, math.sqrt(5)))
    assert_same_on_strict(
        lambda bk: bk.host(sinusoidal_encoding(9, 7, xp=bk.xp), sinusoidal_encoding(3, 4, xp=bk.xp))
    )


# -- bad input --------------------------------------------------------------------------------


def test_sequence_longer_than_the_table():
    x, table, _ = data(2, 6, 4, 5, np.float32)
    with pytest.raises(ValueError, match=r"table is \(5, 4\).*input of shape \(2, 6, 4\) needs "
                                         r"length <= 5 and width 4"):
        add_positional_forward(x, table)


def test_width_not_matching_the_table():
    x, _, _ = data(2, 3, 4, 5, np.float32)
    with pytest.raises(ValueError, match=r"table is \(5, 6\).*input of shape \(2, 3, 4\)"):
        add_positional_forward(x, sinusoidal_encoding(5, 6))


def test_integer_input_is_refused():
    with pytest.raises(TypeError, match=r"positional input must be a floating-point.*got int64"):
        add_positional_forward(np.zeros((1, 2, 4), np.int64), sinusoidal_encoding(5, 4))


def test_input_must_be_3d():
    with pytest.raises(ValueError, match=r"must have 3 dimensions, got shape \(2, 4\)"):
        add_positional_forward(np.zeros((2, 4), np.float32), sinusoidal_encoding(5, 4))


@pytest.mark.parametrize(("max_len", "d_model"), [(0, 4), (4, 0), (-1, 2)])
def test_table_sizes_must_be_positive(max_len, d_model):
    with pytest.raises(ValueError, match=rf"must be positive, got {max_len} and {d_model}"):
        sinusoidal_encoding(max_len, d_model)
