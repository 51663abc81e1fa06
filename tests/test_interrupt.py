"""Ctrl-C anywhere in a training step (nanotf.train, nanotf.cli): a checkpoint only ever holds
completed steps, and resuming from it gives exactly the run that was never interrupted.

Every test delivers a real SIGINT to this process (``os.kill(os.getpid(), SIGINT)``) from a
hook at one point of a step, so Python's own handler raises ``KeyboardInterrupt`` there, as
Ctrl-C in a terminal does.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import nanotf.optim
import nanotf.train
from nanotf import backend as nanotf_backend
from nanotf import cli
from nanotf.checkpoint import load_checkpoint
from nanotf.train import Trainer, interrupts_deferred

from .test_cli import TINY_ARGS
from .test_train import params_of, tiny

STEPS, EVAL_EVERY = 8, 4
K = 5  # the step (0-based: the 6th) to interrupt; evaluations run after steps 4 and 8


def config() -> Any:
    return tiny(steps=STEPS, eval_every=EVAL_EVERY)  # dropout on: the generator matters


def sigint() -> None:
    """A real SIGINT to this process; Python raises KeyboardInterrupt at the next bytecode."""
    os.kill(os.getpid(), signal.SIGINT)


@pytest.fixture(autouse=True)
def python_sigint_handler() -> Iterator[None]:
    """Python's own SIGINT handler (KeyboardInterrupt) for the test, whatever ran before."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture(scope="module")
def straight() -> Trainer:
    """The uninterrupted run."""
    saved = dict(nanotf_backend._state)  # module scope: leave the generator as it was
    try:
        trainer = Trainer(config(), progress=False)
        trainer.train()
        return trainer
    finally:
        nanotf_backend._state.clear()
        nanotf_backend._state.update(saved)


def _once(call: Callable[..., Any], when: Callable[[], bool], before: bool = False) -> Any:
    """``call`` that sends one SIGINT, after (or ``before``) the first call where ``when()``."""
    fired = False

    def hooked(*args: Any, **kwargs: Any) -> Any:
        nonlocal fired
        fire = not fired and when()
        if fire:
            fired = True
            if before:
                sigint()
        out = call(*args, **kwargs)
        if fire and not before:
            sigint()
        return out

    return hooked


def _at_step(t: Trainer, k: int = K) -> Callable[[], bool]:
    return lambda: t.step == k and t.model.training


# where: (install the hook on a trainer, the step the trainer holds after the interrupt)
def _forward(t: Trainer, mp: pytest.MonkeyPatch) -> None:
    mp.setattr(t.model, "forward", _once(t.model.forward, _at_step(t)))


def _backward(t: Trainer, mp: pytest.MonkeyPatch) -> None:
    mp.setattr(t.model, "backward", _once(t.model.backward, _at_step(t)))


def _clipping(t: Trainer, mp: pytest.MonkeyPatch) -> None:
    mp.setattr(nanotf.train, "clip_grad_norm", _once(nanotf.train.clip_grad_norm, _at_step(t)))


def _optimizer_between_parameters(t: Trainer, mp: pytest.MonkeyPatch) -> None:
    # Optimizer.step updates one parameter per _update call (where the fused update of all of
    # them at once is left out, as here): interrupt after the 4th of 14
    mp.setattr(t.optimizer, "_update_all", lambda: False)
    update = t.optimizer._update
    calls = {"n": 0}

    def counted(i: int, p: Any) -> None:
        update(i, p)
        if t.step == K and i == 3 and not calls["n"]:
            calls["n"] += 1
            sigint()

    assert len(t.optimizer.params) > 4
    mp.setattr(t.optimizer, "_update", counted)


def _between_scheduler_and_optimizer(t: Trainer, mp: pytest.MonkeyPatch) -> None:
    mp.setattr(t.scheduler, "step", _once(t.scheduler.step, lambda: t.step == K))


def _after_optimizer(t: Trainer, mp: pytest.MonkeyPatch) -> None:
    mp.setattr(t.optimizer, "step", _once(t.optimizer.step, lambda: t.step == K))


def _evaluation(t: Trainer, mp: pytest.MonkeyPatch) -> None:
    # inside the evaluation after step 4, while greedy decoding runs
    mp.setattr(nanotf.train, "greedy_decode", _once(nanotf.train.greedy_decode, lambda: True, True))


POINTS = {
    "forward": (_forward, K),
    "backward": (_backward, K),
    "gradient clipping": (_clipping, K),
    "optimizer, between parameters": (_optimizer_between_parameters, K + 1),
    "between scheduler and optimizer": (_between_scheduler_and_optimizer, K + 1),
    "after the optimizer, before the step count": (_after_optimizer, K + 1),
    "evaluation": (_evaluation, EVAL_EVERY),
}


def assert_same_run(resumed: Trainer, straight: Trainer) -> None:
    a, b = resumed.history, straight.history
    assert a.loss == b.loss  # bitwise: Python floats compare exactly
    assert a.lr == b.lr and a.grad_norm == b.grad_norm and a.step == b.step
    assert [e["loss"] for e in a.evals] == [e["loss"] for e in b.evals]
    assert [e["step"] for e in a.evals] == [e["step"] for e in b.evals]
    want = params_of(straight)
    for name, p in params_of(resumed).items():
        np.testing.assert_array_equal(p, want[name], err_msg=name)
    sa, sb = resumed.optimizer.state_dict(), straight.optimizer.state_dict()
    for k in sb:
        np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)


@pytest.mark.parametrize("point", list(POINTS))
def test_interrupt_anywhere_in_a_step_resumes_exactly(
    point: str, straight: Trainer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install, held = POINTS[point]
    trainer = Trainer(config(), progress=False)
    install(trainer, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    # the trainer holds completed steps only: the interrupted one was dropped, or (inside
    # the update) finished first
    assert trainer.step == held == len(trainer.history.loss)
    assert trainer.history.loss == straight.history.loss[:held]
    path = trainer.save(tmp_path / "interrupted.safetensors")
    assert load_checkpoint(path)["step"] == held
    monkeypatch.undo()

    resumed = Trainer.from_checkpoint(path, progress=False)
    resumed.train()
    assert_same_run(resumed, straight)


def test_interrupts_deferred_delivers_the_signal_after_the_block() -> None:
    done = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts_deferred():
            sigint()
            done.append("the rest of the block ran")
    assert done == ["the rest of the block ran"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back
    with interrupts_deferred():  # no signal: nothing happens
        pass


def test_interrupt_during_the_save_leaves_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The write is atomic (temporary file, fsync, rename): Ctrl-C before or after the bytes
    are written leaves the old file, whole, and no temporary file."""
    import safetensors.numpy

    trainer = Trainer(tiny(steps=4, eval_every=0), progress=False)
    trainer.train(until=2)
    path = trainer.save(tmp_path / "c.safetensors")
    before = path.read_bytes()
    trainer.train()
    real = safetensors.numpy.save_file
    for before_writing in (True, False):
        monkeypatch.setattr(
            "safetensors.numpy.save_file", _once(real, lambda: True, before=before_writing)
        )
        with pytest.raises(KeyboardInterrupt):
            trainer.save(path)
        assert path.read_bytes() == before
        assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]
    assert load_checkpoint(path)["step"] == 2


# -- the command line --------------------------------------------------------------------------


def _cli_history(out: Path) -> dict[str, Any]:
    return json.loads((out / "history.json").read_text())


@pytest.fixture(scope="module")
def cli_straight(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    saved = dict(nanotf_backend._state)
    try:
        out = tmp_path_factory.mktemp("straight")
        assert cli.main(["train", *TINY_ARGS, "--dropout", "0.1", "--out", str(out)]) == 0
        return _cli_history(out)
    finally:
        nanotf_backend._state.clear()
        nanotf_backend._state.update(saved)


def _interrupt_adam_at(monkeypatch: pytest.MonkeyPatch, update_number: int) -> None:
    """SIGINT inside Adam.step, between two parameters, of update ``update_number``."""
    real = nanotf.optim.Adam._update
    fired = []

    def hooked(self: Any, i: int, p: Any) -> None:
        real(self, i, p)
        if self.step_count == update_number and i == 2 and not fired:
            fired.append(True)
            sigint()

    monkeypatch.setattr(nanotf.optim.Adam, "_update", hooked)
    monkeypatch.setattr(nanotf.optim.Adam, "_update_all", lambda self: False)  # one by one


def test_cli_interrupt_saves_the_completed_step_and_resumes_exactly(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    cli_straight: dict[str, Any],
) -> None:
    out = tmp_path / "run"
    _interrupt_adam_at(monkeypatch, 8)
    assert cli.main(["train", *TINY_ARGS, "--dropout", "0.1", "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert "interrupted at step 8; saved" in err and "Traceback" not in err
    assert load_checkpoint(out)["step"] == 8  # the update that was interrupted finished
    monkeypatch.undo()
    assert cli.main(["train", "--resume", str(out), "--no-progress", "--out", str(out)]) == 0
    resumed = _cli_history(out)
    assert resumed["loss"] == cli_straight["loss"]
    assert resumed["evals"] == cli_straight["evals"]


def test_cli_second_interrupt_while_saving_keeps_the_old_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import safetensors.numpy

    out = tmp_path / "run"
    argv = ["train", *TINY_ARGS, "--out", str(out)]
    assert cli.main([*argv, "--steps", "4"]) == 0  # a checkpoint to keep
    before = (out / "checkpoint.safetensors").read_bytes()
    capsys.readouterr()
    _interrupt_adam_at(monkeypatch, 6)
    monkeypatch.setattr(
        "safetensors.numpy.save_file", _once(safetensors.numpy.save_file, lambda: True)
    )
    assert cli.main(argv) == 130
    err = capsys.readouterr().err
    assert "interrupted again while saving: nothing saved" in err and "Traceback" not in err
    assert (out / "checkpoint.safetensors").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint.safetensors",
        "history.json",
        "loss.png",
    ]
