"""``Module.to(backend=None, dtype=None)``: moves and casts a built model, as PyTorch's ``.to``.

Casting is tested on NumPy (float32 <-> float64). Moving between devices is tested with the CPU
stand-in for CuPy (``nanotf.testing.strict``), handed to ``to`` as an array module: the public
backend names are "numpy" and "cupy", and "cupy" needs a GPU (tests marked ``gpu``).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

import nanotf
from nanotf.models import Transformer
from nanotf.nn import Linear, PositionalEncoding
from nanotf.testing import strict as strict_mod
from nanotf.testing.strict import StrictArray

SRC = np.array([[5, 6, 7, 0], [3, 4, 0, 0]])
TGT = np.array([[1, 8, 9], [1, 2, 0]])


def small() -> Transformer:
    nanotf.manual_seed(0)
    return Transformer(
        11,
        11,
        d_model=16,
        n_heads=2,
        n_encoder_layers=1,
        n_decoder_layers=1,
        d_ff=32,
        dropout=0.0,
        tie_output=True,
    )


def arrays_of(model: Transformer) -> list:
    """Every array ``to`` must move: parameter data and grads, and the buffers."""
    out = []
    for p in model.parameters():
        out += [p.data, p.grad]
    return out + [a for _, a in model.named_buffers()]


def test_the_position_table_is_a_buffer_not_a_parameter():
    model = small()
    assert [name for name, _ in model.named_buffers()] == ["pos.table"]
    assert "pos.table" not in model.state_dict()


@pytest.mark.parametrize(
    "call",
    [
        lambda m: m.to(np.float64),
        lambda m: m.to("float64"),
        lambda m: m.to(dtype="float64"),
        lambda m: m.to("numpy", np.float64),
    ],
)
def test_to_float64_casts_parameters_grads_and_buffers(call):
    model = small()
    want = model.forward(SRC, TGT).astype(np.float64)
    assert call(model) is model
    assert all(a.dtype == np.float64 and isinstance(a, np.ndarray) for a in arrays_of(model))
    got = model.forward(SRC, TGT)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    model.backward(np.ones_like(got))  # the cast model trains
    assert model.out_proj.weight.grad.dtype == np.float64


def test_cast_there_and_back_keeps_the_weights_and_the_ties():
    model = small()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    model.to(np.float64).to("numpy", "float32")
    assert model.out_proj.weight is model.tgt_embed.weight, "a tied parameter stays one Parameter"
    for k, v in model.state_dict().items():
        assert v.dtype == np.float32
        np.testing.assert_array_equal(v, before[k])


def test_move_to_the_device_stand_in_and_back():
    """The stand-in refuses silent host conversion, as CuPy does: after ``to``, a forward and
    backward on device inputs run, give NumPy's results bit for bit, and ``to("numpy")``
    brings everything back."""
    host = small()
    want = host.forward(SRC, TGT)
    host.backward(np.ones_like(want))
    want_grads = {n: p.grad.copy() for n, p in host.named_parameters()}

    model = small()
    assert model.to(strict_mod.strict) is model
    assert all(isinstance(a, StrictArray) for a in arrays_of(model))
    assert model.out_proj.weight is model.tgt_embed.weight
    got = model.forward(strict_mod.asarray(SRC), strict_mod.asarray(TGT))
    model.backward(strict_mod.asarray(np.ones_like(want)))
    np.testing.assert_array_equal(nanotf.to_numpy(got), want)
    for n, p in model.named_parameters():
        np.testing.assert_array_equal(nanotf.to_numpy(p.grad), want_grads[n], err_msg=n)

    model.to("numpy")
    assert all(isinstance(a, np.ndarray) for a in arrays_of(model))
    np.testing.assert_array_equal(model.forward(SRC, TGT), want)


def test_move_and_cast_at_once():
    lin = Linear(3, 2)
    lin.to(strict_mod.strict, np.float64)
    assert isinstance(lin.weight.data, StrictArray) and lin.weight.data.dtype == np.float64
    assert isinstance(lin.weight.grad, StrictArray) and lin.weight.grad.dtype == np.float64


def test_nothing_to_do_keeps_the_arrays():
    pe = PositionalEncoding(4, max_len=8)
    table = pe.table
    assert pe.to() is pe and pe.to("numpy", np.float32).table is table


@pytest.mark.parametrize(
    "args, match",
    [
        (("tpu",), r"Module.to: unknown backend 'tpu': expected one of numpy, cupy"),
        (("numpy", np.int32), r"Module.to: expected a floating dtype .* got <class 'numpy.int32'>"),
        ((np.int64,), r"expected a floating dtype"),
        (("float64", "float32"), r"unknown backend 'float64'"),
    ],
)
def test_bad_arguments_say_what_was_expected(args, match):
    lin = Linear(3, 2)
    with pytest.raises(ValueError, match=match):
        lin.to(*args)
    assert lin.weight.dtype == np.float32, "a refused call changes nothing"


def test_to_cupy_without_cupy_says_why(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # `import cupy` now raises ImportError
    with pytest.raises(nanotf.BackendUnavailableError, match=r"needs the CuPy package"):
        Linear(3, 2).to("cupy")


@pytest.mark.gpu
def test_to_cupy_and_back():
    cupy = pytest.importorskip("cupy")
    model = small()
    want = model.forward(SRC, TGT)
    model.to("cupy")
    assert all(isinstance(a, cupy.ndarray) for a in arrays_of(model))
    got = model.forward(cupy.asarray(SRC), cupy.asarray(TGT))
    np.testing.assert_allclose(cupy.asnumpy(got), want, rtol=1e-4, atol=1e-5)
    model.to("numpy")
    assert all(isinstance(a, np.ndarray) for a in arrays_of(model))
