"""Training the encoder–decoder Transformer without autograd: the loop, written out.

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
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .backend import (
    get_backend,
    manual_seed,
    rng,
    set_backend,
    set_default_dtype,
    to_numpy,
)
from .checkpoint import CheckpointError, json_safe, load_checkpoint, save_checkpoint
from .data import PAD_ID, TASKS, Batch, Task, Vocab, get_task, make_batch
from .decode import beam_search, greedy_decode, translate
from .functional import cross_entropy_backward, cross_entropy_forward
from .models.transformer import Transformer
from .optim import SGD, Adam, AdamW, LRScheduler, Optimizer, clip_grad_norm, cosine_lr, noam_lr

__all__ = [
    "History",
    "TrainConfig",
    "Trainer",
    "TrainingDiverged",
    "blas_threads",
    "build_model",
    "interrupts_deferred",
    "load_model",
    "make_task",
    "smoothed_loss_floor",
    "train",
]

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("cosine", "noam", "constant")
#: config fields that decide the model's shapes (a checkpoint must agree on them to be loaded)
MODEL_FIELDS = (
    "task",
    "task_options",
    "d_model",
    "n_heads",
    "n_layers",
    "d_ff",
    "activation",
    "norm_first",
    "share_embeddings",
    "tie_output",
    "max_len",
    "dtype",
    "optimizer",
)


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved in every checkpoint as JSON).

    The defaults are the run of ``python -m nanotf train``: a small post-LN Transformer (2 + 2
    layers, width 64, 4 heads, 236k parameters) learns to reverse strings of 1-10 letters on
    the CPU in float32: 2000 steps of 64 pairs, about 90 s on 2 cores, held-out exact match
    0.992 / 0.998 / 1.000 for seeds 0 / 1 / 2. (The few misses are one-letter strings: the
    held-out split holds all ten of them, so the model never trains on that length.)

    ``task_options`` go to the task's factory (``get_task(task, **task_options)``), e.g.
    ``{"max_len": 20}`` for longer strings. ``blas_threads`` limits the BLAS library's threads
    while training and evaluating (see :func:`blas_threads`; None leaves it alone).

    ``lr`` is the peak learning rate; ``schedule`` shapes it: ``"cosine"`` (linear warm-up for
    ``warmup`` steps, then half a cosine down to ``min_lr`` at ``steps``; a warm-up longer than
    the run is cut to ``steps - 1``), ``"noam"`` (linear warm-up, then ``∝ 1/√step``, scaled to
    peak at ``lr``) or ``"constant"`` (warm-up, then flat). ``clip_norm`` None turns clipping
    off. ``max_len`` None sizes the position table from the task (twice its longest sequence,
    plus 8).
    """

    task: str = "reverse"
    task_options: dict[str, Any] = field(default_factory=dict)
    steps: int = 2000
    batch_size: int = 64
    # model
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    d_ff: int = 256
    dropout: float = 0.0
    activation: str = "relu"
    norm_first: bool = False
    share_embeddings: bool = False
    tie_output: bool = False
    max_len: int | None = None
    # optimisation
    optimizer: str = "adam"
    lr: float = 1e-3
    schedule: str = "cosine"
    warmup: int = 100
    min_lr: float = 0.0
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-9
    weight_decay: float = 0.0
    momentum: float = 0.9
    label_smoothing: float = 0.1
    clip_norm: float | None = 1.0
    # data and evaluation
    n_train: int = 20_000
    n_heldout: int = 500
    eval_every: int = 500
    eval_batch_size: int = 500
    stop_at_exact_match: float | None = None
    # run
    seed: int = 0
    backend: str = "numpy"
    dtype: str = "float32"
    blas_threads: int | None = 1

    def __post_init__(self) -> None:
        if isinstance(self.betas, list):
            self.betas = tuple(self.betas)  # type: ignore[assignment]
        self.validate()

    def validate(self) -> None:
        """Check every field; a ``ValueError`` names the field, what is allowed and the value."""

        def positive_int(name: str, allow_zero: bool = False) -> None:
            v = getattr(self, name)
            low = 0 if allow_zero else 1
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")

        def real(name: str, low: float, high: float | None = None) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"{name} must be a finite number, got {v!r}")
            if v < low or (high is not None and v > high):
                rng_ = f"[{low:g}, {high:g}]" if high is not None else f">= {low:g}"
                raise ValueError(f"{name} must be {rng_}, got {v!r}")

        for name in ("task", "activation", "optimizer", "schedule", "backend", "dtype"):
            v = getattr(self, name)
            if not isinstance(v, str):
                raise ValueError(f"{name} must be a string, got {type(v).__name__} {v!r}")
        for name in ("norm_first", "share_embeddings", "tie_output"):
            v = getattr(self, name)
            if not isinstance(v, (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False, got {type(v).__name__} {v!r}")
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; the known tasks are: {', '.join(TASKS)}")
        if not isinstance(self.task_options, dict):
            raise ValueError(f"task_options must be a dict, got {self.task_options!r}")
        task = make_task(self.task, self.task_options)  # raises for options it does not take
        if self.blas_threads is not None:
            positive_int("blas_threads")
        for name in ("steps", "batch_size", "d_model", "n_heads", "d_ff", "n_train", "n_heldout"):
            positive_int(name)
        task.check_split(self.n_train, self.n_heldout)  # the bound, before anything is drawn
        for name in ("n_layers", "warmup", "seed"):
            positive_int(name, allow_zero=True)
        positive_int("eval_every", allow_zero=True)
        positive_int("eval_batch_size")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        if self.max_len is not None:
            positive_int("max_len")
        real("dropout", 0.0, 1.0)
        real("lr", 0.0)
        real("min_lr", 0.0, self.lr)
        real("eps", 0.0)
        real("weight_decay", 0.0)
        real("momentum", 0.0, 1.0)
        real("label_smoothing", 0.0, 1.0)
        if self.clip_norm is not None:
            real("clip_norm", 0.0)
            if self.clip_norm == 0:
                raise ValueError("clip_norm must be > 0 (or None to turn clipping off), got 0")
        if self.stop_at_exact_match is not None:
            real("stop_at_exact_match", 0.0, 1.0)
        if (
            not isinstance(self.betas, (tuple, list))
            or len(self.betas) != 2
            or not all(
                isinstance(b, (int, float)) and not isinstance(b, bool) and 0.0 <= b < 1.0
                for b in self.betas
            )
        ):
            raise ValueError(f"betas must be a pair of numbers in [0, 1), got {self.betas!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"unknown optimizer {self.optimizer!r}; expected one of {', '.join(OPTIMIZERS)}"
            )
        if self.schedule not in SCHEDULES:
            raise ValueError(
                f"unknown schedule {self.schedule!r}; expected one of {', '.join(SCHEDULES)}"
            )
        if self.activation not in ("relu", "gelu", "gelu_new", "gelu_pytorch_tanh"):
            raise ValueError(
                f"unknown activation {self.activation!r}; expected relu, gelu or gelu_new"
            )
        if self.backend not in ("numpy", "cupy"):
            raise ValueError(f"unknown backend {self.backend!r}; expected numpy or cupy")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if self.n_train < self.batch_size:
            raise ValueError(
                f"n_train ({self.n_train}) must be at least batch_size ({self.batch_size})"
            )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (what checkpoints store)."""
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        d["task_options"] = dict(self.task_options)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], **overrides: Any) -> TrainConfig:
        """Rebuild a config from :meth:`to_dict`; ``overrides`` replace fields."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted((set(d) | set(overrides)) - known)
        if unknown:
            raise ValueError(
                f"unknown TrainConfig fields {unknown}; the fields are: {', '.join(sorted(known))}"
            )
        return cls(**{**d, **overrides})


@dataclass
class History:
    """What a run recorded: per step (``step``, ``loss``, ``lr``, ``grad_norm``, ``tokens``,
    ``seconds`` since the start of training) and per evaluation (``evals``: dicts with
    ``step``, ``loss``, ``token_accuracy``, ``exact_match``, ``n``). ``grad_norm`` is the
    global gradient norm before clipping, None where clipping is off (then it is not
    computed)."""

    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    grad_norm: list[float | None] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A dict that is strict JSON: a number that is not finite becomes ``None``."""
        return json_safe(dataclasses.asdict(self))  # type: ignore[no-any-return]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> History:
        """Rebuild a history from :meth:`to_dict` (None or ``{}``: an empty one).

        Checked: every field present and a list, the per-step lists of one length, their
        entries numbers (``None`` for a number that was not finite), ``evals`` a list of dicts
        with a ``step``. A ``ValueError`` names the field that is wrong.
        """
        if not d:
            return cls()
        if not isinstance(d, Mapping):
            raise ValueError(f"a history must be a dict of lists, got {type(d).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if n not in d]
        if missing:
            raise ValueError(f"the history lacks the fields {missing}")
        for name in names:
            if not isinstance(d[name], list):
                raise ValueError(
                    f"history field {name!r} must be a list, got {type(d[name]).__name__}"
                )
        per_step = [n for n in names if n != "evals"]
        lengths = {n: len(d[n]) for n in per_step}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"the history's per-step lists differ in length: {lengths}")
        for name in per_step:
            whole = name in ("step", "tokens")
            for i, v in enumerate(d[name]):
                number = isinstance(v, int) if whole else isinstance(v, (int, float))
                if isinstance(v, bool) or not (number or (v is None and not whole)):
                    what = "an integer" if whole else "a number or null"
                    raise ValueError(f"history field {name!r}[{i}] must be {what}, got {v!r}")
        for i, e in enumerate(d["evals"]):
            if not isinstance(e, dict) or not isinstance(e.get("step"), int):
                raise ValueError(
                    f"history field 'evals'[{i}] must be a dict with an integer 'step', got {e!r}"
                )
        return cls(**{n: list(d[n]) for n in names})

    @property
    def final_eval(self) -> dict[str, Any] | None:
        return self.evals[-1] if self.evals else None


def smoothed_loss_floor(label_smoothing: float, vocab_size: int) -> float:
    """The least label-smoothed cross-entropy any model can reach: the entropy of the smoothed
    target ``q = (1 - ε)·onehot + ε/V``, ``H(q) = -Σ_c q_c log q_c`` (reached at ``p = q``).

    With ε = 0.1 and the 14 tokens of the default task it is 0.547: a training loss there is
    a perfect fit, not a plateau.
    """
    eps, v = float(label_smoothing), int(vocab_size)
    hit, miss = 1.0 - eps + eps / v, eps / v  # q of the right token, of each other token
    entropy = 0.0
    if hit < 1.0:
        entropy -= hit * math.log(hit)
    if miss > 0.0:
        entropy -= (v - 1) * miss * math.log(miss)
    return entropy


def make_task(name: str, options: dict[str, Any] | None = None) -> Task:
    """``get_task(name, **options)``, with a ``ValueError`` naming the task when it does not
    take an option (e.g. ``max_len`` for ``numbers``)."""
    options = dict(options or {})
    try:
        return get_task(name, **options)
    except TypeError as err:
        raise ValueError(
            f"task {name!r} does not take the options {sorted(options)} ({err}); copy, reverse "
            "and sort take alphabet, min_len and max_len"
        ) from err


class TrainingDiverged(ArithmeticError):
    """Training produced a loss or a gradient norm that is not a finite number (``nan`` or
    ``inf``), usually because the learning rate is too high. Raised before the update, so the
    trainer holds the state after the last good step (``step``). ``quantity`` is ``"loss"`` or
    ``"gradient norm"``; ``value`` what it was."""

    def __init__(self, step: int, quantity: str, value: float, lr: float) -> None:
        self.step, self.quantity, self.value = step, quantity, value
        super().__init__(
            f"training diverged at step {step + 1}: the {quantity} is {value} (peak learning "
            f"rate {lr:g}); the model is left as it was after step {step}. Lower the learning "
            "rate, keep gradient clipping on or warm up for longer"
        )


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold back Ctrl-C (SIGINT) inside the block and deliver it when the block ends.

    Use it around work that must happen whole or not at all, such as the update of a training
    step: a ``KeyboardInterrupt`` half way through the optimizer's loop over the parameters
    would leave some of them updated and others not, under the old step number. Inside the
    block a SIGINT is only noted; on leaving it the signal is raised again for the handler that
    was there before (by default Python's, which raises ``KeyboardInterrupt``)::

        with interrupts_deferred():
            scheduler.step()
            optimizer.step()
            step += 1

    Python can set signal handlers only in the main thread: elsewhere the block runs as it is.
    """
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or previous is None:
        yield
        return
    noted: list[int] = []

    def note(signum: int, frame: Any) -> None:
        noted.append(signum)

    signal.signal(signal.SIGINT, note)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if noted:
        signal.raise_signal(signal.SIGINT)  # to the previous handler, now that the work is done


@contextmanager
def blas_threads(n: int | None) -> Iterator[None]:
    """Limit the BLAS library (OpenBLAS, MKL) to ``n`` threads inside the block.

    Why: the matrices of a small model are tiny ((B·T) x 64 times 64 x 64). On them a second
    BLAS thread gains nothing, and when another process competes for the cores, threads that
    spin-wait for each other make every product up to 10x slower (measured on the 2-core
    machine: 42 ms per training step with one thread; 42-620 ms with two). ``n=None`` changes
    nothing.
    """
    if n is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=n, user_api="blas"):
        yield


def _resolved_max_len(config: TrainConfig, task: Task) -> int:
    if config.max_len is not None:
        return config.max_len
    return 2 * max(task.max_src_len, task.max_tgt_len) + 8


def build_model(config: TrainConfig, src_vocab: Vocab, tgt_vocab: Vocab) -> Transformer:
    """The :class:`Transformer` a config describes (``n_layers`` encoder and decoder layers),
    initialised from nanotf's current generator."""
    if config.max_len is None:
        raise ValueError("build_model needs config.max_len set (Trainer resolves it)")
    share = config.share_embeddings
    if share and src_vocab != tgt_vocab:
        raise ValueError(
            f"share_embeddings needs the same source and target vocabulary; task "
            f"{config.task!r} has {len(src_vocab)} source and {len(tgt_vocab)} target tokens"
        )
    return Transformer(
        src_vocab_size=len(src_vocab),
        tgt_vocab_size=len(tgt_vocab),
        d_model=config.d_model,
        n_heads=config.n_heads,
        n_encoder_layers=config.n_layers,
        n_decoder_layers=config.n_layers,
        d_ff=config.d_ff,
        dropout=config.dropout,
        activation=config.activation,
        norm_first=config.norm_first,
        max_len=config.max_len,
        share_embeddings=share,
        tie_output=config.tie_output,
        pad_id=PAD_ID,
    )


def _make_optimizer(config: TrainConfig, model: Transformer) -> Optimizer:
    params = model.parameters()
    if config.optimizer == "adam":
        return Adam(
            params,
            lr=config.lr,
            betas=config.betas,
            eps=config.eps,
            weight_decay=config.weight_decay,
        )
    if config.optimizer == "adamw":
        return AdamW(
            params,
            lr=config.lr,
            betas=config.betas,
            eps=config.eps,
            weight_decay=config.weight_decay,
        )
    return SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def lr_schedule(config: TrainConfig) -> Callable[[int], float]:
    """The learning rate of update ``t = 1, 2, ...`` under the config's schedule."""
    lr, warmup, steps = config.lr, config.warmup, config.steps
    if config.schedule == "cosine":
        warmup = min(warmup, steps - 1)  # a run shorter than the warm-up: cosine over one step
        return lambda t: cosine_lr(t, lr, warmup, steps, config.min_lr)
    if config.schedule == "noam":
        w = max(warmup, 1)
        factor = lr * math.sqrt(config.d_model * w)  # noam_lr peaks at factor / √(d·w) = lr
        return lambda t: noam_lr(t, config.d_model, w, factor)
    if warmup == 0:
        return lambda t: lr
    return lambda t: lr * min(1.0, t / warmup)


def _host_rng_state() -> dict[str, Any] | None:
    """The backend generator's state as JSON-able data (NumPy); None where it cannot be read."""
    g = rng()
    if isinstance(g, np.random.Generator):
        return g.bit_generator.state
    return None


def _set_host_rng_state(state: dict[str, Any] | None) -> None:
    g = rng()
    if state is not None and isinstance(g, np.random.Generator):
        g.bit_generator.state = state


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
        if config.max_len is None:
            config = dataclasses.replace(config, max_len=_resolved_max_len(config, self.task))
        self.config = config
        self.progress = _is_tty() if progress is None else bool(progress)
        self._log = log
        self.train_pairs, self.heldout_pairs = self.task.splits(
            config.n_train, config.n_heldout, config.seed
        )
        self.model = build_model(config, self.task.src_vocab, self.task.tgt_vocab)
        self.optimizer = _make_optimizer(config, self.model)
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

    def batch_at(self, step: int) -> Batch:
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
        return make_batch([self.train_pairs[j] for j in order[i * b : (i + 1) * b]], self.task)

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
        rng_state = _host_rng_state()  # set back if this step is abandoned
        updated = False
        try:
            batch = self.batch_at(self.step).to_backend()
            model.train()
            # forward, teacher forcing: read <bos> y, predict y <eos>
            logits = model.forward(batch.src, batch.tgt_in, batch.src_mask, batch.tgt_in_mask)
            loss, cache = cross_entropy_forward(
                logits, batch.tgt_out, ignore_index=PAD_ID, label_smoothing=cfg.label_smoothing
            )
            loss_value = float(to_numpy(loss))
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
                h.tokens.append(batch.n_tokens)
                h.seconds.append((h.seconds[-1] if h.seconds else 0.0) + time.perf_counter() - t0)
                updated = True
        except BaseException:
            if not updated:
                _set_host_rng_state(rng_state)
            raise
        return loss_value

    def _check_finite(self, quantity: str, value: float) -> None:
        if not math.isfinite(value):
            raise TrainingDiverged(self.step, quantity, value, self.config.lr)

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
        model = self.model
        was_training = model.training
        model.eval()
        totals = {"loss": 0.0, "tokens": 0, "right": 0, "exact": 0}
        examples: list[tuple[str, str, str]] = []
        size = self.config.eval_batch_size
        with blas_threads(self.config.blas_threads):
            try:
                for start in range(0, len(pairs), size):
                    self._evaluate_batch(pairs[start : start + size], beam_width, totals, examples)
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
        batch = make_batch(chunk, task).to_backend()
        # teacher-forced: loss (summed, no smoothing) and argmax accuracy per target token
        logits = model.forward(batch.src, batch.tgt_in, batch.src_mask, batch.tgt_in_mask)
        loss, _ = cross_entropy_forward(logits, batch.tgt_out, ignore_index=PAD_ID, reduction="sum")
        mask = to_numpy(batch.tgt_out_mask)
        pred = to_numpy(logits.argmax(axis=-1))
        totals["loss"] += float(to_numpy(loss))
        totals["right"] += int(((pred == to_numpy(batch.tgt_out)) & mask).sum())
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
        """Outputs of the model for source ``texts`` (greedy, or beam search)."""
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
            rng_state=_host_rng_state(),
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
        saved = _saved_config(ckpt)
        if saved is not None:
            diffs = [
                f"{k}={getattr(saved, k)!r} (this run: {getattr(self.config, k)!r})"
                for k in MODEL_FIELDS
                if k != "max_len" and getattr(saved, k) != getattr(self.config, k)
            ]
            if saved.max_len is not None and saved.max_len != self.config.max_len:
                diffs.append(f"max_len={saved.max_len!r} (this run: {self.config.max_len!r})")
            if diffs:
                raise CheckpointError(
                    f"checkpoint {where} does not fit this run: it was saved with "
                    + ", ".join(diffs)
                )
        _check_model_state(where, self.model, ckpt["model"])
        if ckpt.get("optimizer") is None:
            raise CheckpointError(f"checkpoint {where} holds no optimizer state to resume from")
        kind = type(self.optimizer).__name__
        if ckpt.get("optimizer_class") not in (None, kind):
            raise CheckpointError(
                f"checkpoint {where} holds the state of a {ckpt.get('optimizer_class')!r} "
                f"optimizer; this run's optimizer is {kind} (optimizer="
                f"{self.config.optimizer!r})"
            )
        for side, vocab in _saved_vocabs(ckpt, required=False).items():
            if vocab != getattr(self.task, f"{side}_vocab"):
                raise CheckpointError(
                    f"checkpoint {where}: its {side} vocabulary differs from task "
                    f"{self.task.name!r}'s"
                )
        step = int(ckpt["step"])
        try:
            history = History.from_dict(ckpt.get("history"))
        except ValueError as err:
            raise CheckpointError(f"checkpoint {where} has an unusable history: {err}") from err
        if ckpt.get("history") is not None and len(history.step) != step:
            raise CheckpointError(
                f"checkpoint {where}: its metadata says step {step}, but its history records "
                f"{len(history.step)} steps"
            )
        # transactional: keep copies, restore them if any part fails to load
        backup = (
            {k: np.array(to_numpy(v), copy=True) for k, v in self.model.state_dict().items()},
            self.optimizer.state_dict(),
            self.scheduler.state_dict(),
            _host_rng_state(),
            self.step,
            self.history,
        )
        parts: list[tuple[str, Callable[[], None]]] = [
            ("model parameters", lambda: self.model.load_state_dict(ckpt["model"])),
            ("optimizer state", lambda: self.optimizer.load_state_dict(ckpt["optimizer"])),
            ("schedule state", lambda: self.scheduler.load_state_dict(ckpt["scheduler"])),
            ("random generator state", lambda: _set_host_rng_state(ckpt.get("rng_state"))),
        ]
        if not ckpt.get("scheduler"):
            parts.pop(2)
        try:
            for what, load_part in parts:
                try:
                    load_part()
                except Exception as err:
                    raise CheckpointError(
                        f"checkpoint {where} could not be loaded ({what}): {err}"
                    ) from err
            self.step = step
            self.history = history
        except BaseException:
            self.model.load_state_dict(backup[0])
            self.optimizer.load_state_dict(backup[1])
            self.scheduler.load_state_dict(backup[2])
            _set_host_rng_state(backup[3])
            self.step, self.history = backup[4], backup[5]
            raise

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
        saved = _saved_config(ckpt)
        if saved is None:
            raise CheckpointError(f"checkpoint {ckpt['path']} holds no training config")
        config = TrainConfig.from_dict(saved.to_dict(), **overrides)
        trainer = cls(config, progress=progress, log=log)
        trainer.load(ckpt)
        return trainer


def _saved_config(ckpt: Mapping[str, Any]) -> TrainConfig | None:
    """The training config of a checkpoint (what :func:`load_checkpoint` returned), checked:
    a Transformer's, every field of :class:`TrainConfig` present and valid. None when it
    holds no config; otherwise a :class:`CheckpointError` naming the file and the field."""
    where = ckpt["path"]
    kind = (ckpt.get("extra") or {}).get("model", "Transformer")
    if kind != "Transformer":
        raise CheckpointError(
            f"checkpoint {where} holds a {kind!r} model; nanotf train and translate read "
            "checkpoints of the encoder-decoder 'Transformer'"
        )
    d = ckpt.get("config")
    if d is None:
        return None
    missing = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in d]
    if missing:
        raise CheckpointError(
            f"checkpoint {where}: its config lacks the fields {missing} (nanotf train writes "
            "every field of TrainConfig)"
        )
    try:
        return TrainConfig.from_dict(d)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"checkpoint {where} has an unusable config: {err}") from err


def _saved_vocabs(ckpt: Mapping[str, Any], required: bool) -> dict[str, Vocab]:
    """``{"src": Vocab, "tgt": Vocab}`` of a checkpoint, checked ({} when it holds none and
    they are not ``required``)."""
    where, vocabs = ckpt["path"], ckpt.get("vocabs")
    if vocabs is None:
        if required:
            raise CheckpointError(f"checkpoint {where} holds no vocabularies")
        return {}
    out = {}
    for side in ("src", "tgt"):
        if side not in vocabs:
            raise CheckpointError(
                f"checkpoint {where}: its vocabs lack {side!r} (expected 'src' and 'tgt', "
                f"got {sorted(vocabs)})"
            )
        try:
            out[side] = Vocab.from_dict(vocabs[side])
        except (TypeError, ValueError) as err:
            raise CheckpointError(
                f"checkpoint {where}: its vocabs[{side!r}] is not a vocabulary: {err}"
            ) from err
    return out


def _check_model_state(where: Any, model: Transformer, state: dict[str, Any]) -> None:
    """Every parameter present with the right shape and dtype, nothing extra; else one
    :class:`CheckpointError` listing the problems (a few of them)."""
    own = model.state_dict()
    problems = []
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    if missing:
        problems.append(f"missing {len(missing)} parameters ({', '.join(missing[:3])}, ...)")
    if extra:
        problems.append(f"{len(extra)} unexpected parameters ({', '.join(extra[:3])}, ...)")
    for name, a in own.items():
        if name in state:
            s = state[name]
            if tuple(s.shape) != tuple(a.shape):
                problems.append(f"{name} has shape {tuple(s.shape)}, the model {tuple(a.shape)}")
            elif np.dtype(s.dtype) != np.dtype(a.dtype):
                problems.append(f"{name} has dtype {s.dtype}, the model {a.dtype}")
    if problems:
        shown = "; ".join(problems[:4]) + (
            f"; ... ({len(problems)} problems)" if len(problems) > 4 else ""
        )
        raise CheckpointError(f"checkpoint {where} does not fit the model: {shown}")


def load_model(
    path: str | os.PathLike[str],
) -> tuple[Transformer, Vocab, Vocab, TrainConfig]:
    """The trained model of a checkpoint, in eval mode, with its source and target
    vocabularies and its config (for translating; no optimizer is built)."""
    ckpt = load_checkpoint(path)
    where = ckpt["path"]
    config = _saved_config(ckpt)
    if config is None or ckpt.get("vocabs") is None:
        raise CheckpointError(f"checkpoint {where} holds no config or vocabularies")
    vocabs = _saved_vocabs(ckpt, required=True)
    src_vocab, tgt_vocab = vocabs["src"], vocabs["tgt"]
    if config.max_len is None:  # as Trainer does; the shapes are checked below
        config = dataclasses.replace(
            config, max_len=_resolved_max_len(config, make_task(config.task, config.task_options))
        )
    set_default_dtype(config.dtype)
    model = build_model(config, src_vocab, tgt_vocab)
    _check_model_state(where, model, ckpt["model"])
    model.load_state_dict(ckpt["model"])
    model.eval()
    return model, src_vocab, tgt_vocab, config


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
