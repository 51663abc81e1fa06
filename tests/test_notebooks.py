"""The course's notebooks: each committed ``.ipynb`` is up to date with its jupytext source, runs
clean in a fresh kernel (matplotlib left to choose its inline backend, as in Jupyter) within its
time budget and draws at least the figures it declares; each learner's copy (solutions removed)
runs to the end without torch, with every check saying "not done yet".

In CI (``CI`` set) a missing jupytext or nbclient is a failure, not a skip.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from nanotf.course import notebooks as course

if os.environ.get("CI"):
    import jupytext  # noqa: F401
    import nbclient  # noqa: F401
    import nbformat
else:
    pytest.importorskip("jupytext")
    pytest.importorskip("nbclient")
    import nbformat

SOURCES = course.sources()
IDS = [p.stem for p in SOURCES]


def test_there_are_twelve_notebooks_in_reading_order() -> None:
    numbers = [int(p.name[:2]) for p in SOURCES]
    assert numbers == list(range(1, len(numbers) + 1)), numbers
    assert len(numbers) >= 12, f"the course has {len(numbers)} notebooks, not 12"


def test_the_course_fits_its_time_budget() -> None:
    budgets = {p.stem: course.declared(course.read_source(p))["budget_s"] for p in SOURCES}
    assert all(b <= 120 for b in budgets.values()), budgets  # at most 2 minutes each
    assert sum(budgets.values()) <= 480, budgets  # at most 8 minutes together


def test_every_ipynb_is_up_to_date_with_its_source() -> None:
    assert not course.stale(SOURCES), (
        f"out of date: {course.stale(SOURCES)}; rebuild with python -m nanotf.course build"
    )


@pytest.mark.parametrize("path", SOURCES, ids=IDS)
def test_committed_notebook_runs_within_budget_and_draws(path: Path, tmp_path: Path) -> None:
    nb = nbformat.read(str(path.with_suffix(".ipynb")), as_version=4)
    want = course.declared(nb)
    assert want["budget_s"] <= 120, "a notebook may take at most 2 minutes"
    assert course.count_figures(nb) >= want["figures"], "the committed outputs lack figures"
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
    seconds = course.execute(nb, path.parent)  # raises on any failing cell
    assert course.count_figures(nb) >= want["figures"]
    assert seconds <= want["budget_s"], f"{path.stem} ran {seconds:.0f} s > {want['budget_s']} s"


def block_torch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Kernels started from now on cannot import torch (nor transformers), as for a learner who
    installed only the ``notebooks`` extra: a package of that name that refuses to import comes
    first on their path."""
    for name in ("torch", "transformers"):
        package = tmp_path / "blocked" / name
        package.mkdir(parents=True)
        (package / "__init__.py").write_text(f"raise ImportError('{name} is blocked here')\n")
    path = os.environ.get("PYTHONPATH")
    blocked = str(tmp_path / "blocked")
    monkeypatch.setenv("PYTHONPATH", blocked if not path else blocked + os.pathsep + path)


@pytest.mark.parametrize("path", SOURCES, ids=IDS)
def test_learner_copy_runs_without_torch_and_every_check_is_not_done(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    block_torch(tmp_path, monkeypatch)
    text = path.read_text(encoding="utf-8")
    n_solutions = text.count(course.BEGIN)
    copy = course.learner_copies(tmp_path / "learner", [path])[0]
    learner = copy.with_suffix(".py").read_text(encoding="utf-8")
    assert course.BEGIN not in learner and course.END not in learner
    nb = nbformat.read(str(copy), as_version=4)
    course.execute(nb, path.parent)
    printed = "".join(
        out.get("text", "") for c in nb.cells if c.cell_type == "code" for out in c.outputs
        if out.get("output_type") == "stream"
    )
    checks = len(re.findall(r"EXERCISES\[", learner))
    assert printed.count("not done yet") == checks, printed
    assert "✓" not in printed, "a check passed on the learner's copy, whose solutions are removed"
    if "import torch" in text:  # its comparison with PyTorch says it was skipped
        assert "PyTorch is not installed: comparison skipped" in printed
    if n_solutions:
        assert checks >= 1
