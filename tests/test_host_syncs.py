"""Host syncs out of the hot path: what a training step, a forward and decoding cost on the strict
CPU stand-in for CuPy, counted by ``nanotf.testing.strict.count_syncs``.

An *implicit* sync (``float(x)``, ``int(x)``, ``bool(x)``, ``.item()``, ``.tolist()``, a
boolean-mask index, ...) stalls the GPU where nobody sees it; an explicit transfer
(``nanotf.to_numpy``, ``.get()``) is one the code chose. The budgets stated here:

* a training step of the seq2seq Transformer (forward, loss, backward, clipping, Adam):
  ``STEP_IMPLICIT = 0`` implicit syncs (it runs inside ``refuse_syncs``) and
  ``STEP_TRANSFERS = 2`` transfers: the loss (the divergence check needs it) and the gradient
  norm (one transfer for all the gradients' squares); 1 without clipping. The ids are checked
  on the host once per batch; the token count is taken on the host.
* a forward: 0 implicit syncs; inside ``ids_checked_on_host`` 0 transfers.
* greedy decoding and beam search of T tokens: 0 implicit syncs and at most
  ``T + DECODE_SETUP`` transfers (one per step: the chosen ids, or the 2K best candidates of
  each source; ``DECODE_SETUP = 4``: the checks of the source ids in ``encode`` and of the
  first step's tokens, each done twice by the model, once in ``Transformer`` and once in the
  embedding op). GPT-2's ``generate``: at most ``T + 1`` (the prompt's check, then the ids of
  each step).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import nanotf
from nanotf import backend as nanotf_backend
from nanotf.checks import ids_checked_on_host
from nanotf.decode import beam_search, greedy_decode
from nanotf.functional import cross_entropy_backward, cross_entropy_forward
from nanotf.models import GPT2LMHeadModel
from nanotf.models.gpt2 import GPT2Config
from nanotf.nn import Parameter
from nanotf.optim import LRScheduler, clip_grad_norm
from nanotf.testing import strict as strict_mod
from nanotf.testing.strict import StrictArray, count_syncs, refuse_syncs
from nanotf.train import TrainConfig, Trainer, lr_schedule, make_optimizer

from .conftest import to_strict

STEP_IMPLICIT = 0
STEP_TRANSFERS = 2  # the loss and the gradient norm
DECODE_SETUP = 4  # id checks of the source and of the first step's tokens


def tiny(**overrides: Any) -> TrainConfig:
    """tests/test_train.py's tiny run, with clipping on."""
    base: dict[str, Any] = dict(
        steps=20, batch_size=8, d_model=16, n_heads=2, n_layers=1, d_ff=32, dropout=0.1,
        n_train=64, n_heldout=16, eval_every=10, eval_batch_size=16, warmup=5, lr=3e-3,
        clip_norm=1.0,
    )
    base.update(overrides)
    return TrainConfig(**base)


def on_strict(trainer: Trainer, monkeypatch: Any) -> Trainer:
    """The trainer's model, optimizer and schedule moved onto the stand-in, and the stand-in
    made the current backend (new arrays and random numbers go there)."""
    trainer.model.to(strict_mod.strict)
    monkeypatch.setitem(nanotf_backend._state, "module", strict_mod.strict)
    monkeypatch.setitem(nanotf_backend._state, "rng", strict_mod.strict.random.default_rng(0))
    trainer.optimizer = make_optimizer(trainer.config, trainer.model)
    trainer.scheduler = LRScheduler(trainer.optimizer, lr_schedule(trainer.config))
    return trainer


@pytest.mark.parametrize("clip", [1.0, None], ids=["clip", "no-clip"])
def test_a_training_step_makes_no_implicit_sync(clip: float | None, monkeypatch: Any) -> None:
    trainer = on_strict(Trainer(tiny(clip_norm=clip), progress=False), monkeypatch)
    assert isinstance(trainer.model.src_embed.weight.data, StrictArray)
    trainer.train_step()  # the optimizer's state is made at the first step
    with count_syncs() as counted, refuse_syncs():
        for _ in range(2):
            loss = trainer.train_step()
    assert counted.implicit == STEP_IMPLICIT, counted.calls
    assert counted.transfers == 2 * (STEP_TRANSFERS if clip else STEP_TRANSFERS - 1)
    assert np.isfinite(loss) and trainer.history.tokens[-1] > 0
    assert isinstance(trainer.model.src_embed.weight.data, StrictArray)


def test_a_gpt_training_step_makes_no_implicit_sync(monkeypatch: Any) -> None:
    """The GPT step (``TrainConfig(model="gpt")``) keeps the same budget."""
    trainer = on_strict(Trainer(tiny(model="gpt"), progress=False), monkeypatch)
    trainer.train_step()
    with count_syncs() as counted, refuse_syncs():
        for _ in range(2):
            loss = trainer.train_step()
    assert counted.implicit == STEP_IMPLICIT, counted.calls
    assert counted.transfers == 2 * STEP_TRANSFERS
    assert np.isfinite(loss) and trainer.history.tokens[-1] > 0
    with count_syncs() as counted, refuse_syncs():
        trainer.evaluate(trainer.heldout_pairs[:4])
    assert counted.implicit == 0, counted.calls


def test_the_strict_step_computes_what_numpy_computes(monkeypatch: Any) -> None:
    """Without dropout (whose generator differs), the steps on the stand-in give NumPy's
    losses, gradient norms and weights bit for bit: moving the syncs changed no number."""
    host = Trainer(tiny(dropout=0.0), progress=False)
    dev = on_strict(Trainer(tiny(dropout=0.0), progress=False), monkeypatch)
    for _ in range(3):
        dev.train_step()
    monkeypatch.setitem(nanotf_backend._state, "module", np)
    for _ in range(3):
        host.train_step()
    assert dev.history.loss == host.history.loss
    assert dev.history.grad_norm == host.history.grad_norm
    assert dev.history.tokens == host.history.tokens
    for name, want in host.model.state_dict().items():
        np.testing.assert_array_equal(nanotf.to_numpy(dev.model.state_dict()[name]), want)


def test_evaluation_makes_no_implicit_sync(monkeypatch: Any) -> None:
    trainer = on_strict(Trainer(tiny(), progress=False), monkeypatch)
    with count_syncs() as counted, refuse_syncs():
        result = trainer.evaluate(trainer.heldout_pairs[:4])
    assert counted.implicit == 0, counted.calls
    assert result["n"] == 4 and 0.0 <= result["exact_match"] <= 1.0


def strict_batch(trainer: Trainer) -> Any:
    return trainer.batch_at(0).to_backend()


def test_a_forward_makes_no_implicit_sync(monkeypatch: Any) -> None:
    trainer = on_strict(Trainer(tiny(), progress=False), monkeypatch)
    model, batch = trainer.model, strict_batch(trainer)
    args = (batch.src, batch.tgt_in, batch.src_mask, batch.tgt_in_mask)
    with count_syncs() as counted, refuse_syncs():
        model.forward(*args)
    assert counted.implicit == 0, counted.calls
    assert counted.transfers > 0  # the id checks, each one explicit transfer
    with count_syncs() as trusted, ids_checked_on_host():
        model.forward(*args)
    assert (trusted.implicit, trusted.transfers) == (0, 0)


def test_device_ids_out_of_range_are_still_refused(monkeypatch: Any) -> None:
    """Outside ``ids_checked_on_host`` a device id check runs (one transfer) and refuses."""
    trainer = on_strict(Trainer(tiny(), progress=False), monkeypatch)
    batch = strict_batch(trainer)
    bad = batch.src.copy()
    bad[0, 0] = trainer.model.src_vocab_size
    with count_syncs() as counted, pytest.raises(IndexError, match=r"source ids must lie in"):
        trainer.model.forward(bad, batch.tgt_in)
    assert (counted.implicit, counted.transfers) == (0, 1)


def test_the_loss_counts_on_the_device(monkeypatch: Any) -> None:
    """The number of real targets stays on the device: no transfer inside
    ``ids_checked_on_host``, two outside (the id range, and the check for no target)."""
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((3, 5, 7)).astype(np.float32)
    targets = rng.integers(0, 7, (3, 5))
    targets[1, 2:] = 0
    want, want_cache = cross_entropy_forward(logits, targets, ignore_index=0)
    want_d = cross_entropy_backward(1.0, want_cache)
    dev_logits, dev_targets = strict_mod.asarray(logits), strict_mod.asarray(targets)
    with count_syncs() as trusted, refuse_syncs(), ids_checked_on_host():
        loss, cache = cross_entropy_forward(dev_logits, dev_targets, ignore_index=0)
        dlogits = cross_entropy_backward(1.0, cache)
    assert (trusted.implicit, trusted.transfers) == (0, 0)
    assert loss.get().dtype == np.float32
    np.testing.assert_array_equal(loss.get(), want)
    np.testing.assert_array_equal(dlogits.get(), want_d)
    with count_syncs() as checked, refuse_syncs():
        cross_entropy_forward(dev_logits, dev_targets, ignore_index=0)
    assert (checked.implicit, checked.transfers) == (0, 2)
    with pytest.raises(ValueError, match=r"all 15 targets equal ignore_index=0"):
        cross_entropy_forward(dev_logits, strict_mod.asarray(np.zeros((3, 5), np.int64)), 0)


def test_clipping_makes_one_transfer_and_equals_numpy() -> None:
    """Every gradient's squares in a few kernels and one transfer for all of them (not one
    kernel per 65,536-element chunk); the norm is NumPy's accurate one, bit for bit."""
    rng = np.random.default_rng(3)
    shapes = [(300_001,), (7, 5), (65_536,), (3,)]
    grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    host = [Parameter(np.zeros(s, np.float32)) for s in shapes]
    dev = [Parameter(strict_mod.asarray(np.zeros(s, np.float32))) for s in shapes]
    for p, q, g in zip(host, dev, grads, strict=True):
        p.grad[...] = g
        q.grad = strict_mod.asarray(g)
    want = clip_grad_norm(host, 1.0)
    with count_syncs() as counted, refuse_syncs():
        got = clip_grad_norm(dev, 1.0)
    assert (counted.implicit, counted.transfers) == (0, 1)
    assert got == want
    exact = float(np.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in grads)))
    assert got == pytest.approx(exact, rel=1e-7)
    for p, q in zip(host, dev, strict=True):
        np.testing.assert_array_equal(q.grad.get(), p.grad)


def test_clipping_a_device_chunk_that_overflows() -> None:
    """float32 squares that overflow are summed again in float64, as on the host."""
    p = Parameter(strict_mod.asarray(np.zeros(4, np.float32)))
    p.grad = strict_mod.asarray(np.array([3e19, 4e19, 0, 0], np.float32))
    assert clip_grad_norm(p, 1.0) == pytest.approx(5e19, rel=1e-6)
    np.testing.assert_allclose(p.grad.get(), [0.6, 0.8, 0, 0], rtol=1e-6)


def test_the_position_table_is_uploaded_once(monkeypatch: Any) -> None:
    """A model whose parameters moved but whose table did not: the table is moved at the
    first forward and kept, not uploaded again at every forward."""
    trainer = Trainer(tiny(), progress=False)
    model = trainer.model
    to_strict(model)  # the parameters only: the table stays on the host
    assert isinstance(model.pos.table, np.ndarray)
    x = strict_mod.asarray(np.zeros((2, 3, 16), np.float32))
    first = model.pos.table_like(x)
    assert isinstance(first, StrictArray)
    assert model.pos.table_like(x) is first
    np.testing.assert_array_equal(first.get(), model.pos.table)
    wide = strict_mod.asarray(np.zeros((2, 3, 16), np.float64))
    assert model.pos.table_like(wide).dtype == np.float64  # another dtype: a new copy


def test_a_moved_batch_counts_its_tokens_on_the_host(monkeypatch: Any) -> None:
    trainer = Trainer(tiny(), progress=False)
    host = trainer.batch_at(0)
    monkeypatch.setitem(nanotf_backend._state, "module", strict_mod.strict)
    moved = host.to_backend()
    assert isinstance(moved.tgt_mask, StrictArray)
    with count_syncs() as counted:
        n = moved.n_tokens
    assert (counted.implicit, counted.transfers) == (0, 0)
    assert n == int(host.tgt_mask[:, 1:].sum()) == host.n_tokens


@pytest.mark.parametrize("cache", [True, False], ids=["kv-cache", "recompute"])
@pytest.mark.parametrize("width", [1, 3], ids=["greedy", "beam3"])
def test_decoding_moves_a_few_ids_per_token(width: int, cache: bool, monkeypatch: Any) -> None:
    t_max = 12
    numpy_trainer = Trainer(tiny(), progress=False)
    batch = numpy_trainer.batch_at(0)
    model = numpy_trainer.model.eval()

    def decode(src: Any, mask: Any) -> np.ndarray:
        if width == 1:
            return greedy_decode(model, src, mask, t_max, use_cache=cache)
        return beam_search(model, src, mask, width, t_max, use_cache=cache)  # type: ignore

    want = decode(batch.src, batch.src_mask)
    on_strict(numpy_trainer, monkeypatch)
    src, mask = strict_mod.asarray(batch.src), strict_mod.asarray(batch.src_mask)
    with count_syncs() as counted, refuse_syncs():
        got = decode(src, mask)
    assert counted.implicit == 0, counted.calls
    assert counted.transfers <= got.shape[1] + DECODE_SETUP <= t_max + DECODE_SETUP
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("kw", [dict(), dict(do_sample=True, top_k=10, seed=2)])
def test_gpt2_generation_moves_the_ids_once_per_token(kw: dict[str, Any], monkeypatch: Any) -> None:
    nanotf.manual_seed(0)
    config = GPT2Config(
        vocab_size=23, n_positions=32, n_embd=16, n_layer=2, n_head=4, n_inner=None,
        activation_function="gelu_new", resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1,
        layer_norm_epsilon=1e-5, initializer_range=0.2,
    )
    model = GPT2LMHeadModel(config).eval()
    ids = np.random.default_rng(5).integers(0, 23, (3, 4))
    want = model.generate(ids, 10, **kw)
    to_strict(model)
    monkeypatch.setitem(nanotf_backend._state, "module", strict_mod.strict)
    with count_syncs() as counted, refuse_syncs():
        got = model.generate(strict_mod.asarray(ids), 10, **kw)
    assert counted.implicit == 0, counted.calls
    assert counted.transfers <= 10 + 1
    np.testing.assert_array_equal(got.get(), want)
