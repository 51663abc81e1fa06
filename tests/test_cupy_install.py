"""Installing CuPy: one extra per CUDA version, a clear error when two CuPy packages are installed
(found from the package metadata, before CuPy is imported) or none is, and a warnings filter that
lets CuPy's PerformanceWarning through without importing CuPy."""

from __future__ import annotations

import configparser
import importlib.metadata
import sys
import types
import warnings
from pathlib import Path
from typing import Any

import pytest

import nanotf
from nanotf import backend

ROOT = Path(__file__).resolve().parents[1]


class FakeDistribution:
    """What ``importlib.metadata.distributions()`` yields, as far as the check reads it."""

    def __init__(
        self, name: str | None, top_level: str | None = None, files: list[str] | None = None
    ) -> None:
        self.metadata = None if name is None else {"Name": name}
        self._top_level = top_level
        self.files = None if files is None else [Path(f) for f in files]

    def read_text(self, filename: str) -> str | None:
        return self._top_level if filename == "top_level.txt" else None


def installed(monkeypatch: pytest.MonkeyPatch, *dists: FakeDistribution) -> None:
    """Make ``importlib.metadata.distributions()`` list ``dists`` (and numpy, which is no CuPy)."""
    everything = [FakeDistribution("numpy", top_level="numpy"), *dists]
    monkeypatch.setattr(importlib.metadata, "distributions", lambda: iter(everything))


def fake_cupy(calls: list[str]) -> types.ModuleType:
    """A module named cupy that sees one GPU and notes when it is asked."""
    cupy = types.ModuleType("cupy")

    def get_device_count() -> int:
        calls.append("getDeviceCount")
        return 1

    cupy.cuda = types.SimpleNamespace(  # type: ignore[attr-defined]
        runtime=types.SimpleNamespace(getDeviceCount=get_device_count)
    )
    return cupy


# -- the metadata check -------------------------------------------------------------------------


def test_two_cupy_wheels_are_refused_before_cupy_is_imported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(calls))  # an import would succeed
    installed(
        monkeypatch,
        FakeDistribution("cupy-cuda13x", top_level="cupy\ncupy_backends\ncupyx"),
        FakeDistribution("cupy-cuda12x", top_level="cupy\ncupy_backends\ncupyx"),
    )
    with pytest.raises(nanotf.BackendUnavailableError) as info:
        nanotf.set_backend("cupy")
    message = str(info.value)
    assert "2 CuPy packages are installed (cupy-cuda12x, cupy-cuda13x)" in message
    assert "pip uninstall -y cupy-cuda12x cupy-cuda13x" in message
    assert "nanotf[gpu]" in message and "nanotf[cuda13]" in message and "nvidia-smi" in message
    assert calls == []  # refused before CuPy was touched
    assert nanotf.get_backend() == "numpy"


def test_which_distributions_count_as_cupy(monkeypatch: pytest.MonkeyPatch) -> None:
    installed(
        monkeypatch,
        FakeDistribution("Cupy_CUDA11x"),  # known by name, spelt loosely (PEP 503)
        FakeDistribution("cupy"),  # the source package
        FakeDistribution("cupy-rocm-5-0"),
        FakeDistribution("cupy-mybuild", top_level="cupy\ncupyx"),  # ships cupy
        FakeDistribution("cupy-nightly", files=["cupy/__init__.py", "cupyx/__init__.py"]),
        FakeDistribution("cupy-chol", top_level="cupychol"),  # a library for CuPy, not CuPy
        FakeDistribution("cupy-xarray", files=["cupy_xarray/__init__.py"]),
        FakeDistribution("cupyx-extras", top_level="cupy"),  # not a cupy-* name
        FakeDistribution(None),  # a leftover without metadata
    )
    assert backend._cupy_distributions() == [
        "cupy",
        "cupy-cuda11x",
        "cupy-mybuild",
        "cupy-nightly",
        "cupy-rocm-5-0",
    ]


def test_one_cupy_wheel_is_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    cupy = fake_cupy(calls)
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    installed(monkeypatch, FakeDistribution("cupy-cuda13x", top_level="cupy"),
              FakeDistribution("cupy-chol", top_level="cupychol"))
    assert backend._import_cupy() is cupy
    assert calls == ["getDeviceCount"]


def test_cupy_absent_says_which_extra_to_pick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cupy", None)  # `import cupy` now raises ImportError
    installed(monkeypatch)
    with pytest.raises(nanotf.BackendUnavailableError) as info:
        nanotf.set_backend("cupy")
    message = str(info.value)
    assert "needs the CuPy package, which is not installed" in message
    assert "pip install 'nanotf[gpu]' for CUDA 12" in message
    assert "pip install 'nanotf[cuda13]' for CUDA 13" in message
    assert "nvidia-smi" in message
    assert nanotf.get_backend() == "numpy"


def test_this_machine_has_at_most_one_cupy() -> None:
    """The real metadata: the check runs on it without error and finds no duplicate here."""
    assert len(backend._cupy_distributions()) <= 1


# -- packaging and the warnings filter -----------------------------------------------------------


def test_one_extra_per_cuda_version() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    extras = cfg["options.extras_require"]
    gpu, cuda13 = extras["gpu"].split(), extras["cuda13"].split()
    assert [r for r in gpu if r.startswith("cupy")] == ["cupy-cuda12x>=13"]
    assert [r for r in cuda13 if r.startswith("cupy")] == ["cupy-cuda13x>=13"]
    for name, reqs in extras.items():  # no extra pulls in CuPy as well as something else's CuPy
        assert len([r for r in reqs.split() if r.startswith("cupy")]) <= 1, name


class PerformanceWarning(RuntimeWarning):
    """Stands in for cupy._util.PerformanceWarning (a RuntimeWarning)."""


def pyproject_filters() -> list[str]:
    tomllib: Any = pytest.importorskip("tomllib")  # Python 3.11+
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["tool"]["pytest"]["ini_options"]["filterwarnings"]


def test_cupy_performance_warnings_are_shown_not_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    """pyproject's filters, applied as pytest applies ini filters: a RuntimeWarning raised in a
    CuPy module is shown, one raised anywhere else fails; reading them imports no CuPy."""
    from _pytest.config import parse_warning_filter

    monkeypatch.setitem(sys.modules, "cupy", None)  # resolving a cupy.* category would fail
    filters = pyproject_filters()
    with warnings.catch_warnings(record=True) as seen:
        warnings.resetwarnings()
        for arg in filters:  # later entries take precedence, as in pytest
            warnings.filterwarnings(*parse_warning_filter(arg, escape=False))
        for module in ("cupy._core.core", "cupyx.scipy.special", "cupy_backends.cuda.api"):
            warnings.warn_explicit("slow path", PerformanceWarning, "x.py", 1, module=module)
        with pytest.raises(RuntimeWarning, match="overflow"):
            warnings.warn_explicit("overflow", RuntimeWarning, "x.py", 1,
                                   module="nanotf.functional.softmax")
        with pytest.raises(PerformanceWarning):
            warnings.warn_explicit("slow path", PerformanceWarning, "x.py", 1, module="nanotf")
    assert [(w.category, str(w.message)) for w in seen] == [(PerformanceWarning, "slow path")] * 3
