"""``Transformer.forward_unpadded``, the training path that leaves the padding out of the work done
token by token, against the reference ``forward`` (nanotf's own) and against the torch model of
tests/models/test_transformer.py, weights and gradients by name; finite differences; dropout;
the strict CuPy stand-in; misuse.

What must hold: the logits at every real target token are the reference's, the padding's are
zeros, the loss and every parameter gradient are the reference's. The token-wise steps multiply
the same rows by the same weights in both paths, so the two agree to the round-off of GEMMs
blocked over another number of rows: tolerances (normwise relative) float64 1e-10, float32 1e-5,
and against torch those of test_transformer.py; a key bias (zero by symmetry) is judged against
the largest gradient's terms (``grad_floor``), as there.
"""

from __future__ import annotations

import numpy as np
import pytest

import nanotf
from nanotf.functional import cross_entropy_backward, cross_entropy_forward, token_packing
from nanotf.gradcheck import gradcheck_module
from nanotf.models import Transformer
from nanotf.nn import DecoderLayer, EncoderLayer, Module, MultiHeadAttention
from nanotf.testing import strict as strict_mod
from tests.conftest import (
    compare_param_grads,
    grad_floor,
    rel_error,
)
from tests.models.test_transformer import (
    BASE,
    GRAD_RTOL,
    GRADCHECK_RTOL,
    OUT_RTOL,
    PAD,
    TINY,
    VARIANTS,
    batch,
    perturb_layer_norms,
    run_on,
    run_torch,
    torch_pair,
)

UNPADDED = "forward_unpadded"  # the method run_on calls
RTOL_SELF = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-10}


def run(model: Transformer, forward, src, tgt_in, tgt_out, smoothing: float = 0.1):
    """``forward`` (the model's ``forward`` or ``forward_unpadded``), the loss, the backward:
    the logits, the loss and every gradient by name."""
    model.zero_grad()
    logits = forward(src, tgt_in)
    loss, cache = cross_entropy_forward(logits, tgt_out, ignore_index=PAD,
                                        label_smoothing=smoothing)
    model.backward(cross_entropy_backward(1.0, cache))
    return logits, loss, {n: p.grad.copy() for n, p in model.named_parameters()}


def assert_same_as_forward(model: Transformer, src, tgt_in, tgt_out, tol: float) -> None:
    want_logits, want_loss, want = run(model, model.forward, src, tgt_in, tgt_out)
    logits, loss, got = run(model, model.forward_unpadded, src, tgt_in, tgt_out)
    real = tgt_in != PAD
    assert logits.shape == want_logits.shape and logits.dtype == want_logits.dtype
    assert rel_error(logits[real], want_logits[real]) <= tol
    np.testing.assert_array_equal(logits[~real], 0.0)  # the padding's logits are zeros
    assert rel_error(loss, want_loss) <= tol
    for name, g in got.items():
        assert g.dtype == want[name].dtype, name
        err = rel_error(g, want[name], grad_floor(name, list(want.values())))
        assert err <= tol, f"d{name}: relative error {err:.3g} > {tol:g}"


@pytest.mark.parametrize("variant", list(VARIANTS.values()), ids=list(VARIANTS))
def test_equals_forward(model_dtype, variant):
    nanotf.manual_seed(1)
    model = Transformer(**{**BASE, **variant}, dropout=0.0)
    perturb_layer_norms(model)
    src, tgt_in, tgt_out = batch({**BASE, **variant})
    assert (src == PAD).any() and (tgt_in == PAD).any()
    assert_same_as_forward(model, src, tgt_in, tgt_out, RTOL_SELF[model_dtype])


@pytest.mark.parametrize("variant", list(VARIANTS.values()), ids=list(VARIANTS))
def test_against_torch(model_dtype, variant):
    """The real tokens' logits, the loss and every torch gradient by name."""
    cfg, model, ref = torch_pair(variant, model_dtype)
    src, tgt_in, tgt_out = batch(cfg)
    logits, loss, _ = run(model, model.forward_unpadded, src, tgt_in, tgt_out)
    ref_logits, ref_loss = run_torch(ref, src, tgt_in, tgt_out, smoothing=0.1)
    real = tgt_in != PAD
    assert rel_error(logits[real], ref_logits[real]) <= OUT_RTOL[model_dtype]
    assert rel_error(loss, ref_loss) <= OUT_RTOL[model_dtype]
    compare_param_grads(model, ref, cfg["d_model"], GRAD_RTOL[model_dtype])


@pytest.mark.parametrize("n_layers", [(0, 2), (2, 0), (1, 1)], ids=["no encoder", "no decoder",
                                                                   "one each"])
def test_stacks_of_any_depth(float64, n_layers):
    nanotf.manual_seed(2)
    model = Transformer(**{**BASE, "n_encoder_layers": n_layers[0],
                           "n_decoder_layers": n_layers[1]}, dropout=0.0)
    src, tgt_in, tgt_out = batch(BASE)
    assert_same_as_forward(model, src, tgt_in, tgt_out, RTOL_SELF[np.dtype(np.float64)])


def test_masks_with_holes_and_an_empty_source(float64):
    """Given masks, real tokens anywhere (not only a prefix), a source row and a target row all
    padding."""
    model = Transformer(**BASE, dropout=0.0)
    src, tgt_in, tgt_out = batch(BASE)
    src_mask, tgt_mask = src != PAD, tgt_in != PAD
    src_mask[0, 2] = False
    src_mask[2] = False  # this row's cross-attention reads no key: zeros, as in forward
    tgt_mask[0, 1] = False
    tgt_mask[1] = False  # a target row all padding: no rows at all for it
    want = model.forward(src, tgt_in, src_mask, tgt_mask)
    got = model.forward_unpadded(src, tgt_in, src_mask, tgt_mask)
    assert rel_error(got[tgt_mask], want[tgt_mask]) <= RTOL_SELF[np.dtype(np.float64)]
    np.testing.assert_array_equal(got[~tgt_mask], 0.0)


def test_with_dropout_and_no_padding_the_draws_are_forwards():
    """Without padding the rows are the padded positions in the same order, so dropout draws
    the same masks as ``forward``'s: the same step."""
    nanotf.manual_seed(4)
    model = Transformer(**BASE, dropout=0.3)
    g = np.random.default_rng(5)
    src = g.integers(1, BASE["src_vocab_size"], (3, 7))
    tgt = g.integers(1, BASE["tgt_vocab_size"], (3, 7))
    tgt_in, tgt_out = tgt[:, :-1], tgt[:, 1:]
    nanotf.manual_seed(9)
    want_logits, want_loss, want = run(model, model.forward, src, tgt_in, tgt_out)
    nanotf.manual_seed(9)
    logits, loss, got = run(model, model.forward_unpadded, src, tgt_in, tgt_out)
    tol = RTOL_SELF[np.dtype(np.float32)]
    assert rel_error(logits, want_logits) <= tol and rel_error(loss, want_loss) <= tol
    for name, grad in got.items():
        assert rel_error(grad, want[name], grad_floor(name, list(want.values()))) <= tol, name
    model.eval()  # and the masks really were drawn: eval differs
    assert not np.allclose(model.forward_unpadded(src, tgt_in), logits)


class Unpadded(Module):
    """``forward_unpadded`` as a module's forward, nanotf's generator reseeded each time (so
    training-mode dropout is a fixed function), for finite differences."""

    def __init__(self, model: Transformer, seed: int) -> None:
        super().__init__()
        self.model, self.seed = model, seed

    def forward(self, *args):
        nanotf.manual_seed(self.seed)
        return self.model.forward_unpadded(*args)

    def backward(self, dout):
        return self.model.backward(dout)


@pytest.mark.parametrize(
    "variant",
    [dict(dropout=0.2, tie_output=True),
     dict(dropout=0.0, norm_first=True, share_embeddings=True, tie_output=True)],
    ids=["post-LN tied dropout", "pre-LN shared+tied"],
)
def test_finite_differences(float64, variant):
    nanotf.manual_seed(3)
    model = Transformer(**TINY, **variant)
    src, tgt_in, _ = batch(TINY, b=2, s=5, t=4, seed=4)
    real = tgt_in != PAD
    dlogits = np.random.default_rng(6).standard_normal((*tgt_in.shape, TINY["tgt_vocab_size"]))
    dlogits[~real] = 0.0  # the padding's logits are constant zeros: no gradient through them
    errors = gradcheck_module(Unpadded(model, 11), src, tgt_in, dout=dlogits,
                              max_per_tensor=3, seed=5)
    assert set(errors) == {f"model.{n}" for n, _ in model.named_parameters()}
    worst = max(errors, key=errors.get)
    assert errors[worst] <= GRADCHECK_RTOL, f"{worst}: {errors[worst]:.3g}"


@pytest.mark.parametrize("device", ["strict", pytest.param("cupy", marks=pytest.mark.gpu)])
def test_runs_on_another_device(device):
    """On the strict CuPy stand-in (no silent host conversion, as CuPy would refuse): NumPy's
    bits; on CuPy: NumPy's results to the float32 tolerances."""
    if device == "cupy":
        import cupy  # type: ignore[import-not-found]

        to_device = cupy.asarray
    else:
        to_device = strict_mod.asarray
    nanotf.manual_seed(0)
    model = Transformer(**BASE, dropout=0.0, norm_first=True, tie_output=True)
    src, tgt_in, _ = batch(BASE)
    dlogits = np.random.default_rng(0).standard_normal((*tgt_in.shape, 13)).astype(np.float32)
    want_logits, want_grads = run_on(model, np.asarray, src, tgt_in, dlogits, UNPADDED)
    got_logits, got_grads = run_on(model, to_device, src, tgt_in, dlogits, UNPADDED)
    f32 = np.dtype(np.float32)
    exact = device == "strict"
    assert rel_error(got_logits, want_logits) <= (0.0 if exact else OUT_RTOL[f32])
    for name, g in want_grads.items():
        err = rel_error(got_grads[name], g, grad_floor(name, list(want_grads.values())))
        assert err <= (0.0 if exact else GRAD_RTOL[f32]), name


def test_the_attention_maps_and_the_memory_rows_are_saved():
    nanotf.manual_seed(0)
    model = Transformer(**BASE, dropout=0.0)
    src, tgt_in, _ = batch(BASE)
    want = model.forward(src, tgt_in) is not None and model.intermediate(
        "decoder.layers.0.cross_attn.probs").copy()
    model.forward_unpadded(src, tgt_in)
    got = model.intermediate("decoder.layers.0.cross_attn.probs")
    real = np.broadcast_to((tgt_in != PAD)[:, None, :, None], got.shape)
    assert got.shape == want.shape and rel_error(got[real], want[real]) <= 1e-5
    assert model.intermediate("memory").shape == (int((src != PAD).sum()), BASE["d_model"])


# -- misuse ----------------------------------------------------------------------------------------


def test_packed_modules_refuse_what_does_not_fit():
    att = MultiHeadAttention(8, 2)
    mask = np.array([[True, True, False], [True, False, False]])
    packing = token_packing(mask)
    rows = np.zeros((3, 8), np.float32)
    with pytest.raises(ValueError, match=r"pass key_padding_mask=None"):
        att.forward(rows, key_padding_mask=mask, packing=packing)
    with pytest.raises(ValueError, match=r"x must have shape \(real tokens, 8\) = \(3, 8\), "
                                         r"got \(4, 8\)"):
        att.forward(np.zeros((4, 8), np.float32), packing=packing)
    with pytest.raises(ValueError, match=r"needs the memory's packing \(memory_packing=\)"):
        att.forward(rows, rows, packing=packing)
    with pytest.raises(ValueError, match=r"memory_packing needs the queries' packing"):
        att.forward(rows, rows, memory_packing=packing)
    with pytest.raises(TypeError, match=r"the packing of x must be a TokenPacking"):
        att.forward(rows, packing=mask)
    other = token_packing(np.ones((3, 2), bool))
    with pytest.raises(ValueError, match=r"batch sizes differ: the queries' packing has 2 "
                                         r"sequences, the memory's 3"):
        att.forward(rows, np.zeros((6, 8), np.float32), packing=packing, memory_packing=other)
    with pytest.raises(ValueError, match=r"EncoderLayer\(d_model=8\): x must have 2 dimensions "
                                         r"\(real tokens, 8\), got shape \(2, 3, 8\)"):
        EncoderLayer(8, 2, 16).forward(np.zeros((2, 3, 8), np.float32), None, packing)
    with pytest.raises(ValueError, match=r"needs both packings, .* got only packing"):
        DecoderLayer(8, 2, 16).forward(rows, rows, packing=packing)


def test_backward_after_forward_unpadded_takes_the_padded_gradient():
    model = Transformer(**BASE, dropout=0.0)
    src, tgt_in, _ = batch(BASE)
    logits = model.forward_unpadded(src, tgt_in)
    with pytest.raises(ValueError, match=r"dlogits must have the logits' shape"):
        model.backward(np.zeros((logits.shape[0] * logits.shape[1], 13), np.float32))
    with pytest.raises(ValueError, match=r"must have shape \(batch, length\)"):
        model.forward_unpadded(src, tgt_in, tgt_mask=np.ones(3, bool))
