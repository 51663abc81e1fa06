"""The strict CPU stand-in for CuPy (``nanotf.testing.strict``) behaves like CuPy where it matters:
it counts (and in ``refuse_syncs`` refuses) implicit host syncs, its generator has exactly
``cupy.random.Generator``'s methods, and its ``cupyx`` namespace makes the CuPy-only branches of
``nanotf.backend`` run in CI."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import nanotf
from nanotf import backend
from nanotf import backend as nanotf_backend
from nanotf.special import erf as numpy_erf
from nanotf.testing import strict as strict_mod
from nanotf.testing.strict import (
    CUPY_GENERATOR_METHODS,
    DeviceConversionError,
    StrictArray,
    count_syncs,
    refuse_syncs,
    strict,
)

# -- implicit host syncs ------------------------------------------------------------------------

VEC = np.array([0.5, -1.0, 2.0, 0.0])

# (the name the stand-in gives the call, the call on a device array)
SYNCS: list[tuple[str, Callable[[Any], Any]]] = [
    ("float()", lambda a: float(a.sum())),
    ("int()", lambda a: int(a.astype(np.int64).max())),
    ("bool()", lambda a: bool((a > 1).any())),
    ("bool()", lambda a: 1 if a[0] > 0 else 0),  # an `if` on a device comparison
    ("complex()", lambda a: complex(a[0])),
    ("index", lambda a: operator.index(a.astype(np.int64)[2])),
    ("index", lambda a: list(range(10))[a.astype(np.int64)[2]]),
    (".item()", lambda a: a[1].item()),
    (".tolist()", lambda a: a.tolist()),
    ("format()", lambda a: f"{a.sum():.3f}"),
    ("boolean-mask index", lambda a: a[a > 0]),
    (".nonzero()", lambda a: a.nonzero()),
    ("flatnonzero()", lambda a: strict.flatnonzero(a)),
    ("unique()", lambda a: strict.unique(a)),
    ("where()", lambda a: strict.where(a > 0)),
    ("nonzero()", lambda a: np.nonzero(a)),  # NumPy's function, through __array_function__
]


@pytest.mark.parametrize("call, sync", SYNCS, ids=[f"{c}-{i}" for i, (c, _) in enumerate(SYNCS)])
def test_implicit_syncs_are_counted_and_refused(call: str, sync: Callable[[Any], Any]) -> None:
    a = strict_mod.asarray(VEC)
    with count_syncs() as counted:
        sync(a)
    assert counted.implicit == 1 and counted.calls == [call] and counted.transfers == 0
    with refuse_syncs(), pytest.raises(DeviceConversionError) as err:
        sync(a)
    assert str(err.value).startswith(f"{call} of a device array")
    assert "implicit host sync" in str(err.value) and "nanotf.to_numpy" in str(err.value)
    sync(a)  # allowed again after the block


def test_the_results_of_counted_syncs_are_right() -> None:
    a = strict_mod.asarray(VEC)
    assert float(a.sum()) == 1.5 and a.tolist() == VEC.tolist() and a[2].item() == 2.0
    assert f"{a.sum():.2f}" == "1.50"
    np.testing.assert_array_equal(a[a > 0].get(), [0.5, 2.0])


def test_explicit_transfers_are_counted_apart_and_allowed() -> None:
    a = strict_mod.asarray(VEC)
    with count_syncs() as outer, refuse_syncs():
        host = nanotf.to_numpy(a)
        with count_syncs() as inner:
            again = a.get()
    assert type(host) is np.ndarray and type(again) is np.ndarray
    np.testing.assert_array_equal(host, VEC)
    assert (outer.implicit, outer.transfers) == (0, 2)
    assert (inner.implicit, inner.transfers) == (0, 1)


def test_device_work_is_not_a_sync() -> None:
    """Arithmetic, reductions (to 0-d arrays), where, argmax, shapes: no sync, as on CuPy."""
    a = strict_mod.asarray(VEC)
    with count_syncs() as counted, refuse_syncs():
        b = strict.where(a > 0, a, 0.0) * 2 + a.sum()
        i = b.argmax()
        n = len(a) + a.shape[0] + a.size
        rows = [r for r in strict_mod.asarray(np.ones((3, 2)))]  # rows stay on the device
    assert (counted.implicit, counted.transfers) == (0, 0)
    assert isinstance(i, StrictArray) and i.ndim == 0 and n == 12 and len(rows) == 3


def test_numpy_conversion_is_still_refused() -> None:
    with pytest.raises(DeviceConversionError, match=r"implicit conversion of a device array"):
        np.asarray(strict_mod.asarray(VEC))


# -- the generator: exactly CuPy's methods ------------------------------------------------------


def public_methods(obj: Any) -> set[str]:
    return {n for n in dir(obj) if not n.startswith("_") and callable(getattr(obj, n))}


@pytest.mark.gpu
def test_generator_methods_are_cupys() -> None:
    import cupy  # type: ignore[import-not-found]

    assert public_methods(cupy.random.default_rng(0)) == set(CUPY_GENERATOR_METHODS)


def test_generator_methods_are_a_subset_of_numpys() -> None:
    """Each of CuPy's methods exists in NumPy (the stand-in draws with NumPy), and the four
    that NumPy has and CuPy lacks are left out."""
    numpy_methods = public_methods(np.random.default_rng(0))
    assert set(CUPY_GENERATOR_METHODS) < numpy_methods
    assert not {"normal", "permutation", "choice", "shuffle"} & set(CUPY_GENERATOR_METHODS)


@pytest.mark.parametrize("name", ["normal", "permutation", "choice", "shuffle", "bytes"])
def test_generator_lacks_what_cupy_lacks(name: str) -> None:
    gen = strict.random.default_rng(0)
    with pytest.raises(AttributeError, match=rf"cupy.random.Generator has no attribute '{name}'"):
        getattr(gen, name)
    assert not hasattr(gen, name)


def test_generator_state_cannot_be_read() -> None:
    """CuPy's generator has a ``bit_generator``, whose state lives on the device: no NumPy-style
    ``bit_generator.state`` to save in a checkpoint."""
    gen = strict.random.default_rng(0)
    assert hasattr(gen, "bit_generator")
    with pytest.raises(AttributeError, match=r"CuPy keeps the generator's state on the device"):
        _ = gen.bit_generator.state


def test_generator_normal_points_to_standard_normal() -> None:
    with pytest.raises(AttributeError, match=r"use standard_normal\(\) \* scale \+ loc"):
        strict.random.default_rng(0).normal(0.0, 1.0, 3)


def test_generator_draws_numpys_numbers_on_the_device() -> None:
    gen, ref = strict.random.default_rng(7), np.random.default_rng(7)
    a = gen.random((2, 3), dtype=np.float32)
    assert isinstance(a, StrictArray) and a.dtype == np.float32
    np.testing.assert_array_equal(a.get(), ref.random((2, 3), dtype=np.float32))
    np.testing.assert_array_equal(gen.standard_normal(4).get(), ref.standard_normal(4))
    np.testing.assert_array_equal(gen.integers(0, 9, size=5).get(), ref.integers(0, 9, size=5))
    u = gen.uniform(-1.0, 1.0, size=3, dtype=np.float32)  # CuPy's uniform takes a dtype
    assert u.dtype == np.float32
    np.testing.assert_array_equal(u.get(), ref.uniform(-1.0, 1.0, size=3).astype(np.float32))
    scalar = gen.random()  # CuPy returns a 0-d array where NumPy returns a float
    assert isinstance(scalar, StrictArray) and scalar.ndim == 0
    assert scalar.get() == ref.random()


def test_nanotf_draws_only_with_cupys_methods(monkeypatch: Any) -> None:
    """Models initialised, dropout drawn and batches shuffled with the backend generator of
    the stand-in: nanotf calls no method that CuPy's generator lacks."""
    from nanotf.data import batches
    from nanotf.functional import dropout_forward
    from nanotf.models import Transformer
    from nanotf.train import make_task

    monkeypatch.setitem(nanotf_backend._state, "module", strict)
    # a generator with exactly CuPy's methods as the backend's (whatever rng() makes on CuPy)
    monkeypatch.setitem(nanotf_backend._state, "rng", strict.random.default_rng(3))
    model = Transformer(
        11, 13, d_model=8, n_heads=2, n_encoder_layers=1, n_decoder_layers=1, d_ff=16, max_len=12
    )
    assert all(isinstance(p.data, StrictArray) for p in model.parameters())
    out, _ = dropout_forward(strict_mod.asarray(np.ones((4, 5), np.float32)), 0.5)
    assert isinstance(out, StrictArray)
    task = make_task("reverse", {})
    pairs = task.splits(8, 2, 0)[0]
    assert sum(len(b) for b in batches(pairs, task, 3)) == len(pairs)


# -- cupyx: the CuPy-only branches run through the stand-in ---------------------------------------


def test_cupyx_for_picks_the_namespace_of_the_array() -> None:
    assert backend._cupyx_for(np.zeros(2)) is None
    assert backend._cupyx_for(2.0) is None
    assert backend._cupyx_for(strict_mod.asarray(np.zeros(2))) is strict_mod.cupyx
    assert strict.cupyx is strict_mod.cupyx


def test_erf_takes_the_cupyx_branch_on_the_stand_in(monkeypatch: Any) -> None:
    calls: list[Any] = []
    real = strict_mod.cupyx.scipy.special.erf

    def recording(x: Any) -> Any:
        calls.append(x)
        return real(x)

    monkeypatch.setattr(strict_mod.cupyx.scipy.special, "erf", recording)
    x = np.linspace(-4.0, 4.0, 97)
    got = backend.erf(strict_mod.asarray(x))
    assert len(calls) == 1 and isinstance(got, StrictArray)
    np.testing.assert_array_equal(got.get(), numpy_erf(x))
    backend.erf(x)  # NumPy: the arithmetic erf, not cupyx
    assert len(calls) == 1


def test_cupyx_scatter_add_adds_repeated_indices() -> None:
    target = strict_mod.asarray(np.zeros((3, 2)))
    idx = strict_mod.asarray(np.array([0, 2, 0]))
    values = strict_mod.asarray(np.arange(6.0).reshape(3, 2))
    strict_mod.cupyx.scatter_add(target, idx, values)
    np.testing.assert_array_equal(target.get(), [[4.0, 6.0], [0.0, 0.0], [2.0, 3.0]])
    with pytest.raises(DeviceConversionError, match=r"cupyx.scatter_add needs a device array"):
        strict_mod.cupyx.scatter_add(np.zeros(3), idx, values)
