"""The embedding gradient summed in a fixed order (``segment_sum``): against ``np.add.at``, bit
for bit the same on NumPy, the strict stand-in and CuPy, and the same from run to run."""

from __future__ import annotations

import numpy as np
import pytest

from nanotf.functional import embedding_backward, embedding_forward
from nanotf.functional.embedding import embedding_backward_reference, segment_sum
from tests.conftest import NUMPY, STRICT, Backend, make_backend

BACKENDS = ["numpy", "strict", pytest.param("cupy", marks=pytest.mark.gpu)]


def many_repeats(n: int, n_rows: int, n_dim: int, dtype: type, seed: int = 0):
    """(ids, values): ``n`` ids in [0, n_rows) where one id (0, say padding) takes a quarter of
    the positions and the rest repeat ~3n/(4 n_rows) times; values ~ N(0, 1) + 0.5 (an offset,
    so sums do not cancel to noise)."""
    g = np.random.default_rng(seed)
    ids = g.integers(0, n_rows, size=n)
    ids[g.permutation(n)[: n // 4]] = 0
    values = (g.standard_normal((n, n_dim)) + 0.5).astype(dtype)
    return ids, values


def add_at(ids: np.ndarray, values: np.ndarray, n_rows: int, dtype: type) -> np.ndarray:
    """The reference: np.add.at, one add after another, in ``dtype``."""
    out = np.zeros((n_rows, values.shape[1]), dtype)
    np.add.at(out, ids, values.astype(dtype))
    return out


def rel_error(got: np.ndarray, want: np.ndarray) -> float:
    """Normwise: the largest difference over the largest reference value."""
    return float(np.abs(got.astype(np.float64) - want).max() / np.abs(want).max())


def on(bk: Backend, ids: np.ndarray, values: np.ndarray, n_rows: int) -> np.ndarray:
    return bk.host(segment_sum(bk.asarray(ids), bk.asarray(values), n_rows))[0]


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize(("n", "n_rows", "n_dim"), [(2000, 37, 5), (513, 400, 3), (64, 1, 2)])
def test_float64_matches_add_at(name: str, n: int, n_rows: int, n_dim: int) -> None:
    ids, values = many_repeats(n, n_rows, n_dim, np.float64)
    got = on(make_backend(name), ids, values, n_rows)
    assert got.dtype == np.float64 and got.shape == (n_rows, n_dim)
    assert rel_error(got, add_at(ids, values, n_rows, np.float64)) <= 1e-12


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize(("n", "n_rows", "n_dim"), [(4096, 50, 8), (1000, 3, 4)])
def test_float32_matches_add_at_in_float64(name: str, n: int, n_rows: int, n_dim: int) -> None:
    """float32 rows, against np.add.at of the same rows in float64."""
    ids, values = many_repeats(n, n_rows, n_dim, np.float32, seed=1)
    got = on(make_backend(name), ids, values, n_rows)
    assert got.dtype == np.float32
    assert rel_error(got, add_at(ids, values, n_rows, np.float64)) <= 1e-6


def test_absent_ids_get_zero_rows_and_single_ids_their_row() -> None:
    ids = np.array([4, 1, 4, 4, 6])
    values = np.arange(10.0).reshape(5, 2)
    got = segment_sum(ids, values, 8)
    want = np.zeros((8, 2))
    want[1] = values[1]
    want[6] = values[4]
    want[4] = values[0] + values[2] + values[3]
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("bk", [NUMPY, STRICT], ids=["numpy", "strict"])
def test_no_rows(bk: Backend) -> None:
    got = on(bk, np.zeros(0, np.int64), np.zeros((0, 3), np.float32), 4)
    assert got.shape == (4, 3) and got.dtype == np.float32 and not got.any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_strict_bit_identical_and_repeatable(dtype: type) -> None:
    """NumPy takes the compacted path, the stand-in the masked one CuPy takes: the same adds,
    so the same bits; and two runs on each are bit for bit the same."""
    ids, values = many_repeats(3001, 29, 6, dtype, seed=2)
    host = on(NUMPY, ids, values, 29)
    dev = on(STRICT, ids, values, 29)
    np.testing.assert_array_equal(dev, host)
    np.testing.assert_array_equal(on(NUMPY, ids, values, 29), host)
    np.testing.assert_array_equal(on(STRICT, ids, values, 29), dev)


def test_int32_ids_and_non_contiguous_values() -> None:
    ids, values = many_repeats(300, 11, 8, np.float64, seed=3)
    strided = np.asfortranarray(values)[:, ::2]  # (300, 4), not C-contiguous
    got = segment_sum(ids.astype(np.int32), strided, 11)
    assert rel_error(got, add_at(ids, strided, 11, np.float64)) <= 1e-12


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("padding_idx", [None, 0, -2])
def test_embedding_backward_matches_the_reference(name: str, padding_idx: int | None) -> None:
    """The op against its scatter-add reference (np.add.at / cupyx.scatter_add), ids (B, T)."""
    bk = make_backend(name)
    g = np.random.default_rng(4)
    n_vocab, n_dim = 23, 7
    ids = g.integers(0, n_vocab, size=(6, 50))
    ids[:, 35:] = 0  # padding at the end of every row
    w = g.standard_normal((n_vocab, n_dim))
    dout = g.standard_normal((6, 50, n_dim))
    _, cache = embedding_forward(bk.asarray(ids), bk.asarray(w), padding_idx=padding_idx)
    got, want = bk.host(
        embedding_backward(bk.asarray(dout), cache),
        embedding_backward_reference(bk.asarray(dout), cache),
    )
    assert rel_error(got, want) <= 1e-12
    if padding_idx is not None:
        np.testing.assert_array_equal(got[padding_idx], 0.0)
    # and bit for bit what NumPy's path gives
    _, host_cache = embedding_forward(ids, w, padding_idx=padding_idx)
    np.testing.assert_array_equal(got, embedding_backward(dout, host_cache))


def test_bert_sized_gradient_float32() -> None:
    """N = B·T = 4096 rows of width 768 into a vocabulary of 30522 (BERT), a quarter of them
    the padding id: within 1e-6 of float64 np.add.at (about 2e-7), on NumPy and the stand-in
    alike; np.add.at itself in float32, one chain of 1024 adds for the padding row, is 1.4e-6
    off here."""
    ids, values = many_repeats(4096, 30522, 768, np.float32, seed=5)
    want = add_at(ids, values, 30522, np.float64)
    host = on(NUMPY, ids, values, 30522)
    assert rel_error(host, want) <= 1e-6
    np.testing.assert_array_equal(on(STRICT, ids, values, 30522), host)


def test_too_many_rows_times_ids_is_refused() -> None:
    want = r"n_rows \* N must be below 2\*\*63, got 4611686018427387904 \* 2"
    with pytest.raises(ValueError, match=want):
        segment_sum(np.zeros(2, np.int64), np.zeros((2, 1)), 2**62)


@pytest.mark.gpu
def test_cupy_is_repeatable_and_equals_numpy() -> None:
    """On the GPU: two float32 runs are bit for bit the same (no atomics), and equal NumPy's."""
    import cupy  # type: ignore[import-not-found]

    ids, values = many_repeats(4096, 30522, 768, np.float32, seed=6)
    a = segment_sum(cupy.asarray(ids), cupy.asarray(values), 30522)
    b = segment_sum(cupy.asarray(ids), cupy.asarray(values), 30522)
    np.testing.assert_array_equal(cupy.asnumpy(a), cupy.asnumpy(b))
    np.testing.assert_array_equal(cupy.asnumpy(a), segment_sum(ids, values, 30522))


def test_the_fused_switch_runs_the_reference() -> None:
    """With the fused paths off (``reference_only``) the op is its readable reference, the one
    scatter-add; on, it is the fixed-order sum; the two agree to float64 round-off."""
    from nanotf.functional import embedding_backward, embedding_forward, reference_only
    from nanotf.functional.embedding import embedding_backward_reference

    rng = np.random.default_rng(7)
    weight = rng.standard_normal((11, 5))
    ids = rng.integers(0, 11, size=(6, 9))
    dout = rng.standard_normal((6, 9, 5))
    _, cache = embedding_forward(ids, weight, padding_idx=3)
    want = embedding_backward_reference(dout, cache)
    with reference_only():
        np.testing.assert_array_equal(embedding_backward(dout, cache), want)
    from nanotf.functional import fused

    was = fused.enabled()  # the suite may run with NANOTF_FUSED=0
    fused.set_enabled(True)
    try:
        fast = embedding_backward(dout, cache)
    finally:
        fused.set_enabled(was)
    np.testing.assert_array_equal(fast[3], 0.0)
    assert rel_error(fast, want) <= 1e-12
    np.testing.assert_array_equal(fast, segment_sum(ids.reshape(-1), dout.reshape(-1, 5), 11)
                                  * (np.arange(11) != 3)[:, None])
