"""The training loop (nanotf.train): determinism, what a step computes, evaluation, progress."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import nanotf
from nanotf.data import PAD_ID
from nanotf.functional import cross_entropy_forward
from nanotf.train import (
    History,
    TrainConfig,
    Trainer,
    TrainingDiverged,
    lr_schedule,
    smoothed_loss_floor,
    train,
)


def tiny(**overrides: Any) -> TrainConfig:
    """A model and data small enough for a step to take milliseconds (dropout on, so the
    random generator matters)."""
    base: dict[str, Any] = dict(
        steps=20,
        batch_size=8,
        d_model=16,
        n_heads=2,
        n_layers=1,
        d_ff=32,
        dropout=0.1,
        n_train=64,
        n_heldout=16,
        eval_every=10,
        eval_batch_size=16,
        warmup=5,
        lr=3e-3,
    )
    base.update(overrides)
    return TrainConfig(**base)


def params_of(trainer: Trainer) -> dict[str, np.ndarray]:
    return {k: np.array(v, copy=True) for k, v in trainer.model.state_dict().items()}


def test_same_seed_gives_bitwise_identical_losses() -> None:
    a = Trainer(tiny(), progress=False)
    ha = a.train()
    b = Trainer(tiny(), progress=False)
    hb = b.train()
    assert len(ha.loss) == 20
    assert ha.loss == hb.loss  # bitwise: Python floats compare exactly
    assert ha.grad_norm == hb.grad_norm and ha.lr == hb.lr
    for name, p in params_of(a).items():
        np.testing.assert_array_equal(p, params_of(b)[name], err_msg=name)
    assert [e["loss"] for e in ha.evals] == [e["loss"] for e in hb.evals]


def test_another_seed_gives_other_losses() -> None:
    a = Trainer(tiny(steps=3, eval_every=0), progress=False).train()
    b = Trainer(tiny(steps=3, eval_every=0, seed=1), progress=False).train()
    assert a.loss != b.loss


def test_step_loss_is_the_smoothed_cross_entropy_without_padding() -> None:
    """The logged loss is the label-smoothed cross-entropy over the non-pad targets of the
    step's batch, with the parameters before the update."""
    trainer = Trainer(tiny(dropout=0.0, label_smoothing=0.1), progress=False)
    batch = trainer.batch_at(0)
    assert (batch.tgt_out == PAD_ID).any(), "the batch should have padding"
    logits = trainer.model.forward(batch.src, batch.tgt_in, batch.src_mask, batch.tgt_in_mask)
    want, _ = cross_entropy_forward(logits, batch.tgt_out, ignore_index=PAD_ID, label_smoothing=0.1)
    assert trainer.train_step() == float(want)
    assert trainer.history.tokens == [batch.n_tokens]
    # padding really is ignored: a manual mean over the real positions gives the same
    logp = logits - logits.max(-1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
    real = batch.tgt_out_mask
    nll = -np.take_along_axis(logp, batch.tgt_out[..., None], -1)[..., 0]
    per = 0.9 * nll - 0.1 * logp.mean(-1)
    assert float(want) == pytest.approx(per[real].mean(), rel=1e-5)


def test_unpadded_training_is_the_same_run_without_dropout() -> None:
    """``unpadded=True`` (forward_unpadded) gives the padded run's losses and parameters to the
    round-off of GEMMs over fewer rows: normwise relative 1e-5 in float32, over 20 steps. The
    attention key biases are the exception: their gradient is zero by design (a softmax does
    not change when a row's scores all shift), so Adam turns each run's round-off into steps of
    up to ``lr``; they are held to that floor, 20 steps of ``lr``."""
    cfg = tiny(dropout=0.0)
    a = Trainer(cfg, progress=False)
    b = Trainer(tiny(dropout=0.0, unpadded=True), progress=False)
    assert (a.batch_at(0).tgt_out == PAD_ID).any(), "the batches should have padding"
    ha, hb = a.train(), b.train()
    assert np.abs(np.subtract(hb.loss, ha.loss)).max() <= 1e-5 * max(ha.loss)
    want = params_of(a)
    for name, p in params_of(b).items():
        floor = cfg.steps * cfg.lr if name.endswith("k_proj.bias") else 0.0
        err = np.abs(p - want[name]).max()
        assert err <= max(1e-5 * np.abs(want[name]).max(), floor), f"{name}: {err:.3g}"


def test_unpadded_training_with_dropout_repeats_itself() -> None:
    """Its own masks (drawn on the real tokens): bit for bit the same run again, not the padded
    run's losses."""
    ha = Trainer(tiny(unpadded=True), progress=False).train()
    hb = Trainer(tiny(unpadded=True), progress=False).train()
    assert ha.loss == hb.loss
    assert ha.loss != Trainer(tiny(), progress=False).train().loss


def test_training_lowers_the_loss_and_clips() -> None:
    trainer = Trainer(tiny(steps=60, eval_every=0, dropout=0.0, clip_norm=0.5), progress=False)
    h = trainer.train()
    assert np.mean(h.loss[-10:]) < np.mean(h.loss[:10]) - 0.3
    assert all(math.isfinite(g) and g > 0 for g in h.grad_norm)
    assert len(h.evals) == 1 and h.evals[0]["step"] == 60  # the final evaluation
    assert h.seconds == sorted(h.seconds)


def test_batches_cover_the_training_set_each_epoch() -> None:
    trainer = Trainer(tiny(n_train=40, batch_size=8), progress=False)
    assert trainer.batches_per_epoch == 5
    n_src = {len(trainer.batch_at(s)) for s in range(10)}
    assert n_src == {8}
    order0 = [trainer.batch_at(s).src.tobytes() for s in range(5)]
    order1 = [trainer.batch_at(s).src.tobytes() for s in range(5, 10)]
    assert order0 != order1  # a new order each epoch
    again = [trainer.batch_at(s).src.tobytes() for s in range(5)]
    assert order0 == again  # a pure function of the step


def test_schedules() -> None:
    cfg = tiny(steps=100, warmup=10, lr=1e-3, schedule="cosine")
    f = lr_schedule(cfg)
    assert f(5) == pytest.approx(5e-4) and f(10) == pytest.approx(1e-3)
    assert f(100) == pytest.approx(0.0, abs=1e-12)
    g = lr_schedule(tiny(steps=100, warmup=10, lr=1e-3, schedule="noam"))
    assert g(10) == pytest.approx(1e-3) and g(40) == pytest.approx(5e-4)
    h = lr_schedule(tiny(steps=100, warmup=10, lr=1e-3, schedule="constant"))
    assert h(1) == pytest.approx(1e-4) and h(50) == 1e-3
    short = lr_schedule(tiny(steps=5, warmup=100))  # warm-up longer than the run: cut
    assert all(math.isfinite(short(t)) for t in range(1, 6))


def test_evaluate_reports_loss_accuracy_and_exact_match() -> None:
    trainer = Trainer(tiny(), progress=False)
    r = trainer.evaluate()
    assert set(r) == {"loss", "token_accuracy", "exact_match", "n", "examples"}
    assert r["n"] == 16 and len(r["examples"]) == 16
    assert 0.0 <= r["exact_match"] <= r["token_accuracy"] + 1.0 and r["loss"] > 0
    exact = np.mean([got == tgt for _, tgt, got in r["examples"]])
    assert r["exact_match"] == exact
    assert trainer.model.training  # mode restored
    # the model's own outputs are an exact match with themselves
    pairs = [(src, got) for src, _, got in r["examples"] if got]
    if pairs:
        assert trainer.evaluate(pairs)["exact_match"] == 1.0
    beam = trainer.evaluate(beam_width=2)
    assert beam["n"] == 16


def test_evaluation_does_not_change_training() -> None:
    """Evaluating draws no random numbers: the losses do not depend on eval_every."""
    a = Trainer(tiny(eval_every=0), progress=False).train()
    b = Trainer(tiny(eval_every=3), progress=False).train()
    assert a.loss == b.loss
    assert [e["step"] for e in b.evals] == [3, 6, 9, 12, 15, 18, 20]


def test_progress_bar_shows_loss_speed_and_lr(capsys: pytest.CaptureFixture[str]) -> None:
    Trainer(tiny(steps=3, eval_every=0), progress=True).train()
    err = capsys.readouterr().err
    assert "loss=" in err and "tok_s=" in err and "lr=" in err
    Trainer(tiny(steps=3, eval_every=0), progress=False).train()
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_log_receives_evaluations_and_early_stop() -> None:
    lines: list[str] = []
    trainer = Trainer(tiny(steps=20, eval_every=5, stop_at_exact_match=0.0), log=lines.append)
    trainer.train()
    assert trainer.step == 5  # stopped at the first evaluation
    assert lines[0].startswith("step 5: held-out loss")
    assert "stopping" in lines[-1]


def test_train_until_and_train_function() -> None:
    trainer = Trainer(tiny(), progress=False)
    trainer.train(until=7)
    assert trainer.step == 7 and len(trainer.history.loss) == 7
    with pytest.raises(ValueError, match="already at step 7"):
        trainer.train(until=3)
    t2, h = train(tiny(steps=4, eval_every=0), progress=False)
    assert t2.step == 4 and isinstance(h, History) and len(h.loss) == 4


def test_translate_after_training() -> None:
    trainer = Trainer(tiny(steps=2), progress=False)
    out = trainer.translate(["abc", "j"], beam_width=2)
    assert len(out) == 2 and all(isinstance(o, str) for o in out)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("task", "nope", "unknown task 'nope'; the known tasks are: copy, reverse"),
        ("steps", 0, "steps must be an integer >= 1"),
        ("n_heads", 3, "divisible by n_heads=3"),
        ("label_smoothing", 1.5, r"label_smoothing must be \[0, 1\]"),
        ("clip_norm", 0.0, "clip_norm must be > 0"),
        ("optimizer", "rmsprop", "unknown optimizer 'rmsprop'"),
        ("schedule", "linear", "unknown schedule 'linear'"),
        ("backend", "jax", "unknown backend 'jax'"),
        ("n_train", 4, r"n_train \(4\) must be at least batch_size \(8\)"),
        ("dropout", float("nan"), "dropout must be a finite number"),
        # wrong types (e.g. a checkpoint edited by hand) are named, not a TypeError
        ("task", ["reverse"], "task must be a string, got list"),
        ("activation", 1, "activation must be a string, got int"),
        ("betas", 5, r"betas must be a pair of numbers in \[0, 1\), got 5"),
        ("betas", ("a", "b"), "betas must be a pair of numbers"),
        ("norm_first", "no", "norm_first must be True or False, got str 'no'"),
        ("unpadded", 1, "unpadded must be True or False, got int 1"),
        # more than the task or nanotf can supply: the bound, before anything is drawn
        ("n_heldout", 10**8, "at most 1,000,000 in all"),
        ("n_heldout", 40, "task 'copy' can hold out: at most 31"),
    ],
)
def test_config_errors_name_the_field(field: str, value: Any, match: str) -> None:
    options = {"task": "copy", "task_options": {"max_len": 5, "alphabet": "ab"}}
    extra = options if field == "n_heldout" and value == 40 else {}
    with pytest.raises(ValueError, match=match):
        tiny(**{**extra, field: value})


def test_a_diverging_run_stops_before_the_update_that_spreads_it() -> None:
    trainer = Trainer(
        tiny(steps=12, eval_every=0, optimizer="sgd", lr=1000.0, clip_norm=None), progress=False
    )
    with np.errstate(all="ignore"), pytest.raises(TrainingDiverged, match="loss is (nan|inf)") as e:
        trainer.train()
    done = e.value.step
    assert 0 < done < 12 and e.value.quantity == "loss" and not math.isfinite(e.value.value)
    assert f"diverged at step {done + 1}" in str(e.value)
    assert trainer.step == done == len(trainer.history.loss)  # nothing recorded for it
    assert all(math.isfinite(v) for v in trainer.history.loss)
    assert trainer.optimizer.step_count == trainer.scheduler.step_count == done


def test_a_non_finite_gradient_norm_stops_training(monkeypatch: pytest.MonkeyPatch) -> None:
    import nanotf.train

    trainer = Trainer(tiny(steps=4, eval_every=0), progress=False)
    trainer.train(until=2)
    before = params_of(trainer)
    monkeypatch.setattr(nanotf.train, "clip_grad_norm", lambda params, max_norm: math.inf)
    with pytest.raises(TrainingDiverged, match="the gradient norm is inf"):
        trainer.train()
    assert trainer.step == 2
    for name, p in params_of(trainer).items():
        np.testing.assert_array_equal(p, before[name], err_msg=name)


def test_history_without_clipping_is_strict_json() -> None:
    import json

    h = Trainer(tiny(steps=3, eval_every=0, clip_norm=None), progress=False).train()
    assert h.grad_norm == [None, None, None]  # not computed, and not NaN
    json.dumps(h.to_dict(), allow_nan=False)
    odd = History(
        step=[1], loss=[math.nan], lr=[1.0], grad_norm=[math.inf], tokens=[3], seconds=[0.1]
    )
    assert odd.to_dict()["loss"] == [None] and odd.to_dict()["grad_norm"] == [None]


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"loss": 5}, "history field 'loss' must be a list, got int"),
        ({"lr": [1.0, 2.0]}, "per-step lists differ in length"),
        ({"tokens": ["a"]}, r"history field 'tokens'\[0\] must be an integer, got 'a'"),
        ({"evals": [3]}, r"'evals'\[0\] must be a dict with an integer 'step'"),
    ],
)
def test_history_from_dict_names_what_is_wrong(change: dict[str, Any], match: str) -> None:
    good = History(step=[1], loss=[0.5], lr=[1.0], grad_norm=[None], tokens=[3], seconds=[0.1])
    assert History.from_dict(good.to_dict()) == good
    with pytest.raises(ValueError, match=match):
        History.from_dict({**good.to_dict(), **change})
    with pytest.raises(ValueError, match=r"lacks the fields \['seconds'\]"):
        History.from_dict({k: v for k, v in good.to_dict().items() if k != "seconds"})


def test_config_round_trips_through_dict() -> None:
    cfg = tiny(betas=(0.8, 0.9))
    d = cfg.to_dict()
    assert d["betas"] == [0.8, 0.9]
    assert TrainConfig.from_dict(d) == cfg
    assert TrainConfig.from_dict(d, steps=5).steps == 5
    with pytest.raises(ValueError, match="unknown TrainConfig fields"):
        TrainConfig.from_dict({**d, "colour": 1})


def test_other_optimizers_and_float64() -> None:
    for opt in ("adamw", "sgd"):
        h = Trainer(tiny(steps=3, eval_every=0, optimizer=opt), progress=False).train()
        assert all(math.isfinite(v) for v in h.loss)
    t = Trainer(tiny(steps=2, eval_every=0, dtype="float64"), progress=False)
    t.train()
    assert all(p.data.dtype == np.float64 for p in t.model.parameters())
    nanotf.set_default_dtype(np.float32)


def test_task_options_and_blas_threads() -> None:
    trainer = Trainer(
        tiny(
            steps=2, eval_every=0, task_options={"max_len": 4, "alphabet": "xyz"}, blas_threads=None
        ),
        progress=False,
    )
    trainer.train()
    assert trainer.task.src_vocab.symbols == ("x", "y", "z")
    assert all(len(src) <= 4 for src, _ in trainer.train_pairs)
    with pytest.raises(ValueError, match="task 'numbers' does not take the options"):
        tiny(task="numbers", task_options={"max_len": 3})
    with pytest.raises(ValueError, match="blas_threads must be an integer >= 1"):
        tiny(blas_threads=0)


@pytest.mark.parametrize(("eps", "vocab"), [(0.1, 14), (0.01, 5), (0.3, 100)])
def test_smoothed_loss_floor_is_the_loss_of_the_smoothed_target(eps: float, vocab: int) -> None:
    import torch

    q = np.full(vocab, eps / vocab)
    q[2] += 1.0 - eps
    logits = torch.from_numpy(np.log(q))[None]
    want = torch.nn.functional.cross_entropy(logits, torch.tensor([2]), label_smoothing=eps)
    assert smoothed_loss_floor(eps, vocab) == pytest.approx(want.item(), abs=1e-12)
    assert smoothed_loss_floor(0.0, vocab) == 0.0
