"""``python -m nanotf train``: train a Transformer (or, with ``--model gpt``, a GPT) on a
built-in task, print held-out results, save a checkpoint, a loss curve and the history, end
with one line of JSON.

Ctrl-C while training or reporting saves the last completed step (exit code 130); a run that
diverges saves nothing (exit code 3).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from ..backend import BACKENDS
from ..nn.layers import ACTIVATIONS
from ..train.config import DEFAULT_ACTIVATION, DTYPES, MODELS, OPTIMIZERS, SCHEDULES
from .errors import CLIError, use_backend
from .paths import check_output_dir, strict_json, write_text_atomic
from .registry import subcommand

__all__ = ["train_command"]


def _yes_no(text: str) -> bool:
    if text.lower() in ("yes", "true", "1"):
        return True
    if text.lower() in ("no", "false", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected yes or no, got {text!r}")


# (flag, TrainConfig field, type, choices, help); defaults come from TrainConfig
_TRAIN_OPTIONS: list[tuple[str, str, Any, list[str] | None, str]] = [
    ("--steps", "steps", int, None, "number of training steps"),
    ("--batch-size", "batch_size", int, None, "pairs per batch"),
    ("--d-model", "d_model", int, None, "model width"),
    ("--heads", "n_heads", int, None, "attention heads (must divide --d-model)"),
    ("--layers", "n_layers", int, None, "encoder layers and decoder layers (each)"),
    ("--d-ff", "d_ff", int, None, "width of the feed-forward layers"),
    ("--dropout", "dropout", float, None, "dropout probability"),
    ("--activation", "activation", str, list(ACTIVATIONS), "feed-forward activation"),
    ("--norm-first", "norm_first", _yes_no, None, "pre-LN (yes) or post-LN (no)"),
    (
        "--unpadded",
        "unpadded",
        _yes_no,
        None,
        "the Transformer's training forward leaves the padding out of all but attention (yes)",
    ),
    ("--optimizer", "optimizer", str, list(OPTIMIZERS), "optimizer"),
    ("--lr", "lr", float, None, "peak learning rate"),
    ("--schedule", "schedule", str, list(SCHEDULES), "learning-rate schedule"),
    ("--warmup", "warmup", int, None, "warm-up steps (linear from 0 to --lr)"),
    ("--min-lr", "min_lr", float, None, "final learning rate of the cosine schedule"),
    ("--weight-decay", "weight_decay", float, None, "weight decay"),
    ("--label-smoothing", "label_smoothing", float, None, "label smoothing of the training loss"),
    ("--clip-norm", "clip_norm", float, None, "clip the global gradient norm to this (0: off)"),
    ("--n-train", "n_train", int, None, "training pairs"),
    ("--n-heldout", "n_heldout", int, None, "held-out pairs (never in the training set)"),
    ("--eval-every", "eval_every", int, None, "evaluate every N steps (0: only at the end)"),
    (
        "--stop-at-exact-match",
        "stop_at_exact_match",
        float,
        None,
        "stop when an evaluation reaches this exact match",
    ),
    ("--dtype", "dtype", str, list(DTYPES), "floating-point type"),
    (
        "--threads",
        "blas_threads",
        int,
        None,
        "BLAS threads (1 is fastest for small models; 0: the library's default)",
    ),
]
# options of the string tasks (copy, reverse, sort): (flag, option, type, help)
_TASK_OPTIONS: list[tuple[str, str, Any, str]] = [
    ("--alphabet", "alphabet", str, "the letters of copy/reverse/sort (default: abcdefghij)"),
    ("--min-len", "min_len", int, "shortest string of copy/reverse/sort (default: 1)"),
    ("--max-len", "max_len", int, "longest string of copy/reverse/sort (default: 10)"),
    ("--digits", "max_digits", int, "most digits of an addition operand (default: 3)"),
]


def _train_arguments(parser: argparse.ArgumentParser) -> None:
    from ..data import TASKS
    from ..train import TrainConfig

    defaults = TrainConfig()
    parser.add_argument(
        "--model",
        choices=list(MODELS),
        default=None,
        help="the encoder-decoder transformer, or gpt (decoder-only, GPT-2's layout) on the "
        f"task written as one sequence, abc=cba (default: {defaults.model})",
    )
    parser.add_argument(
        "--task",
        choices=list(TASKS),
        default=None,
        help=f"the task to learn (default: {defaults.task})",
    )
    parser.add_argument(
        "--backend",
        choices=list(BACKENDS),
        default=None,
        help="numpy (CPU) or cupy (NVIDIA GPU) (default: numpy)",
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: 0)")
    parser.add_argument(
        "--out",
        default=None,
        help="directory for the checkpoint, loss curve and history (default: runs/<task>, "
        "runs/gpt-<task> with --model gpt)",
    )
    parser.add_argument(
        "--resume",
        metavar="CHECKPOINT",
        default=None,
        help="continue the run saved in this checkpoint (give --steps to train longer)",
    )
    parser.add_argument(
        "--samples", type=int, default=5, help="held-out examples to print (default: 5)"
    )
    progress = parser.add_mutually_exclusive_group()
    progress.add_argument(
        "--progress",
        dest="progress",
        action="store_true",
        default=None,
        help="show the progress bar (default: only on a terminal)",
    )
    progress.add_argument(
        "--no-progress", dest="progress", action="store_false", help="hide the progress bar"
    )
    _option_groups(parser, defaults)


def _option_groups(parser: argparse.ArgumentParser, defaults: Any) -> None:
    """The task options and the TrainConfig fields (their defaults from ``defaults``)."""
    task = parser.add_argument_group("task options")
    for flag, name, typ, text in _TASK_OPTIONS:
        metavar = "LETTERS" if typ is str else "N"
        task.add_argument(
            flag, dest=f"task_{name}", type=typ, default=None, metavar=metavar, help=text
        )
    group = parser.add_argument_group("model and training (defaults: the default run)")
    for flag, name, typ, choices, text in _TRAIN_OPTIONS:
        default = getattr(defaults, name)
        if name == "activation":
            default = ", ".join(f"{v} for {k}" for k, v in DEFAULT_ACTIVATION.items())
        if typ is _yes_no:
            default = "yes" if default else "no"
        group.add_argument(
            flag,
            dest=name,
            type=typ,
            choices=choices,
            default=None,
            metavar=None if choices else ("YES|NO" if typ is _yes_no else name.upper()),
            help=f"{text} (default: {default})",
        )


def _config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """TrainConfig fields given on the command line."""
    names = ["model", "task", "backend", "seed"] + [name for _, name, _, _, _ in _TRAIN_OPTIONS]
    out = {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
    if out.get("clip_norm") == 0:
        out["clip_norm"] = None
    if out.get("blas_threads") == 0:
        out["blas_threads"] = None
    options = {
        name: getattr(args, f"task_{name}")
        for _, name, _, _ in _TASK_OPTIONS
        if getattr(args, f"task_{name}", None) is not None
    }
    if options:
        out["task_options"] = options
    return out


def _log_line(line: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(line, file=sys.stdout)
    sys.stdout.flush()


def _by_length(
    task: Any, examples: list[tuple[str, str, str]], train_pairs: list[tuple[str, str]]
) -> str:
    """``1: 6/10 (never trained on), 2: 39/39, ...``: right answers per source length (in
    symbols), marking lengths that no training pair has."""
    trained = {len(task.src_vocab.split(src)) for src, _ in train_pairs}
    right: dict[int, list[int]] = {}
    for src, tgt, got in examples:
        counts = right.setdefault(len(task.src_vocab.split(src)), [0, 0])
        counts[0] += got == tgt
        counts[1] += 1
    return ", ".join(
        f"{n}: {r}/{t}" + ("" if n in trained else " (no training pair has this length)")
        for n, (r, t) in sorted(right.items())
    )


@subcommand(
    "train",
    help="train a Transformer (or a GPT) on a built-in task",
    add_arguments=_train_arguments,
    description=(
        "Train an encoder-decoder Transformer (hand-written backward passes, no autograd) on a "
        "built-in task. With no options: reverse strings of 1-10 letters on the CPU in a couple "
        "of minutes. With --model gpt: a decoder-only GPT learns the same task written as one "
        "sequence (abc=cba) and is scored on what it writes after the '='.\n\n"
        "Writes <out>/checkpoint.safetensors, <out>/loss.png and "
        "<out>/history.json, prints a few held-out examples and ends with one line of JSON."
    ),
)
def train_command(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    from ..checkpoint import CHECKPOINT_NAME, CheckpointError
    from ..train import TrainConfig, Trainer

    out_files = (CHECKPOINT_NAME, "loss.png", "history.json")
    if args.out is not None:  # first of all: a bad --out must not cost a training run
        if not args.out.strip():
            raise CLIError(f"--out is empty; expected a directory (to hold {', '.join(out_files)})")
        check_output_dir(Path(args.out), "--out", out_files)
    overrides = _config_overrides(args)
    use_backend(overrides.get("backend", "numpy"))
    progress = args.progress
    try:
        if args.resume:
            trainer = Trainer.from_checkpoint(
                args.resume, progress=progress, log=_log_line, **overrides
            )
        else:
            trainer = Trainer(TrainConfig(**overrides), progress=progress, log=_log_line)
    except CheckpointError:
        raise
    except ValueError as err:
        raise CLIError(str(err)) from err
    cfg = trainer.config
    default_dir = cfg.task if cfg.model == "transformer" else f"{cfg.model}-{cfg.task}"
    out_dir = Path(args.out) if args.out else Path("runs") / default_dir
    if not args.out:
        check_output_dir(out_dir, "--out (default)", out_files)
    if trainer.step > cfg.steps:
        raise CLIError(
            f"--steps {cfg.steps} is below the {trainer.step} steps that checkpoint "
            f"{args.resume} has already done; give --steps {trainer.step} or more"
        )
    return _train_and_report(args, trainer, out_dir, started)


def _train_and_report(args: argparse.Namespace, trainer: Any, out_dir: Path, started: float) -> int:
    """Train, print the held-out results, save the checkpoint, loss curve and history, and
    print the summary line. Ctrl-C while training or reporting saves the last completed step;
    a run that diverges saves nothing."""
    import numpy as np

    from ..checkpoint import CHECKPOINT_NAME
    from ..train import TrainingDiverged, smoothed_loss_floor

    cfg, task = trainer.config, trainer.task
    ckpt_path = out_dir / CHECKPOINT_NAME
    _print_run(trainer)
    train_start, start_step = time.perf_counter(), trainer.step
    n_classes = len(task.tgt_vocab) if trainer.lm is None else len(trainer.lm.vocab)
    floor = smoothed_loss_floor(cfg.label_smoothing, n_classes)
    try:
        # a loss that overflows is caught by the divergence check, which says so in one line,
        # instead of a screenful of NumPy's overflow warnings first
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            trainer.train()
        train_seconds = time.perf_counter() - train_start
        final = _report_heldout(args, trainer, floor)
    except KeyboardInterrupt:
        return _save_after_interrupt(trainer, ckpt_path)
    except TrainingDiverged as err:
        raise CLIError(f"{err}. Nothing was saved ({ckpt_path} is as it was)", 3) from err
    saved = _save_results(trainer, out_dir, ckpt_path, floor)
    if saved is None:
        return 130
    ckpt, plot = saved
    print(f"saved {ckpt}, {plot} and {out_dir / 'history.json'}")
    timing = {
        "seconds": round(time.perf_counter() - started, 2),
        "train_seconds": round(train_seconds, 2),
    }
    print(strict_json(_summary(trainer, final, floor, start_step, timing, ckpt, plot)))
    return 0


def _print_run(trainer: Any) -> None:
    """Three lines: the task, the data, the model and its optimisation."""
    cfg, task = trainer.config, trainer.task
    n_params = trainer.model.num_parameters()
    described = task.description if trainer.lm is None else trainer.lm.description
    print(f"task {task.name!r}: {described}")
    print(
        f"data: {len(trainer.train_pairs)} training pairs, {len(trainer.heldout_pairs)} held-out "
        f"pairs (disjoint); batch {cfg.batch_size}, {cfg.steps} steps"
    )
    layers = f"{cfg.n_layers}+{cfg.n_layers}" if cfg.model == "transformer" else cfg.n_layers
    kind = "Transformer" if cfg.model == "transformer" else "GPT (pre-LN, tied head)"
    print(
        f"model: {kind}, {layers} layers, d_model {cfg.d_model}, "
        f"{cfg.n_heads} heads, d_ff {cfg.d_ff} ({cfg.activation}), {n_params:,} parameters; "
        f"{cfg.backend} {cfg.dtype}; {cfg.optimizer} lr {cfg.lr:g} ({cfg.schedule}, warm-up "
        f"{cfg.warmup}), label smoothing {cfg.label_smoothing:g}"
    )
    sys.stdout.flush()


def _report_heldout(args: argparse.Namespace, trainer: Any, floor: float) -> dict[str, Any]:
    """Print the held-out examples and metrics of the last step (evaluating it if the loop
    did not) and the last training loss; returns that evaluation."""
    cfg, task, h = trainer.config, trainer.task, trainer.history
    final = trainer.last_eval
    if final is None or final["step"] != trainer.step:
        final = {"step": trainer.step, **trainer.evaluate()}
    how = "greedy decoding" if trainer.lm is None else "greedy continuation after '='"
    print(f"held-out examples ({how}), {final['n']} in all:")
    for src, tgt, got in final["examples"][: max(args.samples, 0)]:
        mark = "ok" if got == tgt else f"WRONG, expected {tgt!r}"
        print(f"  {src!r} -> {got!r}  {mark}")
    print(
        f"held-out: loss {final['loss']:.4f}, token accuracy {final['token_accuracy']:.4f}, "
        f"exact match {final['exact_match']:.4f}"
    )
    by_length = _by_length(task, final["examples"], trainer.train_pairs)
    print(f"held-out exact match by source length: {by_length}")
    if h.loss:
        print(
            f"training loss at the last step {h.loss[-1]:.4f} (label smoothing "
            f"{cfg.label_smoothing:g} puts its minimum at {floor:.4f})"
        )
    return final


def _save_results(
    trainer: Any, out_dir: Path, ckpt_path: Path, floor: float
) -> tuple[Path, Path] | None:
    """Write the checkpoint, the loss curve and the history; ``(checkpoint, curve)``, or None
    when Ctrl-C cut the writing short (said on stderr)."""
    from ..plots import plot_loss_curve

    ckpt = None
    try:
        ckpt = trainer.save(ckpt_path)
        plot = plot_loss_curve(
            trainer.history,
            out_dir / "loss.png",
            title=f"nanotf train --model {trainer.config.model} --task {trainer.config.task}",
            floor=floor,
        )
        write_text_atomic(out_dir / "history.json", strict_json(trainer.history.to_dict()) + "\n")
    except KeyboardInterrupt:
        state = f"saved {ckpt}" if ckpt else f"nothing saved, {ckpt_path} is as it was"
        print(f"\ninterrupted while writing the results: {state}", file=sys.stderr)
        return None
    return ckpt, plot


def _summary(
    trainer: Any,
    final: dict[str, Any],
    floor: float,
    start_step: int,
    timing: dict[str, float],
    ckpt: Path,
    plot: Path,
) -> dict[str, Any]:
    """The run's numbers, for the last line (JSON). Tokens per second count the training
    steps of this invocation only (evaluations excluded)."""
    cfg, h = trainer.config, trainer.history
    n_new = trainer.step - start_step
    new_tokens = sum(h.tokens[len(h.tokens) - n_new :]) if n_new else 0
    step_seconds = 0.0
    if n_new and h.seconds:
        step_seconds = h.seconds[-1] - (h.seconds[-n_new - 1] if len(h.seconds) > n_new else 0.0)
    return {
        "model": cfg.model,
        "task": cfg.task,
        "steps": trainer.step,
        **timing,
        "final_loss": round(h.loss[-1], 6) if h.loss else None,
        "loss_floor": round(floor, 6),
        "heldout_loss": round(final["loss"], 6),
        "token_accuracy": round(final["token_accuracy"], 6),
        "exact_match": round(final["exact_match"], 6),
        "heldout_examples": final["n"],
        "tokens_per_second": round(new_tokens / step_seconds) if step_seconds > 0 else None,
        "parameters": trainer.model.num_parameters(),
        "backend": cfg.backend,
        "seed": cfg.seed,
        "checkpoint": str(ckpt),
        "loss_curve": str(plot),
    }


def _save_after_interrupt(trainer: Any, path: Path) -> int:
    """Ctrl-C: save the last completed step (the trainer holds nothing else) and say how to
    go on. A second Ctrl-C during the save leaves the file as it was (the write is atomic)."""
    try:
        saved = trainer.save(path)
    except KeyboardInterrupt:
        print(
            f"\ninterrupted again while saving: nothing saved, {path} is as it was", file=sys.stderr
        )
        return 130
    print(
        f"\ninterrupted at step {trainer.step}; saved {saved} (continue with: python -m "
        f"nanotf train --resume {saved} --out {saved.parent})",
        file=sys.stderr,
    )
    return 130
