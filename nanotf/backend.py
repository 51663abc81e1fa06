"""The array layer: which array module runs the math (NumPy or CuPy), moving arrays, RNG, dtypes.

Everything that differs between NumPy and CuPy lives here, so the ops above can be written once:

* ``get_array_module(*arrays)`` returns the module of the given arrays (the CuPy idiom), so an
  op runs on whatever device its inputs live on.
* ``set_backend("numpy" | "cupy")`` (or ``NANOTF_BACKEND``) chooses where *new* arrays go:
  parameters, random numbers, ``asarray``. Nothing is swapped at import time.
* ``to_numpy`` / ``asarray`` are the only ways arrays move between host and device.
* ``rng()`` is the one seeded generator of the current backend; ``manual_seed`` reseeds it.
* ``scatter_add`` and ``erf`` are the few operations whose spelling differs between backends.
* ``BACKENDS`` names the backends, once, for every caller (the trainer's config, the CLI).

``get_array_module`` lives in :mod:`nanotf.arrays` and the NumPy ``erf`` in :mod:`nanotf.special`,
both below this module, so nothing here reaches up into the ops.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

import numpy as np

from .arrays import get_array_module
from .special import erf as _arithmetic_erf

# The public names, re-exported by ``nanotf`` itself. ``scatter_add`` and ``erf`` are helpers for
# the ops (imported by name), and ``xp`` the deprecated name of ``array_module``.
__all__ = [
    "BACKENDS",
    "BackendUnavailableError",
    "array_module",
    "asarray",
    "default_dtype",
    "get_array_module",
    "get_backend",
    "manual_seed",
    "rng",
    "rng_kind",
    "set_backend",
    "set_default_dtype",
    "set_rng_kind",
    "to_numpy",
]

BACKENDS: tuple[str, ...] = ("numpy", "cupy")  # the names set_backend takes


class BackendUnavailableError(RuntimeError):
    """Raised when the requested backend cannot run on this machine (e.g. no CuPy, no GPU)."""


_state: dict[str, Any] = {
    "name": "numpy",
    "module": np,
    "dtype": np.dtype(np.float32),
    "seed": 0,
    "rng": np.random.default_rng(0),
}


# How to install CuPy: one extra per CUDA major version (setup.cfg), never both.
_CUPY_INSTALL_HINT = (
    "pip install 'nanotf[gpu]' for CUDA 12 (cupy-cuda12x) or pip install 'nanotf[cuda13]' for "
    "CUDA 13 (cupy-cuda13x), only one of them; `nvidia-smi` shows the machine's CUDA version"
)
# The distributions that install the ``cupy`` package by name: the source package and the wheels
# built for one CUDA (cupy-cuda11x, cupy-cuda12x, cupy-cuda13x, older cupy-cuda102 ...) or ROCm
# version (cupy-rocm-5-0). Another ``cupy-*`` name counts when it ships ``cupy`` itself.
_CUPY_DISTRIBUTION = r"cupy(-cuda\d+x?|-rocm(-\d+)+)?"


def _ships_cupy(dist: Any) -> bool:
    """Whether an installed distribution ships the top-level ``cupy`` package, by its
    ``top_level.txt`` or, without one, its list of files."""
    top_level = dist.read_text("top_level.txt")
    if top_level is not None:
        return "cupy" in top_level.split()
    return any(f.parts[:1] == ("cupy",) for f in dist.files or ())


def _cupy_distributions() -> list[str]:
    """The installed CuPy distributions (normalised names, sorted), read from the package
    metadata: CuPy itself is not imported, so this works where two copies would break it."""
    import importlib.metadata
    import re

    names = set()
    for dist in importlib.metadata.distributions():
        meta = dist.metadata
        raw = meta.get("Name") if meta is not None else None
        if not raw:
            continue  # a broken leftover without metadata
        name = re.sub(r"[-_.]+", "-", raw).lower()  # PEP 503: Cupy_CUDA12x -> cupy-cuda12x
        if name != "cupy" and not name.startswith("cupy-"):
            continue
        if re.fullmatch(_CUPY_DISTRIBUTION, name) or _ships_cupy(dist):
            names.add(name)
    return sorted(names)


def _import_cupy() -> ModuleType:
    """Import CuPy and make sure a CUDA device is usable; one clear error otherwise.

    Before the import, the package metadata is checked for more than one CuPy distribution
    (say cupy-cuda12x and cupy-cuda13x): they unpack into the same ``cupy`` folder, so the
    import would load a mix of the two.
    """
    found = _cupy_distributions()
    if len(found) > 1:
        raise BackendUnavailableError(
            f"backend 'cupy': {len(found)} CuPy packages are installed ({', '.join(found)}), "
            "which CuPy does not support: they share one `cupy` folder. Uninstall all of them "
            f"(pip uninstall -y {' '.join(found)}), then install one: {_CUPY_INSTALL_HINT}"
        )
    try:
        import cupy  # type: ignore[import-not-found]
    except ImportError as err:
        raise BackendUnavailableError(
            "backend 'cupy' needs the CuPy package, which is not installed; on a machine with an "
            f"NVIDIA GPU: {_CUPY_INSTALL_HINT}"
        ) from err
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:  # CUDA driver missing or broken
        raise BackendUnavailableError(
            f"backend 'cupy': CuPy is installed but no CUDA device can be used ({err})"
        ) from err
    if count < 1:
        raise BackendUnavailableError("backend 'cupy': CuPy is installed but found no GPU")
    return cupy


def module_for(name: str) -> ModuleType:
    """The array module of backend ``name`` (``"numpy"`` or ``"cupy"``, any case): NumPy, or
    CuPy after checking that it and a GPU can be used (``BackendUnavailableError`` if not)."""
    if not isinstance(name, str) or name.lower() not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}: expected one of {', '.join(BACKENDS)}")
    return np if name.lower() == "numpy" else _import_cupy()


def set_backend(name: str) -> None:
    """Choose where new arrays are made: ``"numpy"`` (CPU, default) or ``"cupy"`` (GPU)."""
    module = module_for(name)
    name = name.lower()
    _state["name"] = name
    _state["module"] = module
    _state["rng"] = _new_rng(module, _state["seed"])


def get_backend() -> str:
    """Name of the current backend, ``"numpy"`` or ``"cupy"``."""
    return _state["name"]


def array_module() -> ModuleType:
    """The array module of the current backend (``numpy`` or ``cupy``), where new arrays go.

    Not to be confused with ``get_array_module(*arrays)``, the module given arrays live in.
    """
    return _state["module"]


xp = array_module  # deprecated: the old name of array_module (``xp`` is a module everywhere else)


def default_dtype() -> np.dtype:
    """The floating dtype new parameters get (float32 unless changed)."""
    return _state["dtype"]


def set_default_dtype(dtype: Any) -> None:
    """Set the dtype of new parameters: ``float32`` (training) or ``float64`` (gradient checks)."""
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"default dtype must be float32 or float64, got {dt}")
    _state["dtype"] = dt


def manual_seed(seed: int) -> None:
    """Reseed the generator of the current backend (every run with the same seed repeats)."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    generator = _new_rng(_state["module"], int(seed))  # first: a refused seed changes nothing
    _state["seed"] = int(seed)
    _state["rng"] = generator


def rng() -> Any:
    """The seeded random generator of the current backend: NumPy's ``numpy.random.Generator``
    (PCG64) on NumPy, nanotf's :class:`~nanotf.counter_rng.CounterGenerator` on CuPy (CuPy's own
    generator cannot save its state, so a resumed run could not repeat its dropout masks); with
    ``set_rng_kind("counter")`` the counter generator on NumPy too."""
    return _state["rng"]


RNG_KINDS = ("auto", "counter")  # what set_rng_kind takes


def set_rng_kind(kind: str) -> None:
    """Which generator ``rng()`` is, from now on (reseeded with the current seed).

    ``"auto"`` (the default): NumPy's PCG64 generator on NumPy, as nanotf always had (the tests,
    the course and old checkpoints rely on its numbers), and the counter generator on CuPy.
    ``"counter"``: the counter generator on every backend, so the same seed gives bit for bit
    the same parameters and dropout masks on NumPy and on CuPy (to compare a GPU run with a CPU
    one). ``manual_seed`` and ``set_backend`` keep the kind.
    """
    if not isinstance(kind, str) or kind.lower() not in RNG_KINDS:
        raise ValueError(f"unknown rng kind {kind!r}: expected one of {', '.join(RNG_KINDS)}")
    generator = _new_rng(_state["module"], _state["seed"], kind.lower())  # may refuse the seed
    _state["rng_kind"] = kind.lower()
    _state["rng"] = generator


def rng_kind() -> str:
    """The kind of generator ``set_rng_kind`` chose: ``"auto"`` or ``"counter"``."""
    return _state.get("rng_kind", "auto")


def _new_rng(module: ModuleType, seed: int, kind: str | None = None) -> Any:
    """A fresh generator for the array module ``module``, of ``kind`` (default: ``rng_kind()``)."""
    if module is np and (kind or rng_kind()) == "auto":
        return np.random.default_rng(seed)
    from .counter_rng import CounterGenerator

    return CounterGenerator(seed, xp=module)


def to_numpy(a: Any) -> np.ndarray:
    """Copy an array to the host as a NumPy array (a NumPy array is returned as is)."""
    if isinstance(a, np.ndarray):
        return a
    if hasattr(a, "get"):  # CuPy arrays and the CPU stand-in
        return a.get()
    if np.isscalar(a):
        return np.asarray(a)
    raise TypeError(f"to_numpy expects a NumPy or CuPy array, got {type(a).__name__}")


def asarray(a: Any, dtype: Any = None) -> Any:
    """Put ``a`` on the current backend's device (no copy when it is already there).

    As ``torch.tensor``: Python floats (``asarray([1.0])``) get the default float dtype
    (float32 unless changed), integers stay integers, an array keeps its dtype and an explicit
    ``dtype`` wins.
    """
    out = _state["module"].asarray(a, dtype=dtype)
    if dtype is None and not hasattr(a, "dtype") and out.dtype.kind == "f":
        out = out.astype(_state["dtype"], copy=False)
    return out


def scatter_add(target: Any, indices: Any, values: Any) -> None:
    """``target[indices] += values`` where repeated indices add up: ``np.add.at`` on NumPy (one
    add after another, in the order of ``indices``), ``cupyx.scatter_add`` on CuPy (atomic adds,
    in whatever order the GPU runs them: in floating point the last bits may change from run to
    run; ``embedding_backward`` sums in a fixed order there instead)."""
    cupyx = _cupyx_for(target)
    if cupyx is None:
        np.add.at(target, indices, values)
    else:  # CuPy's cupyx, or the CPU stand-in's cupyx-like namespace
        cupyx.scatter_add(target, indices, values)


def _cupyx_for(x: Any) -> Any:
    """The ``cupyx`` module that goes with ``x``'s array module, or None for NumPy arrays.

    CuPy arrays get the real ``cupyx`` (with ``cupyx.scipy.special`` imported); arrays of the
    CPU stand-in (``nanotf.testing.strict``) get its ``cupyx``-like namespace, which computes
    the same functions with NumPy. So the CuPy-only branches run, line for line, in CI.
    """
    xp_ = get_array_module(x)
    if xp_ is np:
        return None
    stand_in = getattr(xp_, "cupyx", None)
    if stand_in is not None:
        return stand_in
    import cupyx  # type: ignore[import-not-found]
    import cupyx.scipy.special  # type: ignore[import-not-found]  # noqa: F401  (the attribute)

    return cupyx


def erf(x: Any) -> Any:
    """The error function, elementwise, on either backend (NumPy has none of its own)."""
    cupyx = _cupyx_for(x)
    if cupyx is None:
        return _arithmetic_erf(x)
    return cupyx.scipy.special.erf(x)


_env = os.environ.get("NANOTF_BACKEND")
if _env:
    set_backend(_env)
