"""Training the decoder-only GPT on the toy tasks (``TrainConfig(model="gpt")``, nanotf.train.lm)
and the commands around it (``train --model gpt``, ``generate``).

The step's loss and every gradient are checked against Hugging Face's ``GPT2LMHeadModel`` given
the same weights and its own ``labels`` (-100 where nanotf's labels are ``<pad>``): float64,
loss 1e-10 relative, gradients 1e-9 (the tolerances of tests/models/test_gpt2.py). The held-out
exact match is checked against prompts continued one at a time without the cache.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest
import torch
import transformers

import nanotf
from nanotf import cli
from nanotf.checkpoint import CheckpointError
from nanotf.data import BOS_ID, EOS_ID, PAD_ID, LMTask
from nanotf.functional import cross_entropy_backward
from nanotf.models import GPT2LMHeadModel
from nanotf.train import TrainConfig, Trainer, load_gpt, load_model
from nanotf.train.lm import continue_prompts, gpt_config_dict, lm_loss

from .conftest import assert_hf_grads_match, hf_pair, rel_error
from .test_checkpoint import _rewrite
from .test_cli import TINY_ARGS, _one_line_error
from .test_train import params_of, tiny

LOSS_RTOL = 1e-10  # float64
GRAD_RTOL = 1e-9  # float64, as tests/models/test_gpt2.py


def tiny_gpt(**overrides: Any) -> TrainConfig:
    return tiny(model="gpt", **overrides)


def test_config_defaults_and_refusals() -> None:
    assert TrainConfig().model == "transformer" and TrainConfig().activation == "relu"
    assert TrainConfig(model="gpt").activation == "gelu_new"
    assert TrainConfig(model="gpt", activation="relu").activation == "relu"
    with pytest.raises(ValueError, match="unknown model 'bert'; expected one of transformer, gpt"):
        TrainConfig(model="bert")
    for name in ("norm_first", "share_embeddings", "tie_output"):
        with pytest.raises(ValueError, match=f"{name}=True is an option of the encoder-decoder"):
            TrainConfig(model="gpt", **{name: True})
    with pytest.raises(ValueError, match="uses '=' as a symbol"):
        TrainConfig(model="gpt", task="copy", task_options={"alphabet": "ab="})


def test_the_model_is_gpt2_sized_from_the_config() -> None:
    trainer = Trainer(tiny_gpt(d_model=12, n_heads=3, n_layers=2, d_ff=20), progress=False)
    m = trainer.model
    assert isinstance(m, GPT2LMHeadModel)
    c = m.config
    assert (c.n_embd, c.n_head, c.n_layer, c.inner_dim) == (12, 3, 2, 20)
    assert c.vocab_size == len(trainer.lm.vocab) == 4 + 10 + 1
    assert c.n_positions == trainer.config.max_len == trainer.lm.max_seq_len == 23
    assert c.resid_pdrop == c.embd_pdrop == c.attn_pdrop == 0.1


def test_step_loss_and_gradients_are_hugging_faces() -> None:
    """nanotf's loss over the continuation, and every gradient, equal HF's GPT2LMHeadModel
    with labels -100 outside the continuation (HF shifts the labels itself)."""
    nanotf.set_default_dtype("float64")
    trainer = Trainer(tiny_gpt(dropout=0.0, dtype="float64", batch_size=6), progress=False)
    batch = trainer.batch_at(0)
    cfg = transformers.GPT2Config(
        **gpt_config_dict(trainer.config, len(trainer.lm.vocab)),
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        attn_implementation="eager",
    )
    hf, ours = hf_pair(transformers.GPT2LMHeadModel, GPT2LMHeadModel, cfg, np.float64)
    ours.train()
    _, loss, cache = lm_loss(ours, batch)
    ours.backward(cross_entropy_backward(1.0, cache))
    # HF's labels: the input ids with -100 outside the continuation; position t is scored
    # against label t + 1, as GPT2LMHeadModel(labels=...) shifts them (its own loss upcasts
    # the logits to float32, so the same shifted cross-entropy is taken here in float64)
    hf_labels = np.full(batch.ids.shape, -100, dtype=np.int64)
    hf_labels[:, 1:] = np.where(batch.labels == PAD_ID, -100, batch.labels)
    logits = hf(input_ids=torch.from_numpy(batch.ids)).logits  # (B, L, V)
    want = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]),
        torch.from_numpy(hf_labels[:, 1:]).reshape(-1),
        ignore_index=-100,
    )
    want.backward()
    assert rel_error(float(loss), want.item()) <= LOSS_RTOL
    assert_hf_grads_match(ours, hf, np.float64, GRAD_RTOL)


def test_training_is_deterministic_and_lowers_the_loss() -> None:
    a = Trainer(tiny_gpt(steps=30, lr=1e-2), progress=False)
    a.train()
    b = Trainer(tiny_gpt(steps=30, lr=1e-2), progress=False)
    b.train()
    assert a.history.loss == b.history.loss  # bitwise
    assert np.mean(a.history.loss[-5:]) < np.mean(a.history.loss[:5])
    c = Trainer(tiny_gpt(steps=30, lr=1e-2, seed=1), progress=False)
    c.train()
    assert c.history.loss != a.history.loss


def test_resume_gives_exactly_the_uninterrupted_run(tmp_path: Path) -> None:
    whole = Trainer(tiny_gpt(steps=12, eval_every=4), progress=False)
    whole.train()
    first = Trainer(tiny_gpt(steps=12, eval_every=4), progress=False)
    first.train(until=7)
    path = first.save(tmp_path / "gpt.safetensors")
    resumed = Trainer.from_checkpoint(path, progress=False)
    assert resumed.step == 7
    resumed.train()
    assert resumed.history.loss == whole.history.loss
    assert resumed.history.evals == whole.history.evals
    mine, want = params_of(resumed), params_of(whole)
    assert all(np.array_equal(mine[k], want[k]) for k in want)


def test_heldout_exact_match_is_that_of_prompts_continued_one_by_one() -> None:
    """evaluate() groups prompts by length and uses the cache; the same continuations come
    from each prompt alone, without the cache."""
    trainer = Trainer(tiny_gpt(steps=40, lr=1e-2, n_heldout=24), progress=False)
    trainer.train()
    result = trainer.evaluate()
    lm, model = trainer.lm, trainer.model
    right = 0
    for (src, tgt), example in zip(trainer.heldout_pairs, result["examples"], strict=True):
        prompt = np.array([lm.prompt_ids(src)])
        out = model.generate(prompt, lm.max_continuation_len, eos_token_id=EOS_ID, use_cache=False)
        text = lm.continuation_text(out[0, prompt.shape[1] :])
        assert example == (src, tgt, text)
        right += text == tgt
    assert result["exact_match"] == right / len(trainer.heldout_pairs)
    assert 0 < result["token_accuracy"] <= 1 and result["loss"] > 0
    assert trainer.translate([s for s, _ in trainer.heldout_pairs[:3]]) == [
        e[2] for e in result["examples"][:3]
    ]
    with pytest.raises(ValueError, match="greedily"):
        trainer.evaluate(beam_width=2)


def test_continue_prompts_refuses_a_prompt_that_fills_the_table() -> None:
    trainer = Trainer(tiny_gpt(max_len=6), progress=False)
    assert continue_prompts(trainer.model, trainer.lm, ["ab"])[0] is not None
    with pytest.raises(ValueError, match="prompt of 6 tokens .* position table holds 6"):
        continue_prompts(trainer.model, trainer.lm, ["abcd"])


def test_a_word_level_task_trains() -> None:
    trainer = Trainer(tiny_gpt(task="numbers", steps=3, eval_every=0), progress=False)
    trainer.train()
    assert trainer.lm.vocab.level == "word" and trainer.history.step == [1, 2, 3]


# -- checkpoints of either kind ------------------------------------------------------------------
@pytest.fixture(scope="module")
def gpt_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    trainer = Trainer(tiny_gpt(steps=4, eval_every=0), progress=False)
    trainer.train()
    return trainer.save(tmp_path_factory.mktemp("gpt") / "checkpoint.safetensors")


@pytest.fixture(scope="module")
def transformer_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    trainer = Trainer(tiny(steps=2, eval_every=0), progress=False)
    trainer.train()
    return trainer.save(tmp_path_factory.mktemp("tf") / "checkpoint.safetensors")


def test_each_loader_refuses_the_other_kind(
    gpt_checkpoint: Path, transformer_checkpoint: Path
) -> None:
    model, lm, config = load_gpt(gpt_checkpoint)
    assert isinstance(model, GPT2LMHeadModel) and isinstance(lm, LMTask) and not model.training
    assert config.model == "gpt"
    with pytest.raises(CheckpointError, match="holds a GPT .* python -m nanotf generate"):
        load_model(gpt_checkpoint)
    with pytest.raises(CheckpointError, match="holds an encoder-decoder .* nanotf translate"):
        load_gpt(transformer_checkpoint)


def test_a_checkpoint_from_before_gpt_reads_as_a_transformer(
    transformer_checkpoint: Path, gpt_checkpoint: Path, tmp_path: Path
) -> None:
    trainer = Trainer(tiny(steps=2, eval_every=0), progress=False)
    old = trainer.config.to_dict()
    del old["model"]
    path = _rewrite(transformer_checkpoint, tmp_path / "old.safetensors", config=json.dumps(old))
    assert load_model(path)[3].model == "transformer"
    # a config that says gpt on a Transformer's weights (or the reverse) is refused
    gpt = tiny_gpt(steps=4, eval_every=0).to_dict()
    bad = _rewrite(transformer_checkpoint, tmp_path / "bad.safetensors", config=json.dumps(gpt))
    with pytest.raises(CheckpointError, match="says model='gpt', but it holds a 'Transformer'"):
        load_gpt(bad)
    del gpt["model"]
    bad = _rewrite(gpt_checkpoint, tmp_path / "bad2.safetensors", config=json.dumps(gpt))
    with pytest.raises(CheckpointError, match="says model='transformer', but it holds a 'GPT2"):
        Trainer.from_checkpoint(bad, progress=False)


def test_resuming_with_the_other_model_is_refused(gpt_checkpoint: Path) -> None:
    trainer = Trainer(tiny(steps=4, eval_every=0), progress=False)
    with pytest.raises(CheckpointError, match="model='gpt' \\(this run: 'transformer'\\)"):
        trainer.load(gpt_checkpoint)


# -- the command line ----------------------------------------------------------------------------
def test_train_and_generate_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert cli.main(["train", "--model", "gpt", *TINY_ARGS, "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    summary = json.loads(lines[-1])
    assert summary["model"] == "gpt" and summary["steps"] == 12
    assert any(line.startswith("model: GPT (pre-LN, tied head), 1 layers") for line in lines)
    assert any("greedy continuation after '='" in line for line in lines)
    assert cli.main(["generate", "--checkpoint", str(out), "abc", "cab="]) == 0
    got = capsys.readouterr().out.splitlines()
    model, lm, _ = load_gpt(out)
    assert got == continue_prompts(model, lm, ["abc", "cab"])
    # sampling repeats with its seed
    sample = ["generate", "--checkpoint", str(out), "--sample", "--temperature", "2", "abcdef"]
    runs = []
    for _ in range(2):
        assert cli.main([*sample, "--seed", "5"]) == 0
        runs.append(capsys.readouterr().out)
    assert runs[0] == runs[1]


def test_generate_reads_stdin(
    gpt_checkpoint: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("abc\n\nba=\n"))
    assert cli.main(["generate", "--checkpoint", str(gpt_checkpoint)]) == 0
    model, lm, _ = load_gpt(gpt_checkpoint)
    assert capsys.readouterr().out.splitlines() == continue_prompts(model, lm, ["abc", "ba"])


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--max-new-tokens", "0", "abc"], "--max-new-tokens must be at least 1, got 0"),
        (["--temperature", "0.5", "abc"], "--temperature, --top-k and --top-p need --sample"),
        (["--sample", "--temperature", "0", "abc"], "temperature must be greater than 0"),
        (["--sample", "--top-p", "1.5", "abc"], "top_p"),
        (["--sample", "--top-k", "0", "abc"], "top_k"),
        (["abz"], "unknown character 'z'"),
        (["abcdefghijabcdefghijab"], "position table holds 23"),
    ],
)
def test_generate_bad_input_is_one_line(
    gpt_checkpoint: Path, capsys: pytest.CaptureFixture[str], args: list[str], match: str
) -> None:
    assert cli.main(["generate", "--checkpoint", str(gpt_checkpoint), *args]) == 2
    assert match in _one_line_error(capsys, "generate")


def test_commands_refuse_the_other_kind_of_checkpoint(
    gpt_checkpoint: Path, transformer_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["translate", "--checkpoint", str(gpt_checkpoint), "abc"]) == 2
    assert "nanotf generate" in _one_line_error(capsys, "translate")
    assert cli.main(["generate", "--checkpoint", str(transformer_checkpoint), "abc"]) == 2
    assert "nanotf translate" in _one_line_error(capsys, "generate")


def test_train_gpt_bad_options_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["train", "--model", "gpt", "--norm-first", "yes", *TINY_ARGS]) == 2
    assert "norm_first=True is an option of the encoder-decoder" in _one_line_error(
        capsys, "train"
    )
    assert cli.main(["train", "--model", "gpt", "--task", "numbers", "--digits", "2"]) == 2
    assert "does not take the options ['max_digits']" in _one_line_error(capsys, "train")


def test_train_resume_of_a_gpt_run(gpt_checkpoint: Path, tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "more"
    args = ["train", "--resume", str(gpt_checkpoint), "--steps", "6", "--out", str(out)]
    assert cli.main([*args, "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert summary["model"] == "gpt" and summary["steps"] == 6
