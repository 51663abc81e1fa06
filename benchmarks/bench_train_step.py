"""One training step of the seq2seq Transformer: nanotf (NumPy) vs PyTorch eager, in one run.

A step is forward, cross-entropy with label smoothing, backward and an Adam update, on the same
model shape, batch and thread count. Each framework runs in its own subprocess so that its peak
resident memory can be read on its own. Prints a Markdown table with seconds per step, peak
memory and the ratios nanotf / PyTorch.

    python benchmarks/bench_train_step.py --preset small --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

PRESETS = {
    # vocab, d_model, heads, layers (each side), d_ff, batch, length
    "tiny": dict(vocab=64, d_model=64, heads=4, layers=2, d_ff=128, batch=64, length=12),
    "small": dict(vocab=1000, d_model=256, heads=4, layers=3, d_ff=1024, batch=16, length=32),
    "base": dict(vocab=8000, d_model=512, heads=8, layers=6, d_ff=2048, batch=16, length=64),
}


def _batch(p: dict, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    src = rng.integers(3, p["vocab"], size=(p["batch"], p["length"]))
    tgt = rng.integers(3, p["vocab"], size=(p["batch"], p["length"] + 1))
    return src, tgt


def run_nanotf(p: dict, steps: int) -> list[float]:
    import numpy as np

    import nanotf
    from nanotf.functional import cross_entropy_backward, cross_entropy_forward
    from nanotf.models import Transformer
    from nanotf.optim import Adam

    nanotf.manual_seed(0)
    model = Transformer(p["vocab"], p["vocab"], d_model=p["d_model"], n_heads=p["heads"],
                        n_encoder_layers=p["layers"], n_decoder_layers=p["layers"],
                        d_ff=p["d_ff"], dropout=0.1)
    opt = Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-9)
    src, tgt = _batch(p)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        opt.zero_grad()
        logits = model.forward(src, tgt[:, :-1])
        loss, cache = cross_entropy_forward(logits, tgt[:, 1:], ignore_index=0, label_smoothing=0.1)
        model.backward(cross_entropy_backward(np.float32(1.0), cache))
        opt.step()
        times.append(time.perf_counter() - t0)
    return times


def run_torch(p: dict, steps: int) -> list[float]:
    import torch
    from torch import nn

    torch.manual_seed(0)
    d = p["d_model"]
    emb_s, emb_t = nn.Embedding(p["vocab"], d), nn.Embedding(p["vocab"], d)
    core = nn.Transformer(d, p["heads"], p["layers"], p["layers"], p["d_ff"], dropout=0.1,
                          batch_first=True)
    out = nn.Linear(d, p["vocab"])
    params = [*emb_s.parameters(), *emb_t.parameters(), *core.parameters(), *out.parameters()]
    opt = torch.optim.Adam(params, lr=1e-4, betas=(0.9, 0.98), eps=1e-9)
    pos = torch.zeros(p["length"], d)  # a constant table costs the same as the sinusoid
    src, tgt = (torch.as_tensor(a) for a in _batch(p))
    causal = nn.Transformer.generate_square_subsequent_mask(p["length"])
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        opt.zero_grad()
        h = core(emb_s(src) * d**0.5 + pos, emb_t(tgt[:, :-1]) * d**0.5 + pos, tgt_mask=causal)
        logits = out(h)
        loss = nn.functional.cross_entropy(logits.reshape(-1, p["vocab"]),
                                           tgt[:, 1:].reshape(-1), ignore_index=0,
                                           label_smoothing=0.1)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return times


def child(framework: str, preset: str, steps: int, threads: int) -> None:
    import resource

    p = PRESETS[preset]
    if framework == "torch":
        import torch

        torch.set_num_threads(threads)
        times = run_torch(p, steps)
    else:
        times = run_nanotf(p, steps)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    steady = sorted(times[1:] or times)
    print(json.dumps({"median_s": steady[len(steady) // 2], "peak_mib": peak_mib}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="small")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", choices=["nanotf", "torch"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.preset, args.steps, args.threads)
        return
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(args.threads)
    res = {}
    for fw in ("torch", "nanotf"):
        out = subprocess.run(
            [sys.executable, __file__, "--child", fw, "--preset", args.preset,
             "--steps", str(args.steps), "--threads", str(args.threads)],
            env=env, check=True, capture_output=True, text=True,
        ).stdout
        res[fw] = json.loads(out.strip().splitlines()[-1])
    print(f"preset={args.preset} {PRESETS[args.preset]} threads={args.threads} "
          f"steps={args.steps} (median of steps after the first)\n")
    print("| framework | s / step | peak RSS (MiB) | time ratio | memory ratio |")
    print("| --- | ---: | ---: | ---: | ---: |")
    t, n = res["torch"], res["nanotf"]
    print(f"| PyTorch eager | {t['median_s']:.3f} | {t['peak_mib']:.0f} | 1.00 | 1.00 |")
    print(f"| nanotf (NumPy) | {n['median_s']:.3f} | {n['peak_mib']:.0f} | "
          f"{n['median_s'] / t['median_s']:.2f} | {n['peak_mib'] / t['peak_mib']:.2f} |")


if __name__ == "__main__":
    main()
