"""Output paths, checked before any work starts (:func:`check_output_dir`,
:func:`check_output_file`), and files written whole (:func:`write_text_atomic`, strict JSON)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import CLIError

__all__ = [
    "check_output_dir",
    "check_output_file",
    "image_suffixes",
    "strict_json",
    "write_text_atomic",
]


def nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists (``.`` or ``/`` at the latest)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def probe_directory(directory: Path, flag: str, given: Path) -> None:
    """Make ``directory`` (with its missing parents) and a file in it, then remove all that:
    the honest test that the place is writable. (Permission bits say nothing when running as
    root, nor about read-only file systems or ``/proc``.)"""
    made: list[Path] = []
    try:
        missing = []
        p = directory
        while not p.exists():
            missing.append(p)
            p = p.parent
        for d in reversed(missing):
            try:
                d.mkdir()
            except OSError as err:
                raise CLIError(
                    f"{flag} {given}: cannot create the directory {d} ({err.strerror or err})"
                ) from err
            made.append(d)
        try:
            with tempfile.TemporaryFile(dir=directory):
                pass
        except OSError as err:
            raise CLIError(
                f"{flag} {given}: cannot write files in {directory} ({err.strerror or err})"
            ) from err
    finally:
        for d in reversed(made):
            try:
                d.rmdir()
            except OSError:
                pass


def check_output_dir(path: Path, flag: str, files: Sequence[str] = ()) -> None:
    """Refuse, with a one-line :class:`CLIError`, an output directory that cannot be written:
    a file where the directory should be, a file among its ancestors, one of the ``files`` to
    write there being a directory, or a place where nothing can be created. Leaves nothing
    behind."""
    try:
        if path.exists() and not path.is_dir():
            what = f" (to hold {', '.join(files)})" if files else ""
            raise CLIError(f"{flag} {path} is a file; expected a directory{what}")
        base = nearest_existing(path)
        if not base.is_dir():
            raise CLIError(f"{flag} {path}: {base} is a file, so no directory can be made under it")
        for name in files:
            if (path / name).is_dir():
                raise CLIError(
                    f"{flag} {path}: {path / name} is a directory; the file {name} is written there"
                )
    except OSError as err:
        raise CLIError(f"{flag} {path}: cannot look at it ({err.strerror or err})") from err
    probe_directory(path, flag, path)


def image_suffixes() -> list[str]:
    """The file name endings matplotlib can write (png, pdf, svg, jpg, ...)."""
    from matplotlib.backend_bases import FigureCanvasBase

    return sorted(FigureCanvasBase.get_supported_filetypes())


def check_output_file(path: Path, flag: str, suffixes: Sequence[str]) -> None:
    """Refuse, with a one-line :class:`CLIError`, an output file that cannot be written: a
    directory, a name without one of the ``suffixes`` (lower case, without the dot), a file
    among the ancestors of its directory, or a place where nothing can be created."""
    try:
        first = "png" if "png" in suffixes else suffixes[0]
        if path.is_dir():
            raise CLIError(
                f"{flag} {path} is a directory; expected a file name, such as "
                f"{path / ('attention.' + first)}"
            )
        if path.suffix.lower().lstrip(".") not in suffixes:
            others = ", ".join(f".{x}" for x in suffixes if x != first)
            raise CLIError(
                f"{flag} {path}: expected an image file name ending in .{first} (or {others}), "
                f"got {path.name!r}"
            )
        base = nearest_existing(path.parent)
        if not base.is_dir():
            raise CLIError(f"{flag} {path}: {base} is a file, so no directory can be made under it")
        if path.exists() and not os.access(path, os.W_OK):
            raise CLIError(f"{flag} {path}: the file exists and is not writable")
    except OSError as err:
        raise CLIError(f"{flag} {path}: cannot look at it ({err.strerror or err})") from err
    probe_directory(path.parent, flag, path)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path`` and move it over ``path``: an
    interrupt leaves the old file or the new one, never half of one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def strict_json(value: Any) -> str:
    """Strict JSON (``nan``/``inf`` written as ``null``, never as a bare ``NaN``)."""
    from ..checkpoint import json_safe

    return json.dumps(json_safe(value), allow_nan=False)
