"""The course's notebooks: build the ``.ipynb`` from the jupytext sources, check that they are up
to date, and write the learner's copies (solutions removed).

The source of truth is ``notebooks/NN_name.py`` (jupytext ``py:percent``). Beside it lies
``NN_name.ipynb``, executed, with its outputs, so GitHub and Colab show the figures before anything
runs. The header of each source declares what the tests hold it to::

    #   nanotf:
    #     budget_s: 60      # seconds it may take on the 2-core CPU
    #     figures: 2        # at least this many figures in its outputs

A solution sits between ``# BEGIN SOLUTION`` and ``# END SOLUTION`` lines inside the function the
learner writes; the learner's copy replaces it with ``raise NotImplementedError``.

Commands (``python -m nanotf.course ...``): ``build [NAME ...]`` executes the sources and writes
the ``.ipynb``; ``check`` lists the notebooks whose ``.ipynb`` is out of date (exit 1);
``learner OUT_DIR`` writes the learner's copies. They need the ``notebooks`` extra (jupytext,
nbclient, ipykernel).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "NOTEBOOK_DIR",
    "build",
    "count_figures",
    "declared",
    "execute",
    "learner_copies",
    "read_source",
    "sources",
    "stale",
    "strip_solutions",
]

#: ``notebooks/`` of the repository this package was installed from (editable installs)
NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
SOURCE_NAME = re.compile(r"^\d\d_[a-z0-9_]+\.py$")
BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"
STUB = 'raise NotImplementedError("exercise: write this part")'


def _jupytext() -> Any:
    try:
        import jupytext
    except ImportError as err:
        raise ImportError(
            "the course tools need jupytext and nbclient: pip install -e '.[notebooks]'"
        ) from err
    return jupytext


def sources(directory: Path | str = NOTEBOOK_DIR) -> list[Path]:
    """The notebook sources ``NN_name.py`` of ``directory``, in reading order."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"no notebooks directory at {directory}")
    return sorted(p for p in directory.iterdir() if SOURCE_NAME.match(p.name))


def strip_solutions(text: str) -> str:
    """The source with every solution block replaced by ``raise NotImplementedError``.

    Markers must pair up: a ``BEGIN`` without its ``END`` (or the reverse) is a ``ValueError``.
    """
    out: list[str] = []
    inside = False
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise ValueError(f"line {number}: {BEGIN!r} inside another solution")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out.append(f"{indent}{STUB}\n")
        elif stripped == END:
            if not inside:
                raise ValueError(f"line {number}: {END!r} without {BEGIN!r}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"a {BEGIN!r} block is never closed")
    return "".join(out)


def read_source(path: Path | str, learner: bool = False) -> Any:
    """The notebook of a source file (solutions removed if ``learner``), with stable cell ids."""
    jupytext = _jupytext()
    text = Path(path).read_text(encoding="utf-8")
    if learner:
        text = strip_solutions(text)
    nb = jupytext.reads(text, fmt="py:percent")
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"
    return nb


def declared(nb: Any) -> dict[str, int]:
    """``{"budget_s": ..., "figures": ...}`` from the notebook's ``nanotf`` header."""
    meta = nb.metadata.get("nanotf", {})
    missing = {"budget_s", "figures"} - set(meta)
    if missing:
        raise ValueError(f"the notebook header lacks nanotf: {sorted(missing)}")
    return {"budget_s": int(meta["budget_s"]), "figures": int(meta["figures"])}


@contextmanager
def _kernel_environment() -> Iterator[None]:
    """The environment the kernel starts in. It chooses matplotlib's inline backend itself: an
    inherited ``MPLBACKEND=Agg`` (as CI sets) would hide every figure, so it is removed. And the
    course runs the readable reference ops, the code it teaches (``NANOTF_FUSED=0``): the
    committed outputs are the same whether or not fused kernels (the ``fast`` extra) are
    installed."""
    saved = {name: os.environ.get(name) for name in ("MPLBACKEND", "NANOTF_FUSED")}
    os.environ.pop("MPLBACKEND", None)
    os.environ["NANOTF_FUSED"] = "0"
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def execute(nb: Any, cwd: Path | str, timeout: int = 600) -> float:
    """Run every cell of ``nb`` in a fresh Python kernel (outputs stored in ``nb``); returns the
    seconds it took. Raises ``nbclient``'s ``CellExecutionError`` on the first failing cell."""
    try:
        import nbclient
    except ImportError as err:
        message = "running notebooks needs nbclient: pip install -e '.[notebooks]'"
        raise ImportError(message) from err
    client = nbclient.NotebookClient(
        nb, timeout=timeout, kernel_name="python3", record_timing=False,
        resources={"metadata": {"path": str(cwd)}},
    )
    start = time.perf_counter()
    with _kernel_environment():
        client.execute()
    seconds = time.perf_counter() - start
    for cell in nb.cells:
        cell.get("metadata", {}).pop("execution", None)
        if cell.cell_type == "code":
            cell["outputs"] = _coalesce_streams(cell.get("outputs", []))
    return seconds


def _coalesce_streams(outputs: list[Any]) -> list[Any]:
    """One stream output where the kernel happened to send a print in several messages, so the
    same run always writes the same file."""
    merged: list[Any] = []
    for out in outputs:
        prev = merged[-1] if merged else None
        if (out.get("output_type") == "stream" and prev is not None
                and prev.get("output_type") == "stream" and prev["name"] == out["name"]):
            prev["text"] += out["text"]
        else:
            merged.append(out)
    return merged


def count_figures(nb: Any) -> int:
    """The number of figures (``image/png`` outputs) in an executed notebook."""
    return sum(
        "image/png" in out.get("data", {})
        for cell in nb.cells if cell.cell_type == "code"
        for out in cell.get("outputs", [])
    )


def _write_ipynb(nb: Any, path: Path) -> None:
    import nbformat

    nb.metadata.get("jupytext", {}).pop("text_representation", None)
    nbformat.write(nb, str(path))


def build(paths: Iterable[Path | str] | None = None) -> list[tuple[str, float, int]]:
    """Execute each source and write its ``.ipynb`` with outputs. Returns
    ``[(name, seconds, figures)]``. A notebook over its budget or short of its figures is an
    error (nothing is written for it)."""
    report = []
    for path in [Path(p) for p in (sources() if paths is None else paths)]:
        nb = read_source(path)
        want = declared(nb)
        seconds = execute(nb, path.parent)
        figures = count_figures(nb)
        if figures < want["figures"]:
            raise RuntimeError(f"{path.name}: {figures} figures, declared {want['figures']}")
        if seconds > want["budget_s"]:
            raise RuntimeError(f"{path.name}: ran {seconds:.0f} s, budget {want['budget_s']} s")
        _write_ipynb(nb, path.with_suffix(".ipynb"))
        report.append((path.stem, seconds, figures))
    return report


def _cells(nb: Any) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


def stale(paths: Iterable[Path | str] | None = None) -> list[str]:
    """Names of the notebooks whose ``.ipynb`` is missing, unexecuted or has other cells than its
    source."""
    import nbformat

    out = []
    for path in [Path(p) for p in (sources() if paths is None else paths)]:
        ipynb = path.with_suffix(".ipynb")
        if not ipynb.exists():
            out.append(f"{path.stem} (no .ipynb)")
            continue
        built = nbformat.read(str(ipynb), as_version=4)
        if _cells(built) != _cells(read_source(path)):
            out.append(f"{path.stem} (cells differ from the source)")
        elif any(c.cell_type == "code" and c.source.strip() and c.get("execution_count") is None
                 for c in built.cells):
            out.append(f"{path.stem} (not executed)")
    return out


def learner_copies(out_dir: Path | str, paths: Iterable[Path | str] | None = None) -> list[Path]:
    """Write each notebook with its solutions removed, as ``.ipynb`` (no outputs) and ``.py``,
    into ``out_dir``. Returns the ``.ipynb`` paths."""
    jupytext = _jupytext()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in [Path(p) for p in (sources() if paths is None else paths)]:
        nb = read_source(path, learner=True)
        (out_dir / path.name).write_text(jupytext.writes(nb, fmt="py:percent"), encoding="utf-8")
        target = out_dir / path.with_suffix(".ipynb").name
        _write_ipynb(nb, target)
        written.append(target)
    return written
