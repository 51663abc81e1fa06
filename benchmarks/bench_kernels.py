"""What the `fast` extra buys, op by op: each op's Numba kernel against its readable reference.

Every op runs twice on the same inputs, once as it dispatches (the kernel, where Numba is
installed) and once inside ``nanotf.functional.reference_only()``; the table gives the best of
``--repeats`` runs of each and the speed-up. Shapes are those of the base Transformer's training
step (batch 16, length 64, width 512, 8 heads, d_ff 2048, vocab 8000), float32.

    python benchmarks/bench_kernels.py --threads 2
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

from _timing import best_of, cpu_model


def cases() -> list[tuple[str, Callable[[], Any]]]:
    """(name, a call of one op) for every op with a CPU kernel, on base-step shapes."""
    import numpy as np

    import nanotf
    from nanotf import functional as F
    from nanotf.counter_rng import CounterGenerator
    from nanotf.nn import Parameter
    from nanotf.optim import Adam

    rng = np.random.default_rng(0)

    def normal(*shape: int) -> Any:
        return rng.standard_normal(shape, dtype=np.float32)

    b, t, c, h, ff, v = 16, 64, 512, 8, 2048, 8000
    hidden, wide = normal(b, t, ff), normal(b, t, c)
    bias_ff, gamma, beta = normal(ff), normal(c), normal(c)
    scores = normal(b, h, t, t)
    keep = np.arange(t)[None, :] <= np.arange(t)[:, None]  # causal: (T, T)
    logits, targets = normal(b, t, v), rng.integers(0, v, (b, t))
    targets[:, -8:] = 0  # padding, ignored
    _, gelu_cache = F.gelu_forward(hidden)
    _, tanh_cache = F.gelu_forward(hidden, "tanh")
    _, relu_cache = F.bias_relu_forward(hidden, bias_ff)
    _, ln_cache = F.layernorm_forward(wide, gamma, beta)
    _, sm_cache = F.masked_softmax_forward(scores, keep, 0.125)
    _, ce_cache = F.cross_entropy_forward(logits, targets, ignore_index=0, label_smoothing=0.1)
    counter = CounterGenerator(0)
    params = [Parameter(normal(ff, c)) for _ in range(8)]  # 8.4M parameters
    for p in params:
        p.grad[...] = normal(ff, c)
    adam = Adam(params, lr=1e-3)
    nanotf.manual_seed(0)
    return [
        ("GELU (erf) forward, 16×64×2048", lambda: F.gelu_forward(hidden)),
        ("GELU (erf) backward", lambda: F.gelu_backward(hidden, gelu_cache)),
        ("GELU (tanh) forward", lambda: F.gelu_forward(hidden, "tanh")),
        ("GELU (tanh) backward", lambda: F.gelu_backward(hidden, tanh_cache)),
        ("bias + GELU (erf) forward", lambda: F.bias_gelu_forward(hidden, bias_ff)),
        ("bias + ReLU forward", lambda: F.bias_relu_forward(hidden, bias_ff)),
        ("bias + ReLU backward", lambda: F.bias_relu_backward(hidden, relu_cache)),
        ("LayerNorm forward, 16×64×512", lambda: F.layernorm_forward(wide, gamma, beta)),
        ("LayerNorm backward", lambda: F.layernorm_backward(wide, ln_cache)),
        ("masked softmax forward, 16×8×64×64", lambda: F.masked_softmax_forward(scores, keep,
                                                                                 0.125)),
        ("masked softmax backward", lambda: F.masked_softmax_backward(scores, sm_cache)),
        ("dropout 0.1, NumPy's generator, 16×64×2048", lambda: F.dropout_forward(hidden, 0.1)),
        ("dropout 0.1, counter generator", lambda: F.dropout_forward(hidden, 0.1, rng=counter)),
        ("cross-entropy (smoothing 0.1) forward, 16×64×8000",
         lambda: F.cross_entropy_forward(logits, targets, ignore_index=0, label_smoothing=0.1)),
        ("cross-entropy backward", lambda: F.cross_entropy_backward(np.float32(1.0), ce_cache)),
        ("Adam step, 8.4M parameters", adam.step),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)  # before NumPy loads its BLAS

    import numpy as np

    from nanotf.functional import fused, reference_only

    print(f"CPU: {cpu_model()}, BLAS threads {args.threads}, kernel threads "
          f"{fused.kernel_threads()}, NumPy {np.__version__}, float32, best of {args.repeats}\n")
    print("| op | reference (ms) | kernel (ms) | speed-up |")
    print("| --- | ---: | ---: | ---: |")
    for name, call in cases():
        call()  # compiles the kernel (or loads it from the cache)
        kernel = best_of(call, args.repeats)[0]
        with reference_only():
            ref = best_of(call, args.repeats)[0]
        print(f"| {name} | {ref * 1e3:.2f} | {kernel * 1e3:.2f} | {ref / kernel:.1f}× |")


if __name__ == "__main__":
    main()
