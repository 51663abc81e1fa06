"""The course's exercise checkers: each passes its reference answer, says "wrong" to every
known-wrong answer, "not done yet" to a learner's stub, and always prints exactly one line."""

from __future__ import annotations

import math

import pytest

from nanotf.course import EXERCISES, Exercise
from nanotf.course.notebooks import BEGIN, END, STUB, strip_solutions

NAMES = sorted(EXERCISES)


def stub(*args, **kwargs):
    raise NotImplementedError("exercise: write this part")


def crashes(*args, **kwargs):
    raise IndexError("index 7 is out of bounds\nfor axis 0")


def test_there_are_exercises() -> None:
    assert NAMES, "no exercise is registered"


@pytest.mark.parametrize("name", NAMES)
def test_reference_answer_passes(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    ex = EXERCISES[name]
    verdict = ex.grade(ex.reference)
    assert verdict.status == "pass", verdict.line
    assert verdict.error <= ex.tol
    ex.check(ex.reference)
    out = capsys.readouterr().out
    assert out == verdict.line + "\n" and out.startswith("✓")


@pytest.mark.parametrize("name", NAMES)
def test_every_known_mistake_is_wrong(name: str) -> None:
    ex = EXERCISES[name]
    assert ex.mistakes, f"{name} registers no known-wrong answer to test its checker with"
    for what, answer in ex.mistakes.items():
        verdict = ex.grade(answer)
        assert verdict.status == "wrong", f"{name}: the mistake {what!r} was graded {verdict.line}"
        assert verdict.line.startswith("✗") and "Hint:" in verdict.line


@pytest.mark.parametrize("name", NAMES)
def test_stub_is_not_done_and_failures_are_one_line(name: str) -> None:
    ex: Exercise = EXERCISES[name]
    verdict = ex.grade(stub)
    assert verdict.status == "not done" and "not done yet" in verdict.line
    assert math.isnan(verdict.error)
    for answer in (crashes, 42, lambda *a, **k: "no array"):
        verdict = ex.grade(answer)
        assert verdict.status == "wrong", verdict.line
        assert "\n" not in verdict.line and "Traceback" not in verdict.line


def test_strip_solutions_leaves_a_stub_at_the_same_indent() -> None:
    text = f"def f(x):\n    '''doc'''\n    {BEGIN}\n    return x + 1\n    {END}\n\nprint(1)\n"
    got = strip_solutions(text)
    assert got == f"def f(x):\n    '''doc'''\n    {STUB}\n\nprint(1)\n"
    assert strip_solutions("a = 1\n") == "a = 1\n"


@pytest.mark.parametrize(
    "text", [f"{BEGIN}\nx\n", f"{END}\n", f"{BEGIN}\n{BEGIN}\n{END}\n{END}\n"],
    ids=["unclosed", "end-without-begin", "nested"],
)
def test_unpaired_markers_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="SOLUTION"):
        strip_solutions(text)


def test_notebooks_extra_installs_jupyter_without_torch() -> None:
    import configparser
    from pathlib import Path

    cfg = configparser.ConfigParser()
    cfg.read(Path(__file__).resolve().parents[1] / "setup.cfg")
    extra = cfg["options.extras_require"]["notebooks"]
    names = {line.split(">")[0].split("=")[0].strip() for line in extra.split("\n") if line}
    assert {"jupyterlab", "jupytext", "ipykernel", "nbclient", "matplotlib"} <= names
    assert "torch" not in names
