"""Training the encoder–decoder Transformer (or, with ``model="gpt"``, a decoder-only GPT: see
:mod:`nanotf.train.lm`) without autograd: the loop, written out.

One training step, as :meth:`Trainer.train_step` does it::

    batch = next batch of (source, target) pairs           src (B, S), tgt (B, T)
    logits = model.forward(src, tgt_in)                    teacher forcing: tgt_in = <bos> y
    loss, cache = cross_entropy_forward(logits, tgt_out,   tgt_out = y <eos>; <pad> ignored,
                      ignore_index=PAD, label_smoothing)   labels smoothed
    dlogits = cross_entropy_backward(1.0, cache)           ∂loss/∂logits = (p - q) / n_tokens
    model.backward(dlogits)                                every Parameter.grad filled by hand
    clip_grad_norm(params, clip_norm)                      one global rescale if the norm is big
    scheduler.step(); optimizer.step()                     lr for this update, then the update
                                                           (whole or not at all: Ctrl-C waits)

*Teacher forcing*: the decoder reads the true previous tokens (``tgt_in``), not its own guesses,
so every position of every sequence is trained in one parallel pass.

Reproducibility: the model is initialised and dropout is drawn from nanotf's one seeded
generator (``manual_seed(config.seed)``); the batch of step ``s`` is a pure function of
``(seed, s)`` (each epoch is a permutation seeded by ``(seed, epoch)``). So the same config
gives bit-identical losses on NumPy, and a run resumed from a checkpoint (which stores the
model, the optimizer, the schedule, the step, the generator's state and the history) continues
with exactly the losses of an uninterrupted run.

A checkpoint only ever holds completed steps. Before its update, a step changes only the
gradients (which checkpoints do not store) and the random generator (dropout draws): an
interrupt there (Ctrl-C in the forward, backward or clipping) abandons the step and sets the
generator back. The update itself (schedule, optimizer, step counter, history) runs with Ctrl-C
held back (:func:`interrupts_deferred`), so an interrupt there lets the step finish first. An
evaluation cut short is run again when the run is resumed. A loss or gradient norm that is not
finite stops training (:class:`TrainingDiverged`) before the update that would spread it.

Evaluation (every ``eval_every`` steps and at the end) runs on held-out pairs whose sources
never occur in the training set: the teacher-forced loss (plain cross-entropy, no smoothing),
the token accuracy of the teacher-forced argmax, and the *exact match* of greedy decoding (the
whole output string right). Evaluation draws no random numbers, so it does not change training.

The package, by what each file holds: ``config.py`` (:class:`TrainConfig` and the names it
accepts), ``checks.py`` (the value checks), ``factories.py`` (model, optimizer, schedule),
``lm.py`` (GPT's model, loss and evaluation), ``steps.py`` (the Transformer's loss on a batch,
the host check of a batch's ids), ``history.py`` (what a run records),
``divergence.py``, ``interrupts.py``, ``threads.py``, ``rng_state.py``, ``resume.py``
(checkpoints read back, :func:`load_model`, :func:`load_gpt`); the loop itself,
:class:`Trainer`, is here (tests replace ``nanotf.train.clip_grad_norm`` and
``nanotf.train.greedy_decode`` to interrupt a step: the loop looks them up in this module).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..backend import get_backend, manual_seed, set_backend, set_default_dtype, to_numpy
from ..checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ..checks import ids_checked_on_host
from ..data import Batch, LMBatch, LMTask, Task, lm_batch, make_batch
from ..decode import beam_search, greedy_decode, translate
from ..functional import cross_entropy_backward
from ..optim import LRScheduler, clip_grad_norm
from .config import DTYPES, MODEL_FIELDS, MODELS, OPTIMIZERS, SCHEDULES, TrainConfig, make_task
from .divergence import TrainingDiverged, check_finite
from .factories import build_model, lr_schedule, make_optimizer, resolved_max_len
from .history import History, smoothed_loss_floor
from .interrupts import interrupts_deferred
from .lm import build_gpt, continue_prompts, lm_evaluate_batch, lm_loss
from .resume import (
    check_fits,
    check_model_state,
    check_optimizer_state,
    load_gpt,
    load_model,
    restore_training_state,
    saved_config,
    saved_history,
    saved_vocabs,
)
from .rng_state import host_rng_state, set_host_rng_state
from .steps import check_batch_ids, seq2seq_loss
from .threads import blas_threads

__all__ = [
    "DTYPES",
    "MODELS",
    "MODEL_FIELDS",
    "OPTIMIZERS",
    "SCHEDULES",
    "History",
    "TrainConfig",
    "Trainer",
    "TrainingDiverged",
    "blas_threads",
    "build_model",
    "interrupts_deferred",
    "load_gpt",
    "load_model",
    "lr_schedule",
    "make_optimizer",
    "make_task",
    "smoothed_loss_floor",
    "train",
]


def _is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class Trainer:
    """A training run: the task's data, the model, the optimizer, the schedule and the history.

    ``Trainer(config)`` selects ``config.backend``, seeds nanotf's generator with
    ``config.seed``, makes the train/held-out split and builds the model. Then::

        trainer.train()            # up to config.steps (or train(until=...) for fewer)
        trainer.evaluate()         # held-out loss, token accuracy, exact match
        trainer.save(path)         # a checkpoint to resume from or translate with
        trainer.translate(["abc"]) # ['cba']

    ``progress`` shows a tqdm bar (loss, target tokens per second, learning rate); None shows
    it when stderr is a terminal. ``log`` receives one line per evaluation (None: printed
    above the bar when it is shown, silent otherwise).
    """

    def __init__(
        self,
        config: TrainConfig,
        progress: bool | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        config.validate()
        if get_backend() != config.backend:
            set_backend(config.backend)  # BackendUnavailableError says why it cannot
        set_default_dtype(config.dtype)
        manual_seed(config.seed)
        self.task: Task = make_task(config.task, config.task_options)
        #: the task as one sequence per pair, for model="gpt" (None for the Transformer)
        self.lm: LMTask | None = LMTask(self.task) if config.model == "gpt" else None
        if config.max_len is None:
            config = dataclasses.replace(config, max_len=resolved_max_len(config, self.task))
        self.config = config
        self.progress = _is_tty() if progress is None else bool(progress)
        self._log = log
        self.train_pairs, self.heldout_pairs = self.task.splits(
            config.n_train, config.n_heldout, config.seed
        )
        self.model: Any = (
            build_model(config, self.task.src_vocab, self.task.tgt_vocab)
            if self.lm is None
            else build_gpt(config, self.lm)
        )
        self.optimizer = make_optimizer(config, self.model)
        self.scheduler = LRScheduler(self.optimizer, lr_schedule(config))
        self.step = 0
        self.history = History()
        #: the latest evaluation of the loop, with its examples (None before the first)
        self.last_eval: dict[str, Any] | None = None
        self._epoch_order: tuple[int, np.ndarray] | None = None

    # -- data -------------------------------------------------------------------------------
    @property
    def batches_per_epoch(self) -> int:
        return len(self.train_pairs) // self.config.batch_size

    def batch_at(self, step: int) -> Batch | LMBatch:
        """The training batch of step ``step`` (0-based): a pure function of (seed, step).

        Epoch ``e`` visits the training pairs in the order ``default_rng((seed, e))
        .permutation(n)``, cut into full batches (the remainder waits for a later epoch).
        """
        n_batches = self.batches_per_epoch
        epoch, i = divmod(step, n_batches)
        if self._epoch_order is None or self._epoch_order[0] != epoch:
            gen = np.random.default_rng((self.config.seed, epoch))
            self._epoch_order = (epoch, gen.permutation(len(self.train_pairs)))
        order = self._epoch_order[1]
        b = self.config.batch_size
        pairs = [self.train_pairs[j] for j in order[i * b : (i + 1) * b]]
        return make_batch(pairs, self.task) if self.lm is None else lm_batch(pairs, self.lm)

    # -- one step ----------------------------------------------------------------------------
    def train_step(self) -> float:
        """One update on the next batch; returns its loss (label-smoothed, as optimised).

        The step happens whole or not at all. Until the update, only the gradients and the
        random generator (dropout) change; if the step is abandoned (an exception, Ctrl-C),
        the generator is set back. The update runs with Ctrl-C held back. A loss or gradient
        norm that is not finite raises :class:`TrainingDiverged` before the update.
        """
        t0 = time.perf_counter()
        cfg = self.config
        model = self.model
        rng_state = host_rng_state()  # set back if this step is abandoned
        updated = False
        try:
            host_batch = self.batch_at(self.step)
            n_tokens = host_batch.n_tokens  # counted on the host, before the move
            batch = host_batch.to_backend()
            model.train()
            # the ids are checked once, here on the host: no device check in the step
            check_batch_ids(model, host_batch)
            with ids_checked_on_host():
                if isinstance(batch, LMBatch):  # GPT: read <bos> x = y, predict y <eos>
                    _, loss, cache = lm_loss(model, batch, cfg.label_smoothing)
                else:  # teacher forcing: read <bos> y, predict y <eos>
                    _, loss, cache = seq2seq_loss(model, batch, cfg.label_smoothing,
                                                  unpadded=cfg.unpadded)
            loss_value = float(to_numpy(loss))  # the step's one loss transfer
            self._check_finite("loss", loss_value)
            # backward, by hand: dloss/dlogits, then every layer in reverse
            self.optimizer.zero_grad()
            model.backward(cross_entropy_backward(1.0, cache))
            grad_norm: float | None = None  # the norm before clipping; not computed without it
            if cfg.clip_norm is not None:
                grad_norm = clip_grad_norm(self.optimizer.params, cfg.clip_norm)
                self._check_finite("gradient norm", grad_norm)
            # the update: whole or not at all, so Ctrl-C waits until it is done
            with interrupts_deferred():
                lr = self.scheduler.step()  # the learning rate of this update
                self.optimizer.step()
                self.step += 1
                h = self.history
                h.step.append(self.step)
                h.loss.append(loss_value)
                h.lr.append(float(lr))
                h.grad_norm.append(grad_norm)
                h.tokens.append(n_tokens)
                h.seconds.append((h.seconds[-1] if h.seconds else 0.0) + time.perf_counter() - t0)
                updated = True
        except BaseException:
            if not updated:
                set_host_rng_state(rng_state)
            raise
        return loss_value

    def _check_finite(self, quantity: str, value: float) -> None:
        check_finite(self.step, quantity, value, self.config.lr)

    # -- the loop ------------------------------------------------------------------------------
    def train(self, until: int | None = None) -> History:
        """Train until step ``until`` (default ``config.steps``), evaluating every
        ``eval_every`` steps and at ``config.steps``; returns the history."""
        cfg = self.config
        target = cfg.steps if until is None else int(until)
        if target < self.step:
            raise ValueError(f"cannot train until step {target}: already at step {self.step}")
        from tqdm.auto import tqdm

        bar = tqdm(
            total=target,
            initial=self.step,
            disable=not self.progress,
            desc=f"train {cfg.task}",
            unit="step",
            file=sys.stderr,
            dynamic_ncols=True,
            mininterval=0.25,
        )
        tokens, seconds0 = 0, (self.history.seconds[-1] if self.history.seconds else 0.0)
        smoothed: float | None = None
        with blas_threads(cfg.blas_threads):
            try:
                # an evaluation due at this step but not done (the run was interrupted in it)
                due = self._evaluation_due(self.step)
                done = self.history.evals and self.history.evals[-1]["step"] == self.step
                if self.step > 0 and due and not done and self._evaluate_and_stop(bar):
                    return self.history
                while self.step < target:
                    loss = self.train_step()
                    tokens += self.history.tokens[-1]
                    smoothed = loss if smoothed is None else 0.9 * smoothed + 0.1 * loss
                    if self.progress:
                        # target tokens per second of training steps (evaluations excluded)
                        rate = tokens / max(self.history.seconds[-1] - seconds0, 1e-9)
                        bar.set_postfix(
                            loss=f"{smoothed:.4f}",
                            tok_s=f"{rate:,.0f}",
                            lr=f"{self.optimizer.lr:.2e}",
                            refresh=False,
                        )
                    bar.update(1)
                    if self._evaluation_due(self.step) and self._evaluate_and_stop(bar):
                        break
            finally:
                bar.close()
        return self.history

    def _evaluation_due(self, step: int) -> bool:
        """Whether the loop evaluates after step ``step``: every ``eval_every`` and at the end."""
        every = self.config.eval_every
        return bool(every and step % every == 0) or step == self.config.steps

    def _evaluate_and_stop(self, bar: Any) -> bool:
        """Evaluate and record it; True when the exact match reaches ``stop_at_exact_match``."""
        result = self.evaluate()
        self._record_eval(result, bar)
        goal = self.config.stop_at_exact_match
        if goal is not None and result["exact_match"] >= goal:
            self._emit(f"exact match {result['exact_match']:.4f} >= {goal}: stopping", bar)
            return True
        return False

    def _emit(self, line: str, bar: Any) -> None:
        if self._log is not None:
            self._log(line)
        elif self.progress:
            bar.write(line, file=sys.stderr)

    def _record_eval(self, result: dict[str, Any], bar: Any) -> None:
        entry = {"step": self.step, **{k: v for k, v in result.items() if k != "examples"}}
        self.history.evals.append(entry)
        self.last_eval = {"step": self.step, **result}
        self._emit(
            f"step {self.step}: held-out loss {result['loss']:.4f}, token accuracy "
            f"{result['token_accuracy']:.4f}, exact match {result['exact_match']:.4f} "
            f"({result['n']} examples)",
            bar,
        )

    # -- evaluation ----------------------------------------------------------------------------
    def evaluate(
        self, pairs: Sequence[tuple[str, str]] | None = None, beam_width: int = 1
    ) -> dict[str, Any]:
        """Held-out metrics (on ``pairs``, default the held-out split), in eval mode:

        ``loss``: teacher-forced cross-entropy per target token, without label smoothing;
        ``token_accuracy``: share of target tokens whose teacher-forced argmax is right;
        ``exact_match``: share of outputs decoded greedily (or by beam search with
        ``beam_width > 1``) that equal the target exactly; ``n``: number of pairs;
        ``examples``: ``(source, target, output)`` triples, in order.
        """
        pairs = list(self.heldout_pairs if pairs is None else pairs)
        if not pairs:
            raise ValueError("evaluate needs at least one (source, target) pair")
        if self.lm is not None and beam_width != 1:
            raise ValueError(f"GPT runs evaluate greedily (beam_width=1), got {beam_width}")
        model = self.model
        was_training = model.training
        model.eval()
        totals = {"loss": 0.0, "tokens": 0, "right": 0, "exact": 0}
        examples: list[tuple[str, str, str]] = []
        size = self.config.eval_batch_size
        with blas_threads(self.config.blas_threads):
            try:
                for start in range(0, len(pairs), size):
                    chunk = pairs[start : start + size]
                    if self.lm is not None:
                        lm_evaluate_batch(model, self.lm, chunk, totals, examples)
                    else:
                        self._evaluate_batch(chunk, beam_width, totals, examples)
            finally:
                model.train(was_training)
        return {
            "loss": totals["loss"] / totals["tokens"],
            "token_accuracy": totals["right"] / totals["tokens"],
            "exact_match": totals["exact"] / len(pairs),
            "n": len(pairs),
            "examples": examples,
        }

    def _evaluate_batch(
        self,
        chunk: list[tuple[str, str]],
        beam_width: int,
        totals: dict[str, Any],
        examples: list[tuple[str, str, str]],
    ) -> None:
        model, task = self.model, self.task
        host_batch = make_batch(chunk, task)
        check_batch_ids(model, host_batch)
        batch = host_batch.to_backend()
        # teacher-forced: loss (summed, no smoothing) and argmax accuracy per target token
        with ids_checked_on_host():
            logits, loss, _ = seq2seq_loss(model, batch, reduction="sum")
        mask = host_batch.tgt_out_mask  # the labels and their mask are on the host already
        pred = to_numpy(logits.argmax(axis=-1))
        totals["loss"] += float(to_numpy(loss))
        totals["right"] += int(((pred == host_batch.tgt_out) & mask).sum())
        totals["tokens"] += int(mask.sum())
        # free-running: the model reads its own outputs; exact match of the whole string
        max_len = min(task.max_tgt_len + 4, self.config.max_len - 1)  # type: ignore[operator]
        if beam_width > 1:
            out = beam_search(model, batch.src, batch.src_mask, beam_width, max_len)
        else:
            out = greedy_decode(model, batch.src, batch.src_mask, max_len)
        for (src, tgt), row in zip(chunk, out, strict=True):
            text = task.decode_target(row)
            totals["exact"] += text == tgt
            examples.append((src, tgt, text))

    def translate(self, texts: Sequence[str], beam_width: int = 1) -> list[str]:
        """Outputs of the model for source ``texts`` (greedy, or beam search; a GPT run
        gives its greedy continuation of ``<bos> text =``)."""
        if self.lm is not None:
            if beam_width != 1:
                raise ValueError(f"GPT runs continue prompts greedily, got beam_width={beam_width}")
            return continue_prompts(self.model, self.lm, texts)
        return translate(
            self.model, texts, self.task.src_vocab, self.task.tgt_vocab, beam_width=beam_width
        )

    # -- checkpoints ---------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write a checkpoint (model, optimizer, schedule, step, generator state, config,
        vocabularies, history) atomically to ``path``."""
        return save_checkpoint(
            path,
            self.model,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            step=self.step,
            rng_state=host_rng_state(),
            config=self.config.to_dict(),
            vocabs={"src": self.task.src_vocab.to_dict(), "tgt": self.task.tgt_vocab.to_dict()},
            history=self.history.to_dict(),
            extra={
                "backend": get_backend(),
                "task_description": self.task.description,
                "model": type(self.model).__name__,
            },
        )

    def load(self, checkpoint: str | os.PathLike[str] | dict[str, Any]) -> None:
        """Resume from a checkpoint (a path, or what :func:`load_checkpoint` returned).

        Everything is checked before anything changes: a checkpoint of another task or model
        size, or one whose metadata was edited into something else (a field of the wrong type,
        a missing key, the state of another kind of optimizer), raises
        :class:`CheckpointError` naming the file and what is wrong, and leaves this trainer as
        it was.
        """
        ckpt = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
        where = ckpt["path"]
        check_fits(where, saved_config(ckpt), self.config)
        check_model_state(where, self.model, ckpt["model"])
        check_optimizer_state(where, ckpt, self.optimizer, self.config.optimizer)
        for side, vocab in saved_vocabs(ckpt, required=False).items():
            if vocab != getattr(self.task, f"{side}_vocab"):
                raise CheckpointError(
                    f"checkpoint {where}: its {side} vocabulary differs from task "
                    f"{self.task.name!r}'s"
                )
        step = int(ckpt["step"])
        history = saved_history(ckpt, step)
        before = (self.step, self.history)

        def commit() -> None:
            self.step, self.history = step, history

        def rollback() -> None:
            self.step, self.history = before

        restore_training_state(ckpt, self.model, self.optimizer, self.scheduler, commit, rollback)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike[str],
        progress: bool | None = None,
        log: Callable[[str], None] | None = None,
        **overrides: Any,
    ) -> Trainer:
        """A trainer rebuilt from a checkpoint's config (``overrides`` may change e.g.
        ``steps`` to train longer), with its state restored.

        A config in the checkpoint that is not usable raises :class:`CheckpointError`; an
        override that is not (``lr=-1``) raises a plain ``ValueError``."""
        ckpt = load_checkpoint(path)
        saved = saved_config(ckpt)
        if saved is None:
            raise CheckpointError(f"checkpoint {ckpt['path']} holds no training config")
        config = TrainConfig.from_dict(saved.to_dict(), **overrides)
        trainer = cls(config, progress=progress, log=log)
        trainer.load(ckpt)
        return trainer


def train(
    config: TrainConfig | None = None,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[Trainer, History]:
    """Train a model from ``config`` (default: :class:`TrainConfig()`); returns the trainer
    (model, data, ...) and its history."""
    trainer = Trainer(config or TrainConfig(), progress=progress, log=log)
    history = trainer.train()
    return trainer, history
