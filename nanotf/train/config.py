"""The configuration of a training run: :class:`TrainConfig`, its checks, and the names it
accepts (optimizers, schedules, activations, backends, dtypes: each list defined once)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..backend import BACKENDS
from ..data import TASKS, LMTask, Task, get_task
from ..nn.layers import ACTIVATIONS
from .checks import check_bool, check_choice, check_int, check_real, check_str

__all__ = [
    "DEFAULT_ACTIVATION",
    "DTYPES",
    "MODELS",
    "MODEL_FIELDS",
    "OPTIMIZERS",
    "SCHEDULES",
    "TrainConfig",
    "make_task",
]

#: the models a run trains: the encoder-decoder Transformer, or the decoder-only GPT (GPT-2's
#: layout, :class:`~nanotf.models.GPT2LMHeadModel`) on the task written as one sequence
MODELS = ("transformer", "gpt")
#: the feed-forward activation of each model when the config leaves it None
DEFAULT_ACTIVATION = {"transformer": "relu", "gpt": "gelu_new"}
#: the optimizers :func:`~nanotf.train.factories.make_optimizer` builds
OPTIMIZERS = ("adam", "adamw", "sgd")
#: the learning-rate schedules of :func:`~nanotf.train.factories.lr_schedule`
SCHEDULES = ("cosine", "noam", "constant")
#: the floating-point types a run computes in
DTYPES = ("float32", "float64")
#: config fields that decide the model's shapes (a checkpoint must agree on them to be loaded)
MODEL_FIELDS = (
    "model",
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


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved in every checkpoint as JSON).

    The defaults are the run of ``python -m nanotf train``: a small post-LN Transformer (2 + 2
    layers, width 64, 4 heads, 236k parameters) learns to reverse strings of 1-10 letters on
    the CPU in float32: 2000 steps of 64 pairs, about 47 s on 2 cores (with the ``fast``
    extra), held-out exact match 1.000 for seeds 0, 1 and 2.

    ``model="gpt"`` trains the decoder-only GPT instead (``n_layers`` blocks, always pre-LN
    with the head tied to the token embedding, so ``norm_first``, ``share_embeddings`` and
    ``tie_output`` must stay False) on the task written as one sequence, ``abc=cba``
    (:class:`~nanotf.tasks.lm.LMTask`); its exact match is that of the continuation after
    ``=``. ``activation`` None is the model's own: ``relu`` for the Transformer, ``gelu_new``
    (GPT-2's) for GPT. With ``model="gpt"`` and the other defaults, a 2-layer GPT (103k
    parameters) reverses strings at held-out exact match 0.998 / 1.000 / 0.996 for seeds
    0 / 1 / 2, in about 40 s on 2 cores (with the ``fast`` extra).

    ``unpadded=True`` trains the Transformer with ``Transformer.forward_unpadded``: the same loss
    and gradients without dropout (to round-off), the padding left out of all but attention, so
    a step costs less the more a batch is padded; with dropout its masks are drawn on the real
    tokens alone, so a seeded run differs from ``unpadded=False``'s (each repeats bit for bit).

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

    model: str = "transformer"
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
    activation: str | None = None  # None: DEFAULT_ACTIVATION[model]
    norm_first: bool = False
    share_embeddings: bool = False
    tie_output: bool = False
    unpadded: bool = False  # the Transformer's training forward: forward_unpadded (see above)
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
        if self.activation is None and self.model in DEFAULT_ACTIVATION:
            self.activation = DEFAULT_ACTIVATION[self.model]
        self.validate()

    def validate(self) -> None:
        """Check every field; a ``ValueError`` names the field, what is allowed and the value."""
        self._check_kinds()
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; the known tasks are: {', '.join(TASKS)}")
        if not isinstance(self.task_options, dict):
            raise ValueError(f"task_options must be a dict, got {self.task_options!r}")
        task = make_task(self.task, self.task_options)  # raises for options it does not take
        if self.model == "gpt":
            LMTask(task)  # raises when the task's symbols hold the separator
        self._check_sizes(task)
        self._check_numbers()
        self._check_names()
        if self.n_train < self.batch_size:
            raise ValueError(
                f"n_train ({self.n_train}) must be at least batch_size ({self.batch_size})"
            )

    def _check_kinds(self) -> None:
        """The fields that hold a name are strings, the switches bools."""
        check_str("model", self.model)
        check_choice("model", self.model, MODELS)
        for name in ("task", "activation", "optimizer", "schedule", "backend", "dtype"):
            check_str(name, getattr(self, name))
        for name in ("norm_first", "share_embeddings", "tie_output", "unpadded"):
            check_bool(name, getattr(self, name))
        if self.model == "gpt":
            for name in ("norm_first", "share_embeddings", "tie_output", "unpadded"):
                if getattr(self, name):
                    raise ValueError(
                        f"{name}=True is an option of the encoder-decoder Transformer; GPT is "
                        "always pre-LN with its head tied to the token embedding (leave "
                        f"{name} False with model='gpt')"
                    )

    def _check_sizes(self, task: Task) -> None:
        """Counts of things: steps, widths, pairs, the split the task can supply."""
        if self.blas_threads is not None:
            check_int("blas_threads", self.blas_threads, 1)
        for name in ("steps", "batch_size", "d_model", "n_heads", "d_ff", "n_train", "n_heldout"):
            check_int(name, getattr(self, name), 1)
        task.check_split(self.n_train, self.n_heldout)  # the bound, before anything is drawn
        for name in ("n_layers", "warmup", "seed", "eval_every"):
            check_int(name, getattr(self, name), 0)
        check_int("eval_batch_size", self.eval_batch_size, 1)
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        if self.max_len is not None:
            check_int("max_len", self.max_len, 1)

    def _check_numbers(self) -> None:
        """Rates, probabilities and the optimizer's constants."""
        check_real("dropout", self.dropout, 0.0, 1.0)
        check_real("lr", self.lr, 0.0)
        check_real("min_lr", self.min_lr, 0.0, self.lr)
        check_real("eps", self.eps, 0.0)
        check_real("weight_decay", self.weight_decay, 0.0)
        check_real("momentum", self.momentum, 0.0, 1.0)
        check_real("label_smoothing", self.label_smoothing, 0.0, 1.0)
        if self.clip_norm is not None:
            check_real("clip_norm", self.clip_norm, 0.0)
            if self.clip_norm == 0:
                raise ValueError("clip_norm must be > 0 (or None to turn clipping off), got 0")
        if self.stop_at_exact_match is not None:
            check_real("stop_at_exact_match", self.stop_at_exact_match, 0.0, 1.0)
        if (
            not isinstance(self.betas, (tuple, list))
            or len(self.betas) != 2
            or not all(
                isinstance(b, (int, float)) and not isinstance(b, bool) and 0.0 <= b < 1.0
                for b in self.betas
            )
        ):
            raise ValueError(f"betas must be a pair of numbers in [0, 1), got {self.betas!r}")

    def _check_names(self) -> None:
        """Optimizer, schedule, activation, backend and dtype among the known ones."""
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("activation", self.activation, list(ACTIVATIONS), listed=False)
        check_choice("backend", self.backend, BACKENDS, listed=False)
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")

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
