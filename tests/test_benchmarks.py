"""The CPU benchmarks' own pieces (never their timings): bench_train_step's padded batches and
FLOP count, and every case of bench_kernels runs, with the kernels and with the reference."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))  # the scripts import their _timing module by name

import bench_kernels  # noqa: E402
import bench_train_step  # noqa: E402

from nanotf.functional import reference_only  # noqa: E402


@pytest.mark.parametrize("preset", sorted(bench_train_step.PRESETS))
def test_the_step_batch_pads_each_row_after_at_least_half_of_it(preset):
    p = bench_train_step.PRESETS[preset]
    src, tgt = bench_train_step._batch(p)
    assert src.shape == (p["batch"], p["length"]) and tgt.shape == (p["batch"], p["length"] + 1)
    for ids in (src, tgt):
        real = ids != 0
        lengths = real.sum(axis=1)
        assert (lengths >= p["length"] // 2).all()
        # padding only at the end of a row: the real tokens are a prefix
        assert (real == (np.arange(ids.shape[1]) < lengths[:, None])).all()
        assert (ids[real] >= 3).all() and (ids[real] < p["vocab"]).all()
    assert (src == 0).any() and (tgt == 0).any()  # every preset's batch is padded somewhere


def test_the_step_flop_count_of_a_one_layer_model_by_hand():
    # d 2, ff 3, 1 layer each side, batch 1, length 4, vocab 5; MACs per token, counted one
    # product at a time: encoder Q, K, V, O (4 · 2·2) + FFN (2·3 + 3·2) + scores and mix (4·2 each)
    p = dict(vocab=5, d_model=2, heads=1, layers=1, d_ff=3, batch=1, length=4)
    encoder = 16 + 12 + 16
    # decoder: self Q, K, V, O (16) + scores, mix (16) + cross Q, O (8) + cross scores, mix (16)
    # + FFN (12); the cross keys and values (8) come from each source token; output 2·5
    decoder = 16 + 16 + 8 + 16 + 12
    macs = 4 * (encoder + decoder + 8 + 10)
    assert bench_train_step.step_flops(p) == 3 * 2 * macs


@pytest.mark.parametrize("reference", [False, True])
def test_every_kernel_case_runs(reference):
    cases = bench_kernels.cases()
    assert len(cases) == len({name for name, _ in cases}) >= 15
    for _, call in cases:
        if reference:
            with reference_only():
                call()
        else:
            call()
