"""The Numba kernels of dropout (``nanotf.functional.fused.numba_dropout``) against the reference
op, bit for bit.

* From the draw (``dropout_forward``), with the counter generator's words hashed in the loop
  (``dropout_forward_counter``) and with PCG64's raw words made into draws in the loop
  (``dropout_forward_pcg64``): out, the cache's keep (dtype, shape, every bit) and the
  generator's state after the call equal the reference's (run inside ``reference_only()`` with
  the same seed), for float32 and float64, p in {0.1, 0.5, 1.0} (p = 0 and eval mode are the
  identity and call no kernel), odd shapes, inputs that are not C-contiguous, a given mask,
  NumPy's PCG64 and the counter generator, a generator of another array module, and the
  counter wrapping around 2⁶⁴.
* PCG64's raw words: draws of every size from 0 up, odd and even, with and without the 32-bit
  half NumPy keeps from an odd float32 draw, several in a row mixed with other draws of the same
  generator (its whole state, ``has_uint32`` and ``uinteger`` too, the reference's after each);
  a subclass of Generator and other bit generators (MT19937, Philox, PCG64DXSM) take the draw.
* The threshold: p as a Python float, numpy.float64 and numpy.float32 (NumPy compares in
  different precisions), against draws that sit on p and next to it.
* The stand-in's results equal NumPy's bit for bit; one thread and two give the same bits.

Skipped, with the reason, where Numba is not installed (it is the optional ``fast`` extra).
"""

from __future__ import annotations

import numpy as np
import pytest

numba = pytest.importorskip("numba", reason="Numba is not installed (the optional 'fast' extra)")

import nanotf  # noqa: E402  (after the skip)
from nanotf.counter_rng import CounterGenerator  # noqa: E402
from nanotf.functional import dropout_backward, dropout_forward, fused, reference_only  # noqa: E402
from nanotf.functional.fused import numba_dropout, numba_kernels  # noqa: E402
from nanotf.testing import strict as strict_mod  # noqa: E402
from tests.conftest import NUMPY, STRICT, Backend, assert_same_on_strict, normal  # noqa: E402

OPS = ("dropout_forward", "dropout_forward_counter", "dropout_forward_pcg64")
PS = [0.1, 0.5, 1.0]
SHAPES = [(1,), (1, 1), (3,), (1, 7), (5, 1), (2, 3, 5), (3, 1025), (4, 33, 17)]
GENERATORS = ["pcg64", "counter"]


@pytest.fixture(autouse=True)
def kernels_on(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """The switch on and Numba's kernels registered for NumPy and the stand-in, each dropout
    kernel counting its calls (the dict returned); the real registry comes back after."""
    monkeypatch.setattr(fused, "_state", {**fused._state, "enabled": True})
    kernels = dict(fused._KERNELS)
    calls = dict.fromkeys(OPS, 0)

    def counted(op, kernel):
        def run(*args, **kwargs):
            calls[op] += 1
            return kernel(*args, **kwargs)
        return run

    for op in fused.OPS:
        kernels[(op, "numpy")] = numba_kernels.KERNELS[op]
        kernels[(op, "strict")] = numba_kernels.STRICT_KERNELS[op]
    for op in OPS:
        kernels[(op, "numpy")] = counted(op, numba_kernels.KERNELS[op])
        kernels[(op, "strict")] = counted(op, numba_kernels.STRICT_KERNELS[op])
    monkeypatch.setattr(fused, "_KERNELS", kernels)
    monkeypatch.setattr(fused, "_LAZY", {**fused._LAZY, "numpy": True, "strict": True})
    return calls


def make_gen(kind: str, seed: int, bk: Backend = NUMPY):
    return bk.rng(seed) if kind == "pcg64" else CounterGenerator(seed, bk.xp)


def gen_state(gen):
    return gen.state if isinstance(gen, CounterGenerator) else gen.bit_generator.state


def bits(a: np.ndarray) -> np.ndarray:
    """The bytes of ``a`` in C order (so -0.0 and 0.0, and NaNs, are told apart)."""
    return np.ascontiguousarray(a).view(np.uint8)


def assert_same_bits(got, want, what: str) -> None:
    assert type(got) is type(want), f"{what}: {type(got).__name__} vs {type(want).__name__}"
    assert got.dtype == want.dtype and got.shape == want.shape, (
        f"{what}: {got.dtype}{got.shape} vs {want.dtype}{want.shape}")
    np.testing.assert_array_equal(bits(got), bits(want), err_msg=what)


def fused_and_reference(run):
    """``run()`` with the Numba kernels, then inside ``reference_only()``."""
    got = run()
    with reference_only():
        want = run()
    return got, want


def run_dropout(bk: Backend, x, dout, p: float = 0.1, seed: int = 11) -> list[np.ndarray]:
    """Dropout forward and backward of ``x`` on ``bk``, drawn by PCG64, by the counter generator
    and from a given mask: host copies of out, keep and dx of each (used by test_fused_numba)."""
    mask = np.random.default_rng(seed).random(np.shape(x)) >= p
    got: list[np.ndarray] = []
    for gen, m in ((bk.rng(seed), None), (CounterGenerator(seed, bk.xp), None),
                   (None, bk.asarray(mask))):
        out, cache = dropout_forward(bk.asarray(x), p, rng=gen, mask=m)
        got += bk.host(out, cache.keep, dropout_backward(bk.asarray(dout), cache))
    return got


def forward(x, p, kind, seed=3, **kwargs):
    """out, keep and the generator's state after one dropout of ``x``."""
    gen = make_gen(kind, seed)
    out, cache = dropout_forward(x, p, rng=gen, **kwargs)
    assert cache.shape == x.shape and cache.dtype == x.dtype
    return out, cache.keep, gen_state(gen)


# -- against the reference --------------------------------------------------------------------


@pytest.mark.parametrize("kind", GENERATORS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("p", PS)
def test_matches_the_reference_bit_for_bit(kernels_on, dtype, p, shape, kind):
    x = normal(np.random.default_rng(0), shape, dtype)
    (out, keep, state), (want_out, want_keep, want_state) = fused_and_reference(
        lambda: forward(x, p, kind))
    assert_same_bits(out, want_out, "out")
    assert_same_bits(keep, want_keep, "keep")
    assert state == want_state
    op = "dropout_forward_counter" if kind == "counter" else "dropout_forward_pcg64"
    assert kernels_on == {**dict.fromkeys(OPS, 0), op: 1}


@pytest.mark.parametrize("kind", GENERATORS)
def test_p_of_any_real_type_twice(kernels_on, dtype, kind):
    """The kernels remember their threshold and scale per (p, dtype, type of p): p = 0.3 as a
    float, a float32 (another value, and float32 arithmetic in the reference's scale) and a
    float64 each match the reference, also the second time, from the remembered values."""
    x = normal(np.random.default_rng(5), (7, 33), dtype)
    for p in (0.3, np.float32(0.3), np.float64(0.3), 0.3, np.float32(0.3)):
        (out, keep, state), (want_out, want_keep, want_state) = fused_and_reference(
            lambda p=p: forward(x, p, kind))
        assert_same_bits(out, want_out, f"out, p {p!r}")
        assert_same_bits(keep, want_keep, f"keep, p {p!r}")
        assert state == want_state


@pytest.mark.parametrize("kind", GENERATORS)
def test_inputs_that_are_not_contiguous(dtype, kind):
    base = normal(np.random.default_rng(1), (9, 14), dtype)
    for x in (base[:, ::2], base.T, base[::3, 1:]):
        (out, keep, state), (want_out, want_keep, want_state) = fused_and_reference(
            lambda x=x: forward(x, 0.3, kind))
        assert_same_bits(out, want_out, "out")
        assert_same_bits(keep, want_keep, "keep")
        assert state == want_state


@pytest.mark.parametrize("p", PS)
def test_a_given_mask(kernels_on, dtype, p):
    g = np.random.default_rng(2)
    x = normal(g, (7, 33), dtype)
    x[0, :3] = [np.inf, -np.inf, np.nan]  # 0 · inf is NaN on both paths
    mask = g.random(x.shape) >= 0.5
    with np.errstate(invalid="ignore"):  # NumPy warns of 0 · inf, the kernel does not
        got, want = fused_and_reference(lambda: dropout_forward(x, p, mask=mask))
    assert_same_bits(got[0], want[0], "out")
    assert_same_bits(got[1].keep, want[1].keep, "keep")
    assert kernels_on["dropout_forward"] == 1


def test_the_identity_calls_no_kernel(kernels_on, dtype):
    x = normal(np.random.default_rng(3), (4, 5), dtype)
    for kind in GENERATORS:
        for p, training in ((0.0, True), (0.5, False)):
            gen = make_gen(kind, 4)
            before = gen_state(gen)
            out, cache = dropout_forward(x, p, training=training, rng=gen)
            assert out is x and cache.keep is None and gen_state(gen) == before
    assert kernels_on == dict.fromkeys(OPS, 0)


@pytest.mark.parametrize("kind", GENERATORS)
def test_a_0d_input_runs_the_reference(kernels_on, kind):
    """NumPy makes 0-d results scalars; the kernels make arrays, so a 0-d input keeps the
    reference (and the same types)."""
    for x in (np.float32(1.5), np.array(1.5)):
        got, want = fused_and_reference(lambda x=x: forward(x, 0.4, kind))
        for g, w in zip(got[:2], want[:2], strict=True):
            assert type(g) is type(w) and g == w
    assert kernels_on == dict.fromkeys(OPS, 0)


@pytest.mark.parametrize("kind", GENERATORS)
def test_the_backward_of_the_fused_cache(dtype, kind):
    g = np.random.default_rng(5)
    x, dout = normal(g, (6, 31), dtype), normal(g, (6, 31), dtype)

    def run():
        out, cache = dropout_forward(x, 0.2, rng=make_gen(kind, 8))
        return dropout_backward(dout, cache)

    got, want = fused_and_reference(run)
    assert_same_bits(got, want, "dx")


@pytest.mark.parametrize("kind", GENERATORS)
def test_the_default_generator(kind):
    """``rng=None``: the backend's generator (PCG64, or the counter one with the counter kind)
    draws the reference's masks and ends in the reference's state."""
    if kind == "counter":
        nanotf.set_rng_kind("counter")
    x = normal(np.random.default_rng(6), (5, 40), np.float32)

    def run():
        nanotf.manual_seed(21)
        out, cache = dropout_forward(x, 0.25)
        return out, cache.keep, gen_state(nanotf.rng())

    (out, keep, state), (want_out, want_keep, want_state) = fused_and_reference(run)
    assert isinstance(nanotf.rng(), CounterGenerator) == (kind == "counter")
    assert_same_bits(out, want_out, "out")
    assert_same_bits(keep, want_keep, "keep")
    assert state == want_state


@pytest.mark.parametrize("kind", GENERATORS)
def test_a_generator_of_another_array_module(kernels_on, dtype, kind):
    """Stand-in x with a NumPy generator: the reference moves the draw to the device, the
    counter kernel hashes the same words wherever the generator lives."""
    x = normal(np.random.default_rng(7), (3, 50), dtype)

    def run():
        gen = make_gen(kind, 9, NUMPY)
        out, cache = dropout_forward(STRICT.asarray(x), 0.3, rng=gen)
        return (*STRICT.host(out, cache.keep), gen_state(gen))

    (out, keep, state), (want_out, want_keep, want_state) = fused_and_reference(run)
    assert_same_bits(out, want_out, "out")
    assert_same_bits(keep, want_keep, "keep")
    assert state == want_state
    op = "dropout_forward_counter" if kind == "counter" else "dropout_forward_pcg64"
    assert kernels_on == {**dict.fromkeys(OPS, 0), op: 1}


def test_the_counter_wraps_around(dtype):
    x = normal(np.random.default_rng(8), (3, 7), dtype)

    def run():
        gen = CounterGenerator(2**64 - 1 - 5)  # the seed near the top, too
        gen.state = {**gen.state, "counter": 2**64 - 10}
        out, cache = dropout_forward(x, 0.5, rng=gen)
        return out, cache.keep, gen.state

    (out, keep, state), (want_out, want_keep, want_state) = fused_and_reference(run)
    assert_same_bits(out, want_out, "out")
    assert_same_bits(keep, want_keep, "keep")
    assert state == want_state and state["counter"] == 11


# -- PCG64's raw words ------------------------------------------------------------------------


def twins(seed: int, buffered: bool):
    """Two generators in the same state; ``buffered``: NumPy keeps a 32-bit half (has_uint32),
    left by an odd float32 draw."""
    gens = [np.random.default_rng(seed) for _ in range(2)]
    for g in gens:
        g.random(3 if buffered else 4, dtype=np.float32)
        assert g.bit_generator.state["has_uint32"] == int(buffered)
    return gens


def dropout_and_state(x, p, gen):
    out, cache = dropout_forward(x, p, rng=gen)
    return out, cache.keep, gen.bit_generator.state


@pytest.mark.parametrize("buffered", [False, True], ids=["even", "buffered"])
@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 5, 6, 7, 1024, 1025])
@pytest.mark.parametrize("p", PS)
def test_pcg64_one_draw_of_each_size(kernels_on, dtype, p, size, buffered):
    x = normal(np.random.default_rng(12), (size,), dtype)
    gen, ref = twins(14, buffered)
    out, keep, state = dropout_and_state(x, p, gen)
    with reference_only():
        want_out, want_keep, want_state = dropout_and_state(x, p, ref)
    assert_same_bits(out, want_out, "out")
    assert_same_bits(keep, want_keep, "keep")
    assert state == want_state
    assert kernels_on == {**dict.fromkeys(OPS, 0), "dropout_forward_pcg64": 1}
    assert gen.random(5, dtype=np.float32).tobytes() == ref.random(5, dtype=np.float32).tobytes()


# shapes of draws in a row, with the other draws of the same generator between some of them
IN_A_ROW = [(3,), (1,), (2, 0), (2,), (5, 7), "f32:1", (1, 1), "int", (4, 33, 17), "f64:3",
            (1,), "f32:2", (3, 1025), (6,), "f32:5", (2, 3, 5)]


@pytest.mark.parametrize("buffered", [False, True], ids=["even", "buffered"])
@pytest.mark.parametrize("p", PS)
def test_pcg64_draws_in_a_row(kernels_on, dtype, p, buffered):
    """The generator carries on from each fused draw as from the reference's, through other
    draws (float32 and float64 ``random``, ``integers``) of the same generator in between."""
    gen, ref = twins(15, buffered)
    data = np.random.default_rng(16)
    dropouts = 0
    for step in IN_A_ROW:
        if isinstance(step, str):
            kind, _, n = step.partition(":")
            draws = [g.integers(0, 1000, 3) if kind == "int"
                     else g.random(int(n), dtype=np.float32 if kind == "f32" else np.float64)
                     for g in (gen, ref)]
            assert_same_bits(draws[0], draws[1], step)
        else:
            x = normal(data, step, dtype)
            out, keep, state = dropout_and_state(x, p, gen)
            with reference_only():
                want_out, want_keep, want_state = dropout_and_state(x, p, ref)
            assert_same_bits(out, want_out, f"out {step}")
            assert_same_bits(keep, want_keep, f"keep {step}")
            dropouts += 1
        assert gen.bit_generator.state == ref.bit_generator.state, step
    assert kernels_on == {**dict.fromkeys(OPS, 0), "dropout_forward_pcg64": dropouts}


class _Subclass(np.random.Generator):
    pass


OTHER_GENERATORS = {
    "subclass": lambda seed: _Subclass(np.random.PCG64(seed)),
    "mt19937": lambda seed: np.random.Generator(np.random.MT19937(seed)),
    "philox": lambda seed: np.random.Generator(np.random.Philox(seed)),
    "pcg64dxsm": lambda seed: np.random.Generator(np.random.PCG64DXSM(seed)),
}


@pytest.mark.parametrize("name", sorted(OTHER_GENERATORS))
@pytest.mark.parametrize("p", PS)
def test_other_numpy_generators_take_the_draw(kernels_on, dtype, p, name):
    """Only numpy.random.Generator itself over PCG64 itself reads raw words; any other keeps
    ``gen.random`` and the kernel from the draw, with the reference's bits and state."""
    x = normal(np.random.default_rng(17), (3, 67), dtype)

    def run():
        gen = OTHER_GENERATORS[name](18)
        gen.random(1, dtype=np.float32)  # an odd draw first: the 32-bit half kept
        return dropout_and_state(x, p, gen)

    (out, keep, state), (want_out, want_keep, want_state) = fused_and_reference(run)
    assert_same_bits(out, want_out, "out")
    assert_same_bits(keep, want_keep, "keep")
    assert same_state(state, want_state)
    assert kernels_on == {**dict.fromkeys(OPS, 0), "dropout_forward": 1}


def same_state(a, b) -> bool:
    """Bit generator states equal (MT19937's and Philox's hold arrays)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(
            same_state(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    return type(a) is type(b) and a == b


def test_pcg64_halves_on_either_byte_order():
    """The 32-bit words in NumPy's order (low half, then high) from the little-endian view and
    from the arithmetic a big-endian machine uses."""
    words = np.random.default_rng(19).bit_generator.random_raw(9)
    want = np.array([h for w in words.tolist() for h in (w & 0xFFFFFFFF, w >> 32)], np.uint32)
    for little in (True, False):
        got = numba_dropout._halves(words, little=little)
        assert got.dtype == np.uint32
        np.testing.assert_array_equal(got, want)


# -- the threshold ----------------------------------------------------------------------------


def neighbours(v, dt, k=3):
    """The ``2k + 1`` numbers of dtype ``dt`` around ``v`` (v rounded to dt in the middle)."""
    c = np.asarray(v).astype(dt)[()]
    down, up = [c], [c]
    for _ in range(k):
        down.append(np.nextafter(down[-1], dt.type(-np.inf)))
        up.append(np.nextafter(up[-1], dt.type(np.inf)))
    return np.array(down[:0:-1] + up, dt)


@pytest.mark.parametrize("p", [0.1, np.float64(0.1), np.float32(0.1), 0.3, np.float64(0.7),
                               np.float32(0.7), 1 / 3, 1.0, 1])
def test_draws_next_to_p(dtype, p):
    """The kernel's mask from draws that sit on p and next to it is NumPy's ``u >= p`` (which
    compares in the dtype for a Python float p, in float64 for a numpy.float64 one)."""
    u = neighbours(p, dtype)
    if float(p) == 1.0:
        u = u[u < 1.0]  # draws lie in [0, 1)
    x = np.ones_like(u)
    out, keep = numba_dropout.dropout_forward(x, u, p)
    with reference_only():
        want_out, cache = dropout_forward(x, p, mask=u >= p)
    assert_same_bits(out, want_out, "out")
    assert_same_bits(keep, cache.keep, "keep")


@pytest.mark.parametrize("at", ["on", "below", "above"])
def test_counter_draws_on_p(dtype, at):
    """p placed on a number the counter generator is about to draw (and one ulp either side):
    the kernel's integer comparison keeps exactly what ``u >= p`` keeps."""
    x = normal(np.random.default_rng(9), (4, 25), dtype)
    u = CounterGenerator(13).random(x.shape, dtype=dtype)
    v = u.reshape(-1)[17]
    step = {"on": v, "below": np.nextafter(v, dtype.type(0)), "above": np.nextafter(v, 1)}[at]
    for p in (float(step), step):  # a Python float and a NumPy scalar of the dtype
        (out, keep, _), (want_out, want_keep, _) = fused_and_reference(
            lambda p=p: forward(x, p, "counter", seed=13))
        assert_same_bits(out, want_out, "out")
        assert_same_bits(keep, want_keep, "keep")
        assert (keep.reshape(-1)[17] != 0) == (at != "above")


# -- the stand-in, threads, bad input ----------------------------------------------------------


def test_stand_in_equals_numpy(dtype):
    g = np.random.default_rng(10)
    x, dout = normal(g, (5, 67), dtype), normal(g, (5, 67), dtype)
    assert_same_on_strict(lambda bk: run_dropout(bk, x, dout, p=0.3))


def test_stand_in_runs_the_kernels(kernels_on):
    x = strict_mod.asarray(np.ones((2, 3), np.float32))
    for kind in GENERATORS:
        dropout_forward(x, 0.5, rng=make_gen(kind, 1, STRICT))
    dropout_forward(x, 0.5, mask=strict_mod.asarray(np.ones((2, 3), bool)))
    # the stand-in's generator is not numpy.random.Generator: its draw goes to dropout_forward
    assert kernels_on == {"dropout_forward": 2, "dropout_forward_counter": 1,
                          "dropout_forward_pcg64": 0}


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="Numba has one thread here")
def test_one_thread_and_two_give_the_same_bits():
    g = np.random.default_rng(11)
    x, dout = normal(g, (64, 513), np.float32), normal(g, (64, 513), np.float32)
    before = fused.kernel_threads()
    try:
        fused.set_kernel_threads(1)
        one = run_dropout(NUMPY, x, dout)
        fused.set_kernel_threads(2)
        two = run_dropout(NUMPY, x, dout)
    finally:
        fused.set_kernel_threads(before)
    for a, b in zip(one, two, strict=True):
        assert_same_bits(a, b, "one thread vs two")


def test_kernels_refuse_bad_input():
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(TypeError, match="float32 or float64 input, got float16"):
        numba_dropout.dropout_forward(x.astype(np.float16), x, 0.5)
    with pytest.raises(TypeError, match="float32 or float64 draw, got int64"):
        numba_dropout.dropout_forward(x, np.zeros((2, 3), np.int64), 0.5)
    with pytest.raises(ValueError, match=r"input's shape \(2, 3\), got \(3, 2\)"):
        numba_dropout.dropout_forward(x, np.zeros((3, 2), np.float32), 0.5)
    with pytest.raises(TypeError, match="a nanotf.counter_rng.CounterGenerator, got Generator"):
        numba_dropout.dropout_forward_counter(x, np.random.default_rng(0), 0.5)
    with pytest.raises(TypeError, match="Generator over PCG64, got Generator over MT19937"):
        numba_dropout.dropout_forward_pcg64(x, np.random.Generator(np.random.MT19937(0)), 0.5)
    with pytest.raises(TypeError, match="Generator over PCG64, got CounterGenerator"):
        numba_dropout.dropout_forward_pcg64(x, CounterGenerator(0), 0.5)
    with pytest.raises(TypeError, match="float32 or float64 input, got float16"):
        numba_dropout.dropout_forward_pcg64(x.astype(np.float16), np.random.default_rng(0), 0.5)
