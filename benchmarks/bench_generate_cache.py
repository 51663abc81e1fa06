"""GPT-2 generation (``GPT2LMHeadModel.generate``) with and without the key/value cache.

Same random GPT-2, same prompts, same thread count, greedy, no EOS, so every row writes exactly
``--tokens`` tokens. Without the cache (``use_cache=False``) every step reruns the model on the
whole prefix (O(t) positions a step); with it, one position a step. Prints the CPU, seconds per
run (best of ``--repeats``), the ratio uncached / cached, and checks that both give the same ids.

    python benchmarks/bench_generate_cache.py --threads 2 --tokens 200 --batch 8
"""

from __future__ import annotations

import argparse
import os
import sys

from _timing import best_of, cpu_model  # beside this script


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=200, help="new tokens per row")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--n-embd", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--vocab", type=int, default=100)
    ap.add_argument("--prompt-len", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)  # before NumPy loads its BLAS

    import numpy as np

    import nanotf
    from nanotf.models import GPT2LMHeadModel
    from nanotf.models.gpt2 import GPT2Config

    nanotf.manual_seed(0)
    e = args.n_embd
    positions = max(216, args.prompt_len + args.tokens)
    model = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=args.vocab, n_positions=positions, n_embd=e, n_layer=args.layers,
            n_head=4, n_inner=None, activation_function="gelu_new", resid_pdrop=0.1,
            embd_pdrop=0.1, attn_pdrop=0.1, layer_norm_epsilon=1e-5, initializer_range=0.02,
        )
    )
    rng = np.random.default_rng(0)
    ids = rng.integers(0, args.vocab, size=(args.batch, args.prompt_len))

    print(f"cpu: {cpu_model()}")
    print(
        f"threads={args.threads} python={sys.version.split()[0]} numpy={np.__version__} "
        f"dtype={nanotf.default_dtype()}"
    )
    print(
        f"model: GPT-2 n_embd={e}, 4 heads, {args.layers} layers, n_inner={4 * e}, "
        f"vocab={args.vocab}, n_positions={positions}; batch={args.batch}, prompt length="
        f"{args.prompt_len}, {args.tokens} new tokens, greedy\n"
    )
    print("| generation | no cache (s) | cache (s) | speed-up | same ids |")
    print("| --- | ---: | ---: | ---: | --- |")

    def run(cache: bool):
        return model.generate(ids, args.tokens, use_cache=cache)

    t_ref, ref = best_of(lambda: run(False), args.repeats)
    t_cache, got = best_of(lambda: run(True), args.repeats)
    same = ref.shape == got.shape and bool((ref == got).all())
    print(f"| greedy | {t_ref:.3f} | {t_cache:.3f} | {t_ref / t_cache:.1f}x | {same} |")


if __name__ == "__main__":
    main()
