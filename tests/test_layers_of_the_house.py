"""Imports go one way, down DESIGN.md's layers, with no circle (imports inside functions too)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_imports_only_go_down_and_form_no_circle() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "check_layers.py")],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("ok:"), result.stdout


def test_the_check_catches_an_import_that_reaches_up(tmp_path: Path) -> None:
    """The checker is not a stub: an op module that imports nn is reported."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import check_layers
    finally:
        sys.path.pop(0)
    known = check_layers.modules()
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from nanotf.nn import Linear\n")
    ups = [
        target for lineno, target in check_layers.imports("nanotf.functional.bad", bad, known)
        if check_layers.layer(target) > check_layers.layer("nanotf.functional.bad")
    ]
    assert ups, "an import from the ops up into nn was not seen"
