"""benchmarks/gpu_check.py: its dry run on the CPU covers every section, and its helpers (the
comparison, the table, pytest's counts, a failing section) do what the GPU run relies on."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from tests.conftest import HAS_GPU

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def load_gpu_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


gc = load_gpu_check()


def table_rows(text: str) -> dict[str, list[str]]:
    """{section key: [title, result, seconds, figures]} from the Markdown table."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if line.startswith("| ") and len(cells) == 4 and cells[1] in ("PASS", "FAIL", "SKIP"):
            key, _, title = cells[0].partition(" ")
            rows[key] = [title, *cells[1:]]
    return rows


@pytest.mark.slow
def test_dry_run_passes_every_section(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NANOTF_BACKEND"}
    env.update(OUT=str(tmp_path), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", MPLBACKEND="Agg",
               PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, str(SCRIPT), "--dry-run"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    written = (tmp_path / "gpu_check.md").read_text(encoding="utf-8")
    rows = table_rows(written)
    assert list(rows) == list(gc.SECTIONS), written
    for key, (title, outcome, _, figures) in rows.items():
        assert title == gc.SECTIONS[key]
        assert outcome in ("PASS", "SKIP"), (key, figures)
    assert rows["b"][1] == "SKIP" and "dry run" in rows["b"][3]
    for key in ("c", "d", "e"):  # the comparisons ran, NumPy against NumPy
        assert rows[key][1] == "PASS", rows[key]
    assert "nanotf/PyTorch" in rows["f1"][3] and "sentences/s" in rows["f2"][3]
    assert table_rows(result.stdout) == rows  # the same table on stdout


def test_rel_error() -> None:
    want = np.array([1.0, -4.0, 2.0])
    assert gc.rel_error(want.copy(), want) == 0.0
    assert gc.rel_error(np.array([1.0, -4.0, 2.5]), want) == pytest.approx(0.5 / 4.0, rel=1e-15)
    # a result that vanishes by design, against a floor
    assert gc.rel_error(np.array([1e-9, 0.0]), np.zeros(2), floor=1.0) == pytest.approx(1e-9)
    assert gc.rel_error(np.array([1e-9, 0.0]), np.zeros(2)) == float("inf")
    assert gc.rel_error(np.array([np.nan, -4.0, 2.0]), want) == float("inf")
    with pytest.raises(ValueError, match=r"shapes differ: got \(2,\), reference \(3,\)"):
        gc.rel_error(np.zeros(2), want)


def test_worst_error_and_floors() -> None:
    want = {"w": np.array([2.0, 1.0]), "key.bias": np.array([1e-8, 0.0])}
    got = {"w": np.array([2.0, 1.0 + 2e-6]), "key.bias": np.array([3e-8, 0.0])}
    name, err = gc.worst_error(got, want)
    assert name == "key.bias" and err == pytest.approx(2.0)  # noise against noise
    name, err = gc.worst_error(got, want, {"key.bias": 2.0})
    assert name == "w" and err == pytest.approx(1e-6)
    with pytest.raises(ValueError, match="names differ"):
        gc.worst_error({"w": want["w"]}, want)
    floors = gc.key_bias_floors({"encoder.layer.0.attention.self.key.bias": np.array([1e-9]),
                                 "pooler.dense.weight": np.array([-3.0, 0.5])})
    assert floors == {"encoder.layer.0.attention.self.key.bias": 3.0}


def test_findings_fail_on_a_wrong_value() -> None:
    f = gc.Findings()
    assert f.close("float32 losses", 5e-5, 1e-4)
    assert f.result()[0] == "PASS"
    assert not f.close("float32 params", 2e-4, 1e-4)
    assert not f.check("two runs' losses", False, "differ")
    result, figures = f.result()
    assert result == "FAIL"
    assert figures.startswith("failed: float32 params, two runs' losses;")
    assert "float32 params 2.0e-04 > 1e-04" in figures


def test_parse_pytest_counts() -> None:
    done = ("....F\n!!!!! stopping after 1 failures !!!!!\n"
            "1 failed, 20 passed, 3 skipped, 2215 deselected, 2 warnings in 10.52s\n")
    assert gc.parse_pytest_counts(done) == {
        "failed": 1, "passed": 20, "skipped": 3, "deselected": 2215, "warnings": 2
    }
    assert gc.parse_pytest_counts("1 error in 0.10s") == {"errors": 1}
    cut_short = "..s.F....                                  [  3%]\n..E\n"  # killed mid-run
    assert gc.parse_pytest_counts(cut_short) == {
        "passed": 9, "failed": 1, "errors": 1, "skipped": 1
    }


def test_a_failing_section_is_recorded_and_the_next_one_runs(tmp_path: Path) -> None:
    report = gc.Report(tmp_path / "t.md", "# test")

    def broken() -> tuple[str, str]:
        raise ValueError("no such | thing")

    def skipped() -> tuple[str, str]:
        raise gc.Skip("not here")

    report.run("c", broken)
    assert (tmp_path / "t.md").is_file()  # written after each section
    report.run("a", lambda: ("PASS", "fine"))
    report.run("f3", skipped)
    rows = table_rows((tmp_path / "t.md").read_text(encoding="utf-8"))
    assert list(rows) == ["a", "c", "f3"]  # in section order
    assert rows["c"][1] == "FAIL" and rows["c"][3].startswith("ValueError: no such \\| thing")
    assert rows["f3"][1:2] == ["SKIP"] and rows["f3"][3] == "not here"
    assert report.failed()


@pytest.mark.skipif(HAS_GPU, reason="CuPy and a GPU are here: the gpu tests would run")
def test_gpu_tests_that_all_skip_fail_the_section(tmp_path: Path) -> None:
    """The pytest section's command, log and counts, on this CPU: the gpu tests of one file
    all skip, which is no pass; a run past its time is cut short and says so."""
    gpu = gc.Device(dry=False)
    log = tmp_path / "gpu_tests.log"
    result, figures = gc.section_gpu_tests(gpu, 120, log, ["tests/test_backend.py"])
    assert result == "FAIL" and figures.startswith("no gpu test passed"), figures
    counts = gc.parse_pytest_counts(log.read_text(encoding="utf-8"))
    assert counts["skipped"] >= 1 and counts["deselected"] >= 1 and "passed" not in counts
    result, figures = gc.section_gpu_tests(gpu, 0.2, log, ["tests/test_backend.py"])
    assert result == "FAIL" and figures.startswith("timed out after 0 s"), figures
