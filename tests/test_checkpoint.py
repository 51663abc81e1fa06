"""Checkpoints (nanotf.checkpoint and Trainer.save/load): exact resume, atomic writes, and
clear errors that change nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

import nanotf.checkpoint as ckpt_mod
from nanotf.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from nanotf.train import Trainer, load_model

from .test_train import params_of, tiny


def test_resume_gives_exactly_the_uninterrupted_run(tmp_path: Path) -> None:
    """20 steps straight == 10 steps, save, load into a fresh Trainer, 10 more steps:
    bitwise-equal losses, parameters and optimizer state (dropout on: the generator's state
    is restored too)."""
    straight = Trainer(tiny(steps=20, eval_every=5), progress=False)
    straight.train()

    first = Trainer(tiny(steps=20, eval_every=5), progress=False)
    first.train(until=10)
    path = first.save(tmp_path / "run" / "ckpt.safetensors")
    del first

    resumed = Trainer(tiny(steps=20, eval_every=5), progress=False)
    resumed.load(path)
    assert resumed.step == 10 and len(resumed.history.loss) == 10
    resumed.train()

    assert resumed.history.loss == straight.history.loss
    assert resumed.history.lr == straight.history.lr
    assert [e["loss"] for e in resumed.history.evals] == [e["loss"] for e in straight.history.evals]
    want = params_of(straight)
    for name, p in params_of(resumed).items():
        np.testing.assert_array_equal(p, want[name], err_msg=name)
    a, b = straight.optimizer.state_dict(), resumed.optimizer.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_from_checkpoint_continues_longer(tmp_path: Path) -> None:
    t = Trainer(tiny(steps=6, eval_every=0), progress=False)
    t.train()
    path = t.save(tmp_path / "c.safetensors")
    more = Trainer.from_checkpoint(path, progress=False, steps=9)
    assert more.step == 6 and more.config.steps == 9
    more.train()
    assert more.step == 9 and len(more.history.loss) == 9


def test_contents_round_trip(tmp_path: Path) -> None:
    t = Trainer(tiny(steps=4, eval_every=2), progress=False)
    t.train()
    path = t.save(tmp_path / "c.safetensors")
    c = load_checkpoint(path)
    assert c["path"] == path and c["step"] == 4
    assert c["config"] == t.config.to_dict()
    assert c["vocabs"]["src"]["symbols"] == list("abcdefghij")
    assert c["history"]["loss"] == t.history.loss
    assert c["rng_state"]["bit_generator"] == "PCG64"
    assert c["optimizer_class"] == "Adam" and c["optimizer"]["step"] == 4
    assert c["scheduler"] == {"step": 4}
    for name, p in t.model.state_dict().items():
        np.testing.assert_array_equal(c["model"][name], p)
    # a run directory works in place of the file when it holds checkpoint.safetensors
    t.save(tmp_path / "run" / "checkpoint.safetensors")
    assert load_checkpoint(tmp_path / "run")["step"] == 4


def test_load_model_for_translation(tmp_path: Path) -> None:
    t = Trainer(tiny(steps=3, eval_every=0), progress=False)
    t.train()
    path = t.save(tmp_path / "c.safetensors")
    model, src_vocab, tgt_vocab, config = load_model(path)
    assert not model.training and config == t.config
    assert src_vocab == t.task.src_vocab and tgt_vocab == t.task.tgt_vocab
    for name, p in t.model.state_dict().items():
        np.testing.assert_array_equal(model.state_dict()[name], p)
    assert t.translate(["abcj", "ee"]) == t.translate(["abcj", "ee"])


def test_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    t = Trainer(tiny(steps=2, eval_every=0), progress=False)
    path = t.save(tmp_path / "c.safetensors")
    before = path.read_bytes()
    t.train()

    def broken_save_file(tensors: dict, filename: str, metadata: dict) -> None:
        Path(filename).write_bytes(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.numpy.save_file", broken_save_file)
    with pytest.raises(OSError, match="disk full"):
        t.save(path)
    assert path.read_bytes() == before  # the old checkpoint is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]  # no temporary left
    monkeypatch.undo()
    t.save(path)  # overwriting works
    assert load_checkpoint(path)["step"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]


def _assert_unchanged(trainer: Trainer, params: dict[str, np.ndarray], step: int) -> None:
    assert trainer.step == step
    for name, p in params_of(trainer).items():
        np.testing.assert_array_equal(p, params[name], err_msg=name)


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Trainer, Path]:
    t = Trainer(tiny(steps=3, eval_every=0), progress=False)
    t.train()
    return t, t.save(tmp_path / "good.safetensors")


def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"nothere\.safetensors does not exist"):
        load_checkpoint(tmp_path / "nothere.safetensors")
    with pytest.raises(CheckpointError, match="is a directory without a checkpoint"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_corrupt_checkpoint_is_refused_and_changes_nothing(
    saved: tuple[Trainer, Path], damage: str
) -> None:
    trainer, good = saved
    data = good.read_bytes()
    bad = good.with_name(f"{damage}.safetensors")
    if damage == "truncated":
        bad.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        bad.write_bytes(b"\x00\xffnot a checkpoint at all" * 10)
    else:
        bad.write_bytes(b"")
    target = Trainer(tiny(steps=3, eval_every=0, seed=7), progress=False)
    before = params_of(target)
    with pytest.raises(CheckpointError) as err:
        target.load(bad)
    msg = str(err.value)
    assert str(bad) in msg and "truncated or corrupt" in msg
    _assert_unchanged(target, before, 0)
    assert good.read_bytes() == data


def test_not_a_nanotf_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "other.safetensors"
    save_file({"w": np.zeros(3, dtype=np.float32)}, str(path))
    with pytest.raises(CheckpointError, match="not a nanotf checkpoint"):
        load_checkpoint(path)


def test_mismatched_model_size_is_refused_and_changes_nothing(
    saved: tuple[Trainer, Path],
) -> None:
    _, good = saved
    data = good.read_bytes()
    other = Trainer(tiny(steps=3, eval_every=0, d_model=8), progress=False)
    before = params_of(other)
    with pytest.raises(CheckpointError) as err:
        other.load(good)
    msg = str(err.value)
    assert str(good) in msg and "d_model=16 (this run: 8)" in msg
    _assert_unchanged(other, before, 0)
    assert good.read_bytes() == data
    with pytest.raises(CheckpointError, match="d_model"):
        Trainer(tiny(steps=3, eval_every=0, n_layers=2), progress=False).load(good)


def test_mismatched_parameters_without_config_are_named(
    saved: tuple[Trainer, Path], tmp_path: Path
) -> None:
    """A checkpoint whose config claims the right size but whose arrays do not fit."""
    trainer, _ = saved
    state = {k: np.array(v) for k, v in trainer.model.state_dict().items()}
    state["out_proj.bias"] = np.zeros(3, dtype=np.float32)
    path = save_checkpoint(
        tmp_path / "odd.safetensors",
        state,
        optimizer=trainer.optimizer,
        step=3,
        config=trainer.config.to_dict(),
    )
    target = Trainer(tiny(steps=3, eval_every=0, seed=2), progress=False)
    before = params_of(target)
    want = r"out_proj\.bias has shape \(3,\), the model \(14,\)"
    with pytest.raises(CheckpointError, match=want):
        target.load(path)
    _assert_unchanged(target, before, 0)
    with pytest.raises(CheckpointError, match="odd.safetensors"):
        load_model(path)


def test_failure_half_way_rolls_back(saved: tuple[Trainer, Path], tmp_path: Path) -> None:
    """Model arrays fit but the optimizer state does not: nothing may stay half-loaded."""
    trainer, _ = saved
    opt = trainer.optimizer.state_dict()
    opt["exp_avg.0"] = np.zeros((2, 2), dtype=np.float32)
    other = Trainer(tiny(steps=3, eval_every=0, seed=9), progress=False)
    path = save_checkpoint(
        tmp_path / "half.safetensors",
        trainer.model,
        optimizer=opt,
        step=3,
        config=trainer.config.to_dict(),
    )
    before = params_of(other)
    opt_before = other.optimizer.state_dict()
    with pytest.raises(CheckpointError, match="half.safetensors could not be loaded"):
        other.load(path)
    _assert_unchanged(other, before, 0)
    for k, v in other.optimizer.state_dict().items():
        np.testing.assert_array_equal(v, opt_before[k])


def test_metadata_is_json(saved: tuple[Trainer, Path]) -> None:
    from safetensors import safe_open

    _, path = saved
    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata()
        keys = list(f.keys())
    assert meta["format"] == ckpt_mod.FORMAT
    assert json.loads(meta["config"])["task"] == "reverse"
    assert any(k.startswith("model.") for k in keys)
    assert any(k.startswith("optimizer.exp_avg.") for k in keys)


def _rewrite(src: Path, dst: Path, **changes: str) -> Path:
    """A copy of checkpoint ``src`` with metadata entries replaced (an edit by hand)."""
    from safetensors import safe_open

    with safe_open(str(src), framework="numpy") as f:
        meta = {**(f.metadata() or {}), **changes}
        arrays = {k: f.get_tensor(k) for k in f.keys()}
    save_file(arrays, str(dst), metadata=meta)
    return dst


@pytest.mark.parametrize(
    ("entry", "value", "match"),
    [
        ("config", "[1, 2]", "metadata field 'config' must be a JSON object .*got list"),
        ("history", '"long"', "metadata field 'history' must be a JSON object .*got str"),
        ("optimizer", "[1]", "metadata field 'optimizer' must be a JSON object"),
        ("optimizer", '{"class": "Adam", "scalars": 3}', "'optimizer' needs 'scalars'"),
        ("optimizer", '{"class": 7, "scalars": {}}', "'optimizer' needs a 'class'"),
        ("step", "-3", "metadata field 'step' must be >= 0, got -3"),
    ],
)
def test_metadata_of_the_wrong_shape_is_named(
    saved: tuple[Trainer, Path], tmp_path: Path, entry: str, value: str, match: str
) -> None:
    _, good = saved
    bad = _rewrite(good, tmp_path / "bad.safetensors", **{entry: value})
    with pytest.raises(CheckpointError, match=match) as err:
        load_checkpoint(bad)
    assert str(bad) in str(err.value)


def test_edited_config_is_refused_by_resume_and_translate_alike(
    saved: tuple[Trainer, Path], tmp_path: Path
) -> None:
    trainer, good = saved
    config = trainer.config.to_dict()
    for change, match in [
        ({"betas": 5}, "unusable config: betas must be a pair"),
        ({"task": ["reverse"]}, "unusable config: task must be a string"),
        ({"d_model": "16"}, "unusable config: d_model must be an integer"),
    ]:
        bad = _rewrite(good, tmp_path / "bad.safetensors", config=json.dumps({**config, **change}))
        with pytest.raises(CheckpointError, match=match):
            Trainer.from_checkpoint(bad, progress=False)
        with pytest.raises(CheckpointError, match=match):
            load_model(bad)
    target = Trainer(tiny(steps=3, eval_every=0, seed=4), progress=False)
    before = params_of(target)
    for changes, match in [
        ({"step": "9"}, "says step 9, but its history records 3 steps"),
        ({"extra": json.dumps({"model": "BertModel"})}, "holds a 'BertModel' model"),
    ]:
        bad = _rewrite(good, tmp_path / "bad.safetensors", **changes)
        with pytest.raises(CheckpointError, match=match):
            target.load(bad)
        _assert_unchanged(target, before, 0)


def test_metadata_is_strict_json_even_with_non_finite_numbers(tmp_path: Path) -> None:
    from nanotf.checkpoint import json_safe

    assert json_safe({"a": [1.0, float("nan"), (float("inf"), 2)], "b": "x"}) == {
        "a": [1.0, None, [None, 2]],
        "b": "x",
    }
    t = Trainer(tiny(steps=2, eval_every=0, clip_norm=None), progress=False)
    t.train()
    path = save_checkpoint(
        tmp_path / "c.safetensors", t.model, history={"loss": [float("nan")]}, step=2
    )
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        text = f.metadata()["history"]
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c}")) == {"loss": [None]}
