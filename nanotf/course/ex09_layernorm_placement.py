"""Notebook 09, "Pre-LN vs post-LN": the learner predicts the decoder's gradient profile under
BERT's N(0, 0.02²) initialisation.

``answer(norm_first) -> ratio``: the predicted ratio ‖∂L/∂W₂‖ of the top decoder layer's FFN
output weights over the bottom one's, at initialisation, with every matrix drawn from
N(0, 0.02²). The checker measures it on a small copy of the notebook's experiment (the 6 + 6
layers, width 64, two seeds: a forward and a backward each, well under a second) and returns
the larger of the two layouts' ``|ln(predicted / measured)|``; a prediction within a factor
e^0.4 ≈ 1.5 passes. Under Xavier's initialisation the post-LN ratio is ~5 and pre-LN's ~0.7; under
N(0, 0.02²) both are ~1 (the branches start tiny, so no LayerNorm rescales the gradient).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from functools import cache

import numpy as np
from threadpoolctl import threadpool_limits

from .grading import WrongAnswer, exercise

STD, D, HEADS, LAYERS, SEEDS = 0.02, 64, 4, 6, (0, 1)


@cache
def measured_ratio(norm_first: bool) -> float:
    """Decoder top / bottom ratio of ‖∂L/∂W₂‖ under N(0, 0.02²), averaged over ``SEEDS``.
    Leaves nanotf's random generator as it found it."""
    from .. import backend, manual_seed
    from ..data import PAD_ID, get_task, make_batch
    from ..functional import cross_entropy_backward, cross_entropy_forward
    from ..models import Transformer
    from ..nn.init import normal_

    task = get_task("reverse", alphabet="abcdefghijklmnopqrstuvwxyz", min_len=8, max_len=16)
    v = len(task.src_vocab)
    gen = backend.rng()
    saved = gen.bit_generator.state if isinstance(gen, np.random.Generator) else None
    norms = []
    limit = threadpool_limits(1, user_api="blas")  # small matrices: one BLAS thread is faster
    try:
        for seed in SEEDS:
            manual_seed(seed)
            model = Transformer(v, v, d_model=D, n_heads=HEADS, n_encoder_layers=LAYERS,
                                n_decoder_layers=LAYERS, d_ff=4 * D, dropout=0.0,
                                norm_first=norm_first, max_len=40)
            for p in model.parameters():
                if p.data.ndim > 1:
                    normal_(p, STD)
            batch = make_batch(task.sample(16, np.random.default_rng(1000 + seed)), task)
            logits = model.forward(batch.src, batch.tgt_in, batch.src_mask, batch.tgt_in_mask)
            _, cache = cross_entropy_forward(logits, batch.tgt_out, ignore_index=PAD_ID)
            model.backward(cross_entropy_backward(1.0, cache))
            params = dict(model.named_parameters())
            norms.append([
                float(np.linalg.norm(backend.to_numpy(
                    params[f"decoder.layers.{layer}.ff.linear2.weight"].grad)))
                for layer in range(LAYERS)
            ])
    finally:
        limit.restore_original_limits()
        if saved is not None:
            backend.rng().bit_generator.state = saved
    mean = np.mean(norms, axis=0)
    return float(mean[-1] / mean[0])


def _as_ratio(value: object, norm_first: bool) -> float:
    what = f"bert_init_ratio({norm_first})"
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(()).item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise WrongAnswer(f"{what} should be a number (a ratio), got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise WrongAnswer(f"{what} should be a positive finite ratio, got {value!r}")
    return value


def _reference(norm_first: bool) -> float:
    return 1.0  # both flat: x + F(x) ≈ x, so no LayerNorm rescales the gradient


def _as_under_xavier(norm_first: bool) -> float:
    return 0.7 if norm_first else 5.0  # the profile measured with Xavier, unchanged


def _small_init_makes_post_ln_worse(norm_first: bool) -> float:
    return 1.0 if norm_first else 20.0


def _pre_ln_grows_instead(norm_first: bool) -> float:
    return 4.0 if norm_first else 1.0  # pre-LN's stream grows, so (wrongly) its gradient too


def _vanishes_at_the_bottom(norm_first: bool) -> float:
    return 100.0  # "tiny weights: nothing reaches the bottom layers"


@exercise(
    "bert_init_ratio",
    notebook=9,
    tol=0.4,  # |ln(predicted / measured)|: within a factor e^0.4 ≈ 1.5
    hint="with N(0, 0.02²) every branch F(x) starts far smaller than x, so x + F(x) ≈ x: "
    "what does a LayerNorm then divide the gradient by, in either layout?",
    reference=_reference,
    mistakes={
        "the Xavier profile, unchanged": _as_under_xavier,
        "small weights make post-LN worse": _small_init_makes_post_ln_worse,
        "pre-LN's gradient grows like its stream": _pre_ln_grows_instead,
        "nothing reaches the bottom layers": _vanishes_at_the_bottom,
    },
)
def check_bert_init_ratio(answer: Callable[[bool], float]) -> float:
    """``answer(norm_first) -> ratio`` for both layouts against the measured ratio: the larger
    ``|ln(predicted / measured)|``."""
    worst = 0.0
    for norm_first in (False, True):
        predicted = _as_ratio(answer(norm_first), norm_first)
        worst = max(worst, abs(math.log(predicted / measured_ratio(norm_first))))
    return worst
