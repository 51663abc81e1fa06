"""The counter-based generator (nanotf.counter_rng): known answers from a pure-Python SplitMix64,
uniform and normal statistics, NumPy and the strict stand-in bit for bit, its state saved and
restored, the backend's choice of generator, and training runs that resume exactly with it."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import nanotf
from nanotf import backend as nanotf_backend
from nanotf.checkpoint import load_checkpoint
from nanotf.counter_rng import KIND, CounterGenerator, splitmix64
from nanotf.functional import dropout_backward, dropout_forward
from nanotf.optim import LRScheduler
from nanotf.testing import strict as strict_mod
from nanotf.testing.strict import StrictArray
from nanotf.train import Trainer, lr_schedule, make_optimizer
from nanotf.train.rng_state import host_rng_state, set_host_rng_state

from .test_train import params_of, tiny

M64 = (1 << 64) - 1


def python_splitmix64(seed: int, n: int) -> list[int]:
    """Vigna's splitmix64.c, one call after another, in Python integers."""
    state, out = seed, []
    for _ in range(n):
        state = (state + 0x9E3779B97F4A7C15) & M64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        out.append(z ^ (z >> 31))
    return out


# -- known answers ------------------------------------------------------------------------------


def test_published_splitmix64_values() -> None:
    """The reference outputs of splitmix64.c seeded with 1234567 (Rosetta Code, "Pseudo-random
    numbers/Splitmix64") and the first output for seed 0."""
    want = [6457827717110365317, 3203168211198807973, 9817491932198370423,
            4593380528125082431, 16408922859458223821]
    assert splitmix64(1234567, 0, 5).tolist() == want
    assert python_splitmix64(1234567, 5) == want
    assert int(splitmix64(0, 0, 1)[0]) == 0xE220A8397B1DCDAF


@pytest.mark.parametrize("seed", [0, 1, 42, 2**63 + 12345, M64])
@pytest.mark.parametrize("counter", [0, 1, 1000, M64 - 2])
def test_words_are_the_sequential_generator_jumped_ahead(seed: int, counter: int) -> None:
    """Word c of seed s is the c-th output of splitmix64.c: jump by c·γ, then 6 sequential calls."""
    jumped = (seed + counter * 0x9E3779B97F4A7C15) & M64
    got = splitmix64(seed, counter, 6)
    assert got.dtype == np.uint64
    assert got.tolist() == python_splitmix64(jumped, 6)


def test_floats_come_from_the_top_bits() -> None:
    words = python_splitmix64(7, 8)
    g = CounterGenerator(7)
    f64 = g.random(4)
    f32 = g.random(4, dtype=np.float32)
    assert f64.dtype == np.float64 and f32.dtype == np.float32
    assert f64.tolist() == [(w >> 11) / 2**53 for w in words[:4]]
    assert f32.tolist() == [(w >> 40) / 2**24 for w in words[4:]]
    assert g.counter == 8


def test_normals_are_box_muller_of_two_words() -> None:
    """√(-2 ln u₁)·cos(2π u₂), u₁ from the first n words, u₂ from the next n, against Python's
    math (libm): within 1e-14 (the generator's own ln and cos, not libm's, are used)."""
    n = 500
    words = python_splitmix64(3, 2 * n)
    want = [
        math.sqrt(-2.0 * math.log(((a >> 11) + 1) / 2**53))
        * math.cos(2 * math.pi * (b >> 11) / 2**53)
        for a, b in zip(words[:n], words[n:], strict=True)
    ]
    g = CounterGenerator(3)
    got = g.standard_normal(n)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-14)
    assert g.counter == 2 * n
    f32 = CounterGenerator(3).standard_normal(n, dtype=np.float32)
    assert f32.dtype == np.float32
    np.testing.assert_array_equal(f32, got.astype(np.float32))


def test_integers() -> None:
    words = python_splitmix64(11, 6)
    g = CounterGenerator(11)
    assert g.integers(-3, 10, size=3).tolist() == [-3 + w % 13 for w in words[:3]]
    assert int(g.integers(0, 2**62)) == words[3] % 2**62
    assert g.integers(5, size=2, dtype=np.uint8).tolist() == [w % 5 for w in words[4:]]
    assert CounterGenerator(0).integers(2, 3, size=4, endpoint=True).dtype == np.int64


# -- statistics ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_uniform_mean_and_variance(dtype: type) -> None:
    n = 10**6
    u = CounterGenerator(2024).random(n, dtype=dtype).astype(np.float64)
    assert u.min() >= 0.0 and u.max() < 1.0
    # U(0, 1): mean 1/2, variance 1/12, fourth central moment 1/80
    assert abs(u.mean() - 0.5) <= 5 * math.sqrt(1 / 12 / n)
    assert abs(u.var() - 1 / 12) <= 5 * math.sqrt((1 / 80 - 1 / 144) / n)


def test_normal_mean_and_variance() -> None:
    n = 10**6
    z = CounterGenerator(99).standard_normal(n)
    assert abs(z.mean()) <= 5 / math.sqrt(n)
    assert abs(z.var() - 1.0) <= 5 * math.sqrt(2 / n)
    # the tails too: P(|z| > 2) = 0.0455
    p = 2 * 0.5 * math.erfc(2 / math.sqrt(2))
    assert abs(np.mean(np.abs(z) > 2) - p) <= 5 * math.sqrt(p * (1 - p) / n)


def test_seeds_give_unrelated_streams() -> None:
    a, b = CounterGenerator(0).random(10**5), CounterGenerator(1).random(10**5)
    assert abs(np.corrcoef(a, b)[0, 1]) <= 5 / math.sqrt(10**5)


# -- NumPy and the stand-in ---------------------------------------------------------------------


def test_numpy_and_strict_draw_the_same_bits() -> None:
    host, dev = CounterGenerator(5), CounterGenerator(5, xp=strict_mod.strict)
    for draw in (
        lambda g: g.random((3, 4)),
        lambda g: g.random(7, dtype=np.float32),
        lambda g: g.standard_normal((2, 5)),
        lambda g: g.standard_normal(3, dtype=np.float32),
        lambda g: g.integers(-4, 9, size=6),
        lambda g: g.random(),
    ):
        want, got = draw(host), draw(dev)
        assert isinstance(got, StrictArray)
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(nanotf.to_numpy(got), want)
    assert host.state == dev.state


def test_draws_are_a_stream_and_scalars_are_0d() -> None:
    """Two draws are the words of one: n, then m values equal n + m values at once."""
    whole = CounterGenerator(8).random(10)
    g = CounterGenerator(8)
    np.testing.assert_array_equal(np.concatenate([g.random(4), g.random(6)]), whole)
    one = CounterGenerator(8).random()
    assert one.shape == () and float(one) == whole[0]
    assert CounterGenerator(8).random((2, 0)).shape == (2, 0)


# -- state --------------------------------------------------------------------------------------


@pytest.mark.parametrize("xp", [np, strict_mod.strict], ids=["numpy", "strict"])
def test_state_round_trip(xp: Any) -> None:
    g = CounterGenerator(17, xp=xp)
    g.random(5)
    saved = json.loads(json.dumps(g.state))  # JSON-able, as a checkpoint stores it
    assert saved == {"kind": KIND, "seed": 17, "counter": 5}
    later = [nanotf.to_numpy(g.random(6)), nanotf.to_numpy(g.standard_normal(3))]
    g.random(100)
    g.state = saved
    np.testing.assert_array_equal(nanotf.to_numpy(g.random(6)), later[0])
    np.testing.assert_array_equal(nanotf.to_numpy(g.standard_normal(3)), later[1])
    other = CounterGenerator(0, xp=xp)
    other.state = saved  # a fresh generator given the state draws the same
    assert other.state == saved


@pytest.mark.parametrize(
    ("state", "match"),
    [
        ({"kind": "PCG64", "seed": 0, "counter": 0}, r"kind 'splitmix64'"),
        ([1, 2], r"kind 'splitmix64'"),
        ({"kind": KIND, "seed": 0}, r"lacks counter"),
        ({"kind": KIND, "seed": 0, "counter": -1}, r"counter must lie in \[0, 2\*\*64\), got -1"),
        ({"kind": KIND, "seed": 2**64, "counter": 0}, r"seed must lie in \[0, 2\*\*64\)"),
        ({"kind": KIND, "seed": 0, "counter": "3"}, r"counter must be an integer, got '3'"),
    ],
)
def test_bad_state_is_refused_and_changes_nothing(state: Any, match: str) -> None:
    g = CounterGenerator(3)
    g.random(2)
    with pytest.raises((ValueError, TypeError), match=match):
        g.state = state
    assert g.state == {"kind": KIND, "seed": 3, "counter": 2}


def test_bad_arguments() -> None:
    g = CounterGenerator(0)
    with pytest.raises(TypeError, match=r"random dtype must be float32 or float64, got float16"):
        g.random(3, dtype=np.float16)
    with pytest.raises(ValueError, match=r"size must not be negative, got \(2, -1\)"):
        g.random((2, -1))
    with pytest.raises(TypeError, match=r"size must be None, an int or a tuple of ints"):
        g.standard_normal(2.5)
    with pytest.raises(ValueError, match=r"needs low < high within int64.*low=3, high=3"):
        g.integers(3, 3)
    with pytest.raises(ValueError, match=r"within uint8"):
        g.integers(0, 300, dtype=np.uint8)
    with pytest.raises(ValueError, match=r"seed must lie in \[0, 2\*\*64\), got -1"):
        CounterGenerator(-1)
    assert g.counter == 0  # nothing was drawn


# -- the backend's generator ----------------------------------------------------------------------


def test_numpy_keeps_pcg64_unless_asked() -> None:
    assert nanotf_backend.rng_kind() == "auto"
    nanotf.manual_seed(3)
    assert isinstance(nanotf.rng(), np.random.Generator)
    np.testing.assert_array_equal(nanotf.rng().random(4), np.random.default_rng(3).random(4))
    nanotf_backend.set_rng_kind("counter")
    g = nanotf.rng()
    assert isinstance(g, CounterGenerator) and g.xp is np and g.seed == 3
    np.testing.assert_array_equal(g.random(4), CounterGenerator(3).random(4))
    nanotf.manual_seed(9)  # manual_seed and set_backend keep the kind
    assert isinstance(nanotf.rng(), CounterGenerator) and nanotf.rng().seed == 9
    nanotf.set_backend("numpy")
    assert isinstance(nanotf.rng(), CounterGenerator) and nanotf.rng().counter == 0
    nanotf_backend.set_rng_kind("AUTO")
    assert isinstance(nanotf.rng(), np.random.Generator)


def test_bad_rng_kind_and_seed() -> None:
    with pytest.raises(ValueError, match=r"rng kind 'philox': expected one of auto, counter"):
        nanotf_backend.set_rng_kind("philox")
    nanotf_backend.set_rng_kind("counter")
    nanotf.manual_seed(4)
    with pytest.raises(ValueError, match=r"seed must lie in \[0, 2\*\*64\), got 18446744"):
        nanotf.manual_seed(2**64)
    assert nanotf.rng().seed == 4  # the refused seed changed nothing
    nanotf_backend.set_rng_kind("auto")
    nanotf.manual_seed(2**64)  # NumPy's generator takes any size of seed; the counter one not
    with pytest.raises(ValueError, match=r"seed must lie in \[0, 2\*\*64\)"):
        nanotf_backend.set_rng_kind("counter")
    assert nanotf_backend.rng_kind() == "auto" and isinstance(nanotf.rng(), np.random.Generator)


def test_host_rng_state_of_either_kind() -> None:
    nanotf.manual_seed(1)
    pcg = host_rng_state()
    assert pcg is not None and pcg["bit_generator"] == "PCG64"  # what old checkpoints hold
    a = nanotf.rng().random(3)
    set_host_rng_state(pcg)
    np.testing.assert_array_equal(nanotf.rng().random(3), a)

    nanotf_backend.set_rng_kind("counter")
    nanotf.rng().random(5)
    state = host_rng_state()
    assert state == {"kind": KIND, "seed": 1, "counter": 5}
    b = nanotf.rng().standard_normal(4)
    set_host_rng_state(json.loads(json.dumps(state)))
    np.testing.assert_array_equal(nanotf.rng().standard_normal(4), b)


def test_a_state_of_the_other_kind_warns_and_changes_nothing() -> None:
    nanotf.manual_seed(2)
    pcg = host_rng_state()
    nanotf_backend.set_rng_kind("counter")
    nanotf.rng().random(3)
    with pytest.warns(UserWarning, match=r"a NumPy PCG64 state, but this run draws from the c"):
        set_host_rng_state(pcg)
    assert host_rng_state() == {"kind": KIND, "seed": 2, "counter": 3}
    nanotf_backend.set_rng_kind("auto")
    before = host_rng_state()
    with pytest.warns(UserWarning, match=r"a counter generator's state, but this run draws from N"):
        set_host_rng_state({"kind": KIND, "seed": 2, "counter": 3})
    assert host_rng_state() == before
    set_host_rng_state(None)  # nothing saved: nothing changes
    assert host_rng_state() == before


# -- dropout and training -----------------------------------------------------------------------


def test_dropout_masks_on_strict_repeat_from_a_saved_state() -> None:
    """dropout_forward driven by the counter generator on the stand-in: the masks after a saved
    state repeat when it is set back, and equal NumPy's."""
    x = np.random.default_rng(0).standard_normal((4, 6, 8)).astype(np.float32)
    dev = CounterGenerator(21, xp=strict_mod.strict)
    dropout_forward(strict_mod.asarray(x), 0.1, rng=dev)
    saved = dev.state
    first = [nanotf.to_numpy(dropout_forward(strict_mod.asarray(x), 0.1, rng=dev)[0])
             for _ in range(3)]
    dev.state = saved
    again = [nanotf.to_numpy(dropout_forward(strict_mod.asarray(x), 0.1, rng=dev)[0])
             for _ in range(3)]
    host = CounterGenerator(21)
    dropout_forward(x, 0.1, rng=host)
    on_host = [dropout_forward(x, 0.1, rng=host)[0] for _ in range(3)]
    for a, b, c in zip(first, again, on_host, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    assert not np.array_equal(first[0], first[1])
    out, cache = dropout_forward(x, 0.1, rng=CounterGenerator(21))
    kept = (out != 0).mean()
    assert 0.8 < kept < 1.0  # about 1 - p of the 192 elements kept
    np.testing.assert_array_equal(dropout_backward(np.ones_like(x), cache), cache.keep)


def test_trainer_with_the_counter_generator_resumes_exactly(tmp_path: Path) -> None:
    """test_checkpoint's resume test with the generator CuPy runs use (here on NumPy): 20
    steps straight == 10, save, load into a fresh Trainer, 10 more; the checkpoint holds the
    counter state."""
    nanotf_backend.set_rng_kind("counter")
    straight = Trainer(tiny(steps=20, eval_every=5), progress=False)
    assert isinstance(nanotf.rng(), CounterGenerator)
    straight.train()

    first = Trainer(tiny(steps=20, eval_every=5), progress=False)
    first.train(until=10)
    path = first.save(tmp_path / "ckpt.safetensors")
    saved = load_checkpoint(path)["rng_state"]
    assert saved["kind"] == KIND and saved["seed"] == first.config.seed and saved["counter"] > 0
    del first

    resumed = Trainer(tiny(steps=20, eval_every=5), progress=False)
    resumed.load(path)
    assert host_rng_state() == saved
    resumed.train()
    assert resumed.history.loss == straight.history.loss
    assert [e["loss"] for e in resumed.history.evals] == [e["loss"] for e in straight.history.evals]
    want = params_of(straight)
    for name, p in params_of(resumed).items():
        np.testing.assert_array_equal(p, want[name], err_msg=name)


def on_strict(trainer: Trainer, monkeypatch: pytest.MonkeyPatch) -> Trainer:
    """The trainer's model, optimizer and schedule on the stand-in, which becomes the current
    array module, with the counter generator seeded as the trainer seeded its own."""
    trainer.model.to(strict_mod.strict)
    monkeypatch.setitem(nanotf_backend._state, "module", strict_mod.strict)
    gen = CounterGenerator(trainer.config.seed, xp=strict_mod.strict)
    gen.state = host_rng_state()  # where the model's initialisation left the generator
    monkeypatch.setitem(nanotf_backend._state, "rng", gen)
    trainer.optimizer = make_optimizer(trainer.config, trainer.model)
    trainer.scheduler = LRScheduler(trainer.optimizer, lr_schedule(trainer.config))
    return trainer


def test_strict_trainer_equals_numpy_and_rolls_back_an_abandoned_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Dropout 0.1 on the stand-in with the counter generator: the same masks, so the same
    losses and weights bit for bit as on NumPy; and a step abandoned after its dropout draws
    (an error in the backward) sets the generator back, so the run goes on as if it never
    happened."""
    nanotf_backend.set_rng_kind("counter")
    host = Trainer(tiny(steps=6, eval_every=0), progress=False)
    host_params = params_of(host)  # the same init: both trainers seeded the counter generator
    host.train()

    dev = on_strict(Trainer(tiny(steps=6, eval_every=0), progress=False), monkeypatch)
    for name, p in dev.model.state_dict().items():
        np.testing.assert_array_equal(nanotf.to_numpy(p), host_params[name], err_msg=name)
    dev.train(until=3)
    backward = dev.model.backward

    def failing(dout: Any) -> Any:
        raise RuntimeError("abandoned step")

    monkeypatch.setattr(dev.model, "backward", failing)
    before = dict(nanotf.rng().state)
    with pytest.raises(RuntimeError, match="abandoned step"):
        dev.train_step()
    assert nanotf.rng().state == before and dev.step == 3
    monkeypatch.setattr(dev.model, "backward", backward)
    dev.train()
    assert dev.history.loss == host.history.loss
    for name, want in params_of(host).items():
        got = nanotf.to_numpy(dev.model.state_dict()[name])
        np.testing.assert_array_equal(got, want, err_msg=name)


# -- on the GPU ---------------------------------------------------------------------------------


@pytest.mark.gpu
def test_cupy_draws_the_numpy_bits() -> None:
    import cupy  # type: ignore[import-not-found]

    host, dev = CounterGenerator(123), CounterGenerator(123, xp=cupy)
    for draw in (
        lambda g: g.random((64, 33)),
        lambda g: g.random(1000, dtype=np.float32),
        lambda g: g.standard_normal(5000),
        lambda g: g.standard_normal((7, 9), dtype=np.float32),
        lambda g: g.integers(-1000, 1000, size=100),
    ):
        want, got = draw(host), draw(dev)
        assert isinstance(got, cupy.ndarray)
        np.testing.assert_array_equal(cupy.asnumpy(got), want)
    assert host.state == dev.state


@pytest.mark.gpu
def test_cupy_backend_uses_the_counter_generator_and_resumes_exactly(tmp_path: Path) -> None:
    """On CuPy the backend's generator is the counter one: the same parameters as NumPy with
    set_rng_kind("counter"), and a run resumed from a checkpoint equals the uninterrupted one."""
    import cupy  # type: ignore[import-not-found]

    nanotf_backend.set_rng_kind("counter")
    host = Trainer(tiny(steps=8, eval_every=0), progress=False)
    nanotf_backend.set_rng_kind("auto")
    straight = Trainer(tiny(steps=8, eval_every=0, backend="cupy"), progress=False)
    g = nanotf.rng()
    assert isinstance(g, CounterGenerator) and g.xp is cupy
    for name, want in params_of(host).items():
        np.testing.assert_array_equal(nanotf.to_numpy(straight.model.state_dict()[name]), want)
    straight.train()
    first = Trainer(tiny(steps=8, eval_every=0, backend="cupy"), progress=False)
    first.train(until=4)
    path = first.save(tmp_path / "gpu.safetensors")
    assert load_checkpoint(path)["rng_state"]["kind"] == KIND
    resumed = Trainer(tiny(steps=8, eval_every=0, backend="cupy"), progress=False)
    resumed.load(path)
    resumed.train()
    assert resumed.history.loss == straight.history.loss
    for name, p in straight.model.state_dict().items():
        got = nanotf.to_numpy(resumed.model.state_dict()[name])
        np.testing.assert_array_equal(got, nanotf.to_numpy(p), err_msg=name)
