"""One training step of the seq2seq Transformer: nanotf (NumPy) vs PyTorch eager, in one run.

A step is forward, cross-entropy with label smoothing, backward and an Adam update, on the same
model shape, batch and thread count, as in real training: dropout 0.1, and padding, so every
attention is masked (each source and target row has a random length between half the preset's
length and all of it, then pad id 0; both frameworks mask the padded keys and ignore the padded
targets). Each framework runs in its own subprocess so that its peak resident memory can be read
on its own; the two take turns for ``--rounds`` rounds and each keeps its best (on a shared
machine, a busy spell then slows one round, not one framework). Also measured in its own
subprocess: the machine's float32 GEMM peak (2048³, NumPy's BLAS and torch's, the higher
counts), against which the step's matmul FLOPs (counted from the shapes) give each framework's
share of the peak. nanotf runs twice: ``Transformer.forward`` computes every position, padding
included, as torch does; ``Transformer.forward_unpadded`` the same step with the padding left out
of everything but attention (the same loss and gradients without dropout; its dropout draws its
masks on the real tokens alone), whose share of the peak counts the same FLOPs as the padded
step's, so it says how much sooner the same step is done. Prints the CPU and a Markdown table
with seconds per step, share of peak, peak memory and the ratios nanotf / PyTorch.

    python benchmarks/bench_train_step.py --preset small --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from _timing import cpu_model

PRESETS = {
    # vocab, d_model, heads, layers (each side), d_ff, batch, length
    "tiny": dict(vocab=64, d_model=64, heads=4, layers=2, d_ff=128, batch=64, length=12),
    "small": dict(vocab=1000, d_model=256, heads=4, layers=3, d_ff=1024, batch=16, length=32),
    "base": dict(vocab=8000, d_model=512, heads=8, layers=6, d_ff=2048, batch=16, length=64),
}


# the rows of the table: each runs in its own subprocess, in turns
FRAMEWORKS = {
    "torch": "PyTorch eager",
    "nanotf": "nanotf (NumPy), `forward`",
    "nanotf-unpadded": "nanotf (NumPy), `forward_unpadded`",
}


def _batch(p: dict, seed: int = 0):
    """Source (B, L) and target (B, L + 1) ids, each row padded (id 0) after a random length."""
    import numpy as np

    rng = np.random.default_rng(seed)
    b, n = p["batch"], p["length"]
    src = rng.integers(3, p["vocab"], size=(b, n))
    tgt = rng.integers(3, p["vocab"], size=(b, n + 1))
    for ids in (src, tgt):
        lengths = rng.integers(n // 2, ids.shape[1] + 1, size=b)  # real tokens per row
        ids[np.arange(ids.shape[1]) >= lengths[:, None]] = 0
    return src, tgt


def step_flops(p: dict) -> float:
    """The matmul FLOPs of one step: forward (linear layers and attention's two batched
    matmuls, padding included: both frameworks compute it) times 3 (the backward's two matmuls
    per forward one). LayerNorm, softmax, dropout, the loss and Adam are not counted."""
    d, ff, n_layers = p["d_model"], p["d_ff"], p["layers"]
    s = t = p["length"]
    tokens = p["batch"] * s  # source and target tokens alike (L each)
    encoder = 4 * d * d + 2 * d * ff + 2 * s * d  # MACs per source token and layer
    decoder = (4 * d * d + 2 * t * d) + (2 * d * d + 2 * s * d) + 2 * d * ff  # per target token
    cross_kv = 2 * d * d  # the cross-attention's keys and values, per source token
    output = d * p["vocab"]  # per target token
    macs = tokens * (n_layers * (encoder + decoder + cross_kv) + output)
    return 3 * 2 * macs


def run_nanotf(p: dict, steps: int, unpadded: bool = False) -> list[float]:
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
    src, tgt = _batch(p)  # the model masks pad id 0 (its default pad_id)
    forward = model.forward_unpadded if unpadded else model.forward
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        opt.zero_grad()
        logits = forward(src, tgt[:, :-1])
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
    n = p["length"]
    causal = torch.ones(n, n, dtype=torch.bool).triu(1)  # True = may not attend, as the pad masks
    src_pad, tgt_pad = src == 0, tgt[:, :-1] == 0  # True where padded
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        opt.zero_grad()
        h = core(emb_s(src) * d**0.5 + pos, emb_t(tgt[:, :-1]) * d**0.5 + pos, tgt_mask=causal,
                 src_key_padding_mask=src_pad, tgt_key_padding_mask=tgt_pad,
                 memory_key_padding_mask=src_pad)
        logits = out(h)
        loss = nn.functional.cross_entropy(logits.reshape(-1, p["vocab"]),
                                           tgt[:, 1:].reshape(-1), ignore_index=0,
                                           label_smoothing=0.1)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return times


def gemm_peak(threads: int, n: int = 2048, repeats: int = 5) -> dict:
    """GFLOP/s of the best of ``repeats`` float32 n×n×n matmuls, NumPy's BLAS and torch's."""
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    out = {}
    for name, x in (("numpy", a), ("torch", torch.from_numpy(a))):
        x @ x  # warm up
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            x @ x
            best = min(best, time.perf_counter() - t0)
        out[name] = 2 * n**3 / best / 1e9
    return out


def child(framework: str, preset: str, steps: int, threads: int) -> None:
    import resource

    if framework == "peak":
        print(json.dumps(gemm_peak(threads)))
        return
    p = PRESETS[preset]
    if framework == "torch":
        import torch

        torch.set_num_threads(threads)
        times = run_torch(p, steps)
    else:
        times = run_nanotf(p, steps, unpadded=framework == "nanotf-unpadded")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    steady = sorted(times[1:] or times)
    print(json.dumps({"median_s": steady[len(steady) // 2], "peak_mib": peak_mib}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="small")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3, help="turns each framework takes (best kept)")
    ap.add_argument("--child", choices=list(FRAMEWORKS) + ["peak"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.preset, args.steps, args.threads)
        return
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(args.threads)
    def run(fw: str) -> dict:
        out = subprocess.run(
            [sys.executable, __file__, "--child", fw, "--preset", args.preset,
             "--steps", str(args.steps), "--threads", str(args.threads)],
            env=env, check=True, capture_output=True, text=True,
        ).stdout
        return json.loads(out.strip().splitlines()[-1])

    # the frameworks take turns, round after round, and each keeps its best round
    res: dict = {"peak": run("peak")}
    for _ in range(args.rounds):
        for fw in FRAMEWORKS:
            r = run(fw)
            if fw not in res or r["median_s"] < res[fw]["median_s"]:
                res[fw] = r
    p = PRESETS[args.preset]
    flops = step_flops(p)
    peak = max(res["peak"].values())
    print(f"CPU: {cpu_model()}, threads={args.threads}, preset={args.preset} {p}, "
          f"steps={args.steps} (median of the steps after the first; best of {args.rounds} "
          "rounds, taken in turns)")
    print(f"float32 GEMM peak (2048³): NumPy {res['peak']['numpy']:.0f} GFLOP/s, torch "
          f"{res['peak']['torch']:.0f} GFLOP/s; the step's matmuls: {flops / 1e9:.1f} GFLOP, "
          f"{flops / peak / 1e9:.3f} s at the higher peak")
    src, tgt = _batch(p)
    print(f"real tokens: {(src != 0).mean():.0%} of the source positions, "
          f"{(tgt[:, :-1] != 0).mean():.0%} of the target's\n")
    print("| framework | s / step | share of GEMM peak | peak RSS (MiB) | time ratio "
          "| memory ratio |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    t = res["torch"]
    for fw, name in FRAMEWORKS.items():
        r = res[fw]
        share = flops / r["median_s"] / 1e9 / peak
        print(f"| {name} | {r['median_s']:.3f} | {share:.0%} | {r['peak_mib']:.0f} | "
              f"{r['median_s'] / t['median_s']:.2f} | {r['peak_mib'] / t['peak_mib']:.2f} |")


if __name__ == "__main__":
    main()
