"""Greedy (and beam) decoding of the seq2seq Transformer with and without the key/value cache.

Same random model, same sources, same thread count; ``<eos>`` is made impossible so every row
writes exactly ``--tokens`` tokens. Without the cache every step reruns the decoder on the whole
prefix (O(t) positions a step); with it, one position a step. Prints the CPU, seconds per run
(best of ``--repeats``), the ratio uncached / cached, and checks that both give the same ids.

    python benchmarks/bench_decode_cache.py --threads 2 --tokens 200 --batch 8
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
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2, help="encoder and decoder layers (each)")
    ap.add_argument("--vocab", type=int, default=100)
    ap.add_argument("--src-len", type=int, default=20)
    ap.add_argument("--beam", type=int, default=3, help="also time beam search (0: skip)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)  # before NumPy loads its BLAS

    import numpy as np

    import nanotf
    from nanotf.data import EOS_ID
    from nanotf.decode import beam_search, greedy_decode
    from nanotf.models import Transformer

    nanotf.manual_seed(0)
    d = args.d_model
    model = Transformer(
        args.vocab,
        args.vocab,
        d_model=d,
        n_heads=4,
        n_encoder_layers=args.layers,
        n_decoder_layers=args.layers,
        d_ff=4 * d,
        dropout=0.1,
        max_len=max(args.tokens, args.src_len) + 8,  # the table holds the source and the output
    )
    model.out_proj.bias.data[EOS_ID] = -1e4  # never stop early: every row writes --tokens
    rng = np.random.default_rng(0)
    src = rng.integers(4, args.vocab, size=(args.batch, args.src_len))
    src[1::2, args.src_len // 2 :] = 0  # padding in every other row
    mask = src != 0

    print(f"cpu: {cpu_model()}")
    print(
        f"threads={args.threads} python={sys.version.split()[0]} numpy={np.__version__} "
        f"dtype={nanotf.default_dtype()}"
    )
    print(
        f"model: d_model={d}, 4 heads, {args.layers}+{args.layers} layers, d_ff={4 * d}, "
        f"vocab={args.vocab}; batch={args.batch}, source length={args.src_len}, "
        f"{args.tokens} new tokens\n"
    )
    print("| decoding | no cache (s) | cache (s) | speed-up | same ids |")
    print("| --- | ---: | ---: | ---: | --- |")
    runs = [("greedy", lambda c: greedy_decode(model, src, mask, args.tokens, use_cache=c))]
    if args.beam > 1:
        runs.append(
            (
                f"beam {args.beam}",
                lambda c: beam_search(model, src, mask, args.beam, args.tokens, use_cache=c),
            )
        )
    for name, run in runs:
        t_ref, ref = best_of(lambda run=run: run(False), args.repeats)
        t_cache, got = best_of(lambda run=run: run(True), args.repeats)
        same = ref.shape == got.shape and bool((ref == got).all())
        print(f"| {name} | {t_ref:.3f} | {t_cache:.3f} | {t_ref / t_cache:.1f}x | {same} |")


if __name__ == "__main__":
    main()
