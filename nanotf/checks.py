"""Input checks shared by the ops and the modules: every error names the op (or the module) and
the argument, says what was expected and what was given.

One home for each check, so every op words the same mistake the same way (``name`` is the op and
the argument, as in ``"layernorm input"``):

* ``given`` (a word or two: a dtype or a type's name, for the ops' messages) and ``describe``
  (a few words with the shape and how to convert, for the modules' messages): what was given;
* ``check_array``, ``check_float``, ``check_ndim``: an array argument is a NumPy or CuPy array
  (not a Python list, not a torch tensor), of float32 or float64, of the right rank;
* ``check_axis``, ``check_nonempty_axis``: an axis exists, and an axis that an op reduces with a
  max or a mean (softmax's axis, the classes, LayerNorm's features, attention's keys) is not
  empty. Every other axis may be empty and gives an empty result, as in torch;
* ``number_problem`` (with its halves ``is_number`` and ``range_problem``): the one home of the
  number checks, "is this a number of the right kind in the right range", answered with the
  exception to raise and the words; every family of number checks (here, in ``nanotf.nn``,
  ``nanotf.optim``, ``nanotf.train``, ``nanotf.models``) wraps it with its own prefix;
* ``check_int``, ``check_real``, ``check_float_dtype``: plain Python arguments (sizes, indices,
  probabilities, a dtype);
* ``check_int_ids``: integer ids in range (``id_range``: their min and max in one transfer;
  ``ids_checked_on_host``: a block whose device ids were checked on the host already);
* ``check_same_dtype``, ``check_same_device``: the float inputs of an op share one dtype (no
  silent upcast), all its arrays live in one array module (no silent host/device copy);
* ``check_dout``: the gradient a backward receives has the shape and dtype of its forward's
  output;
* ``broadcast_shape``: the NumPy broadcast of two shapes (a mask against the scores).

What an array is (``is_array``, ``is_torch_tensor``) lives in :mod:`nanotf.arrays`; the checks
that know a module's sizes ("``Linear(4 -> 3)``: ...") are in :mod:`nanotf.nn.checks`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import numpy as np

from .arrays import get_array_module, is_array, is_array_or_scalar, is_torch_tensor

__all__ = [
    "FLOAT_DTYPES",
    "NumberProblem",
    "broadcast_shape",
    "check_array",
    "check_axis",
    "check_bias_input",
    "check_dout",
    "check_float",
    "check_float_dtype",
    "check_int",
    "check_int_ids",
    "check_ndim",
    "check_nonempty_axis",
    "check_real",
    "check_same_device",
    "check_same_dtype",
    "describe",
    "device_ids_trusted",
    "given",
    "id_range",
    "ids_checked_on_host",
    "is_number",
    "number_problem",
    "range_problem",
    "type_name",
]

FLOAT_DTYPES = ("float32", "float64")
FLOAT_CHARS = ("f", "d")  # their one-letter codes: ``dtype.char`` is quick, ``dtype.name`` slow


def given(x: Any) -> str:
    """What was given, for an op's error message: an array's (or NumPy scalar's) dtype,
    otherwise the type's name."""
    if is_array_or_scalar(x):
        return str(x.dtype)
    if x is None:
        return "None"
    cls = type(x)
    module = cls.__module__.split(".")[0]
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def type_name(value: Any) -> str:
    """``numpy.ndarray``, ``cupy.ndarray``, ``nanotf.testing.strict.StrictArray``, ..."""
    module = type(value).__module__
    if module.split(".")[0] in ("numpy", "cupy", "torch"):
        module = module.split(".")[0]
    return f"{module}.{type(value).__name__}"


def describe(value: Any) -> str:
    """What was given, in a few words, for a module's error message: ``"a float64 array of
    shape (2, 5)"``, ``"a Python list (convert it with numpy.asarray)"``, ``"a torch.Tensor of
    shape (2, 3) (convert ...)"``."""
    if is_torch_tensor(value):
        shape = tuple(getattr(value, "shape", ()))
        return (
            f"a torch.Tensor of shape {shape} (convert it with .detach().cpu().numpy(), "
            "or nanotf.asarray(t.detach().cpu().numpy()) for the current backend)"
        )
    if is_array(value):
        kind = "" if isinstance(value, np.ndarray) else f" ({type_name(value)})"
        return f"a {value.dtype} array of shape {tuple(value.shape)}{kind}"
    if isinstance(value, (list, tuple)):
        return f"a Python {type(value).__name__} (convert it with numpy.asarray)"
    if isinstance(value, (np.generic, numbers.Number)):
        return f"the scalar {value!r}"
    return f"a {type(value).__name__}"


def _shape(shape: tuple[int | None, ...]) -> str:
    """``(4, 3)``, ``(5,)``; ``None`` (any length) prints as ``any``."""
    parts = ["any" if n is None else str(n) for n in shape]
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


def check_array(name: str, x: Any) -> None:
    """``x`` is a NumPy or CuPy array of numbers or booleans (not of objects or strings)."""
    if not is_array_or_scalar(x):
        hint = " (convert it with .numpy())" if is_torch_tensor(x) else ""
        raise TypeError(f"{name} must be a NumPy or CuPy array, got {given(x)}{hint}")
    if x.dtype.kind not in "biufc":
        raise TypeError(f"{name} must be an array of numbers or booleans, got {x.dtype}")


def check_float(name: str, x: Any) -> None:
    """``x`` must be a float32 or float64 array (ints would silently become float64)."""
    if not is_array_or_scalar(x) or x.dtype.char not in FLOAT_CHARS:
        raise TypeError(
            f"{name} must be a floating-point array (float32 or float64), got {given(x)}"
        )


def check_float_dtype(name: str, dtype: Any) -> None:
    """``dtype`` names float32 or float64 (``np.float32``, ``"float64"``, a ``numpy.dtype``)."""
    try:
        ok = np.dtype(dtype).name in FLOAT_DTYPES
    except TypeError:
        ok = False
    if not ok:
        raise TypeError(f"{name} must be float32 or float64, got {dtype!r}")


def check_ndim(name: str, x: Any, ndim: int | tuple[int, ...]) -> None:
    """``x`` is an array with ``ndim`` dimensions (or one of several)."""
    check_array(name, x)
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    if x.ndim not in allowed:
        want = " or ".join(str(n) for n in allowed)
        raise ValueError(f"{name} must have {want} dimensions, got shape {tuple(x.shape)}")


def check_axis(name: str, axis: Any, x: Any) -> None:
    """``axis`` is an integer naming an axis of ``x`` (negative counts from the end)."""
    if not isinstance(axis, numbers.Integral) or isinstance(axis, bool):
        raise TypeError(f"{name} must be an integer, got {axis!r}")
    if x.ndim == 0:
        raise ValueError(f"{name} {axis} needs an input of at least 1 dimension, got a 0-d array")
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(
            f"{name} must lie in [{-x.ndim}, {x.ndim}) for an input of shape {tuple(x.shape)}, "
            f"got {axis}"
        )


def check_nonempty_axis(name: str, x: Any, axis: int, what: str) -> None:
    """``x`` has ``axis`` and it is not empty: a max or mean over no entries is undefined."""
    if x.ndim == 0 or not -x.ndim <= axis < x.ndim:
        raise ValueError(f"{name} must have an axis {axis} ({what}), got shape {tuple(x.shape)}")
    if x.shape[axis] == 0:
        raise ValueError(
            f"{name} must not be empty along axis {axis} ({what}), got shape {tuple(x.shape)}"
        )


class NumberProblem(NamedTuple):
    """What is wrong with a number: the exception to raise, a tag, and the words.

    ``reason`` is ``"type"`` (not a number of the right kind: raise ``error`` = ``TypeError``),
    ``"finite"`` (NaN or an infinity) or ``"range"`` (outside the interval); the last two have
    ``error`` = ``ValueError``. ``words`` says it in this module's style (``"must be an
    integer"``, ``"must be at least 1"``, ``"must be in [0, 1]"``); a family of checks that words
    its messages its own way picks its sentence by ``reason``.
    """

    error: type[Exception]
    reason: str
    words: str


def check_bias_input(op: str, x: Any, bias: Any) -> None:
    """``x`` (..., C) and ``bias`` (C,): float arrays of one dtype and device, C > 0 (the inputs
    of an op that adds a bias along the last axis, e.g. ``bias_gelu``)."""
    check_float(f"{op} input", x)
    check_float(f"{op} bias", bias)
    check_same_device(op, x=x, bias=bias)
    check_same_dtype(op, x=x, bias=bias)
    check_nonempty_axis(f"{op} input", x, -1, "the C features the bias is added to")
    c = x.shape[-1]
    if tuple(bias.shape) != (c,):
        raise ValueError(
            f"{op} bias must have shape ({c},) to match x {tuple(x.shape)}, "
            f"got {tuple(bias.shape)}"
        )

def is_number(
    value: Any,
    *,
    integer: bool,
    types: tuple[type, ...] | None = None,
    bool_ok: bool = False,
) -> bool:
    """``value`` is a number of the right kind: an integer (``numbers.Integral``: Python and
    NumPy integers) or a real number (``numbers.Real``), or an instance of ``types`` where given.

    A bool is not a number here (``True`` is an ``int`` to Python, but ``Linear(True, 3)`` is a
    mistake) unless ``bool_ok``.
    """
    kinds = types if types is not None else (numbers.Integral if integer else numbers.Real,)
    if not isinstance(value, kinds):
        return False
    return bool_ok or not isinstance(value, (bool, np.bool_))


def range_problem(
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    finite: bool = False,
) -> NumberProblem | None:
    """What is wrong with the number ``value``'s size, or None: it must be finite (where
    ``finite``) and lie in the interval from ``low`` to ``high`` (each end closed unless
    ``*_open``; None = no bound). NaN lies in no interval."""
    if finite and not math.isfinite(value):
        return NumberProblem(ValueError, "finite", "must be finite")
    below = low is not None and not (value > low if low_open else value >= low)
    above = high is not None and not (value < high if high_open else value <= high)
    if not (below or above):
        return None
    if high is None:
        words = f"must be {'greater than' if low_open else 'at least'} {low}"
    elif low is None:
        words = f"must be {'less than' if high_open else 'at most'} {high}"
    else:
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        words = f"must be in {left}{low}, {high}{right}"
    return NumberProblem(ValueError, "range", words)


def number_problem(
    value: Any,
    *,
    integer: bool,
    types: tuple[type, ...] | None = None,
    bool_ok: bool = False,
    **size: Any,
) -> NumberProblem | None:
    """What is wrong with ``value`` as a number, or None where nothing is: the one home of the
    number checks; every family of checks (ops, modules, optimizers, training, configs) asks it
    and adds its own prefix and words.

    First the kind (:func:`is_number` with ``integer``, ``types``, ``bool_ok``), then the size
    (:func:`range_problem` with the keywords in ``size``: ``low``, ``high``, ``low_open``,
    ``high_open``, ``finite``).

    >>> number_problem(0, integer=True, low=1).words
    'must be at least 1'
    >>> number_problem(True, integer=True).words
    'must be an integer'
    """
    if not is_number(value, integer=integer, types=types, bool_ok=bool_ok):
        kind = "an integer" if integer else "a real number"
        return NumberProblem(TypeError, "type", f"must be {kind}")
    return range_problem(value, **size)


def check_int(name: str, value: Any, low: int | None = None) -> None:
    """``value`` is a Python or NumPy integer (not a bool), at least ``low``."""
    problem = number_problem(value, integer=True, low=low)
    if problem is not None:
        got = repr(value) if problem.reason == "type" else str(value)
        raise problem.error(f"{name} {problem.words}, got {got}")


def check_real(name: str, value: Any, low: float | None = None, high: float | None = None) -> None:
    """``value`` is a real number (not a bool), in ``[low, high]`` where both are given (NaN is
    not)."""
    bounded = low is not None and high is not None
    problem = number_problem(
        value, integer=False, low=low if bounded else None, high=high if bounded else None
    )
    if problem is not None:
        got = repr(value) if problem.reason == "type" else str(value)
        raise problem.error(f"{name} {problem.words}, got {got}")


_host_checked = [0]  # depth of ids_checked_on_host() blocks


@contextmanager
def ids_checked_on_host() -> Iterator[None]:
    """Inside the block, ids on a device (CuPy) are not range-checked again: the caller has
    checked them on the host, once per batch (``Trainer.train_step`` does, before moving the
    batch). Each device check costs a transfer that makes the host wait for the GPU; NumPy ids
    are still checked (that costs nothing)."""
    _host_checked[0] += 1
    try:
        yield
    finally:
        _host_checked[0] -= 1


def device_ids_trusted(ids: Any) -> bool:
    """True for device ids inside :func:`ids_checked_on_host` (their range is not checked)."""
    return bool(_host_checked[0]) and not isinstance(ids, (np.ndarray, np.generic))


def id_range(ids: Any, allowed_extra: int | None = None) -> tuple[int, int] | None:
    """``(min, max)`` of the non-empty integer array ``ids``, leaving out the entries equal to
    ``allowed_extra``, as Python ints; None when no entry is left.

    On NumPy: the plain reductions. On a device: one stacked reduction and **one** explicit
    transfer (``.get()``), with no boolean-mask index (whose result size CuPy would have to
    fetch from the GPU first).
    """
    if isinstance(ids, (np.ndarray, np.generic)):
        valid = ids if allowed_extra is None else ids[ids != allowed_extra]
        if valid.size == 0:
            return None
        return int(valid.min()), int(valid.max())
    xp = get_array_module(ids)
    info = np.iinfo(ids.dtype)
    lo_of, hi_of = ids, ids
    if allowed_extra is not None:  # left out: the largest value for the min, the least for the max
        extra = ids == allowed_extra
        lo_of, hi_of = xp.where(extra, info.max, ids), xp.where(extra, info.min, ids)
    lo, hi = (int(v) for v in xp.stack([lo_of.min(), hi_of.max()]).get().tolist())
    if allowed_extra is not None and lo == info.max and hi == info.min:
        return None  # every entry was allowed_extra
    return lo, hi


def check_int_ids(name: str, ids: Any, high: int, allowed_extra: int | None = None) -> None:
    """``ids`` must be integers in ``[0, high)`` (or equal to ``allowed_extra``).

    Device ids cost one transfer (:func:`id_range`), none inside :func:`ids_checked_on_host`.
    """
    if not is_array_or_scalar(ids) or ids.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array, got {given(ids)}")
    if ids.size == 0 or device_ids_trusted(ids):
        return
    found = id_range(ids, allowed_extra)
    if found is None:
        return
    lo, hi = found
    if lo < 0 or hi >= high:
        extra = "" if allowed_extra is None else f" (or {allowed_extra})"
        bad = lo if lo < 0 else hi
        raise IndexError(f"{name} must lie in [0, {high}){extra}, got a value of {bad}")


def check_same_dtype(op: str, **arrays: Any) -> None:
    """All floating inputs of an op share one dtype: no silent float32 -> float64 upcast."""
    dtypes = {k: v.dtype for k, v in arrays.items() if v is not None}
    if len(set(dtypes.values())) > 1:
        listing = ", ".join(f"{k}: {v}" for k, v in dtypes.items())
        raise TypeError(f"{op} inputs must share one floating dtype, got {listing}")


def check_same_device(op: str, **arrays: Any) -> None:
    """All array inputs of an op live in one array module (no silent host/device copies)."""
    modules = {k: get_array_module(v).__name__ for k, v in arrays.items() if v is not None}
    if len(set(modules.values())) > 1:
        listing = ", ".join(f"{k}: {v}" for k, v in modules.items())
        raise TypeError(f"{op} inputs must live on one device (one array module), got {listing}")


def check_dout(
    op: str,
    dout: Any,
    shape: tuple[int | None, ...],
    dtype: Any,
    dims: str = "",
    arg: str = "dout",
    number_ok: bool = False,
) -> None:
    """The gradient a backward receives has exactly the shape and dtype of its forward's output.

    Without this, NumPy would broadcast a wrong ``dout`` into some gradients and not into
    others (LayerNorm's dx but not its dβ), giving a silently inconsistent result, and a float64
    ``dout`` would make some float32 gradients float64 and leave others float32. ``dims`` names
    the axes for the message (``"(..., C)"``); ``None`` in ``shape`` is any length; ``arg`` is
    the argument's name in ``op``. ``number_ok``: a plain number is taken too, as the gradient
    of a loss in ``cross_entropy_backward(1.0, cache)``.
    """
    if number_ok and isinstance(dout, numbers.Real) and not isinstance(dout, (bool, np.bool_)):
        return
    check_float(f"{op} {arg}", dout)
    got = tuple(dout.shape)
    fits = len(got) == len(shape) and all(
        w is None or g == w for g, w in zip(got, shape, strict=True)
    )
    if not fits:
        named = f"{dims} = " if dims else ""
        raise ValueError(
            f"{op}: {arg} must have the shape of the forward's output {named}{_shape(shape)}, "
            f"got {got}"
        )
    if dout.dtype != dtype:
        raise TypeError(
            f"{op}: {arg} must have the dtype of the forward's output, {dtype}, got {dout.dtype}"
        )


def broadcast_shape(shape_a: tuple[int, ...], shape_b: tuple[int, ...]) -> tuple[int, ...] | None:
    """The NumPy broadcast of two shapes, or None where they do not broadcast.

    A length of 1 stretches to the other length, also to 0 (a mask (B, 1, 1, Tk) fits scores
    with no queries).
    """
    out = []
    for i in range(1, max(len(shape_a), len(shape_b)) + 1):
        a = shape_a[-i] if i <= len(shape_a) else 1
        b = shape_b[-i] if i <= len(shape_b) else 1
        if a != b and a != 1 and b != 1:
            return None
        out.append(b if a == 1 else a)
    return tuple(reversed(out))
