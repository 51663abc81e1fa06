"""The seq2seq Transformer: against a model built from torch pieces, finite differences, masks,
structure, initialisation and bad input.

The torch reference is built from ``nn.Embedding``, a sinusoidal table written out in torch,
``nn.TransformerEncoder`` / ``nn.TransformerDecoder`` (``norm=None`` for post-LN, a final
LayerNorm for pre-LN) and ``nn.Linear``; the weights are copied in by name, the loss is the
cross-entropy with ``ignore_index=pad`` and label smoothing on both sides, and the logits, the
loss and every parameter gradient are compared by name, for post-LN and pre-LN, shared
embeddings and a tied output layer.

Tolerances are normwise relative errors ``max|ours - torch| / max|torch|`` (see ``OUT_RTOL``,
``GRAD_RTOL``, ``GRADCHECK_RTOL`` below); measured here: float32 logits ~5e-7 and gradients
~4e-6, float64 logits ~1e-15 and gradients ~1e-14.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as tF

import nanotf
from nanotf.functional import cross_entropy_backward, cross_entropy_forward
from nanotf.gradcheck import gradcheck_module
from nanotf.models import Transformer
from nanotf.nn import Module
from tests.conftest import (
    TORCH_ACTIVATION,
    TORCH_DTYPE,
    DropoutReplay,
    compare_param_grads,
    copy_into_torch,
    needs_erf,
    rel_error,
)

# float32: outputs (logits, loss) and gradients; float64: both. Both sides round at 6e-8
# (float32) or 1e-16 (float64) per operation, through a few hundred chained operations.
OUT_RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-9}
GRAD_RTOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-9}
# whole-model finite differences (float64, seven-point stencil in nanotf.gradcheck)
GRADCHECK_RTOL = 1e-8

PAD = 0


# -- the torch reference -----------------------------------------------------------------------


def torch_sinusoids(max_len: int, d_model: int) -> torch.Tensor:
    """PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(pos / 10000^(2i/d))."""
    pos = torch.arange(max_len, dtype=torch.float64)[:, None]
    angle = pos / 10000.0 ** (torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    pe = torch.zeros(max_len, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle)
    return pe


class TorchSeq2Seq(torch.nn.Module):
    """The same model from torch pieces (dropout 0)."""

    def __init__(self, cfg: dict, dtype: torch.dtype) -> None:
        super().__init__()
        c, kw = cfg["d_model"], {"dtype": dtype}
        self.d_model = c
        self.src_embed = torch.nn.Embedding(cfg["src_vocab_size"], c, **kw)
        share = cfg.get("share_embeddings", False)
        self.tgt_embed = (
            self.src_embed if share else torch.nn.Embedding(cfg["tgt_vocab_size"], c, **kw)
        )
        self.register_buffer("pe", torch_sinusoids(cfg.get("max_len", 5000), c).to(dtype))
        norm_first = cfg.get("norm_first", False)
        eps = cfg.get("layer_norm_eps", 1e-5)
        layer = dict(
            d_model=c,
            nhead=cfg["n_heads"],
            dim_feedforward=cfg["d_ff"],
            dropout=0.0,
            activation=TORCH_ACTIVATION[cfg.get("activation", "relu")],
            layer_norm_eps=eps,
            batch_first=True,
            norm_first=norm_first,
            **kw,
        )
        self.encoder = torch.nn.TransformerEncoder(
            torch.nn.TransformerEncoderLayer(**layer),
            cfg["n_encoder_layers"],
            norm=torch.nn.LayerNorm(c, eps=eps, **kw) if norm_first else None,
            enable_nested_tensor=False,
        )
        self.decoder = torch.nn.TransformerDecoder(
            torch.nn.TransformerDecoderLayer(**layer),
            cfg["n_decoder_layers"],
            norm=torch.nn.LayerNorm(c, eps=eps, **kw) if norm_first else None,
        )
        self.out_proj = torch.nn.Linear(c, cfg["tgt_vocab_size"], **kw)
        if cfg.get("tie_output", False):
            self.out_proj.weight = self.tgt_embed.weight

    def embed(self, table: torch.nn.Embedding, ids: torch.Tensor) -> torch.Tensor:
        return table(ids) * math.sqrt(self.d_model) + self.pe[: ids.shape[1]]

    def forward(self, src, tgt_in, src_keep, tgt_keep) -> torch.Tensor:
        t = tgt_in.shape[1]
        causal = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)  # True = blocked
        memory = self.encoder(self.embed(self.src_embed, src), src_key_padding_mask=~src_keep)
        h = self.decoder(
            self.embed(self.tgt_embed, tgt_in),
            memory,
            tgt_mask=causal,
            tgt_key_padding_mask=~tgt_keep,
            memory_key_padding_mask=~src_keep,
        )
        return self.out_proj(h)


def perturb_layer_norms(model: Module, seed: int = 0) -> None:
    """γ = 1 and β = 0 at init would hide a γ/β mix-up: move them off."""
    g = np.random.default_rng(seed)
    for name, p in model.named_parameters():
        if ".norm" in "." + name:
            base = 1.0 if name.endswith("weight") else 0.0
            p.data[...] = base + 0.2 * g.standard_normal(p.shape)


def batch(cfg: dict, b: int = 3, s: int = 7, t: int = 6, seed: int = 0):
    """src (B, S), tgt_in and tgt_out (B, T) with right padding of different lengths."""
    g = np.random.default_rng(seed)
    src = g.integers(1, cfg["src_vocab_size"], size=(b, s))
    tgt = g.integers(1, cfg["tgt_vocab_size"], size=(b, t + 1))
    for i, (ls, lt) in enumerate([(s, t + 1), (s - 2, t - 1), (3, 2)][:b]):
        src[i, ls:] = PAD
        tgt[i, lt:] = PAD
    return src, tgt[:, :-1].copy(), tgt[:, 1:].copy()


def run_ours(model: Transformer, src, tgt_in, tgt_out, smoothing: float):
    model.zero_grad()
    logits = model.forward(src, tgt_in)
    loss, cache = cross_entropy_forward(
        logits, tgt_out, ignore_index=PAD, label_smoothing=smoothing
    )
    model.backward(cross_entropy_backward(1.0, cache))
    return logits, loss


def run_torch(ref: TorchSeq2Seq, src, tgt_in, tgt_out, smoothing: float):
    s, ti, to = (torch.from_numpy(a) for a in (src, tgt_in, tgt_out))
    logits = ref(s, ti, s != PAD, ti != PAD)
    loss = tF.cross_entropy(
        logits.reshape(-1, logits.shape[-1]),
        to.reshape(-1),
        ignore_index=PAD,
        label_smoothing=smoothing,
    )
    loss.backward()
    return logits.detach().numpy(), loss.detach().numpy()


BASE = dict(
    src_vocab_size=11,
    tgt_vocab_size=13,
    d_model=16,
    n_heads=4,
    n_encoder_layers=2,
    n_decoder_layers=2,
    d_ff=24,
    max_len=32,
)
VARIANTS = {
    "post-LN relu": dict(),
    "pre-LN relu": dict(norm_first=True),
    "post-LN gelu_new tied": dict(activation="gelu_new", tie_output=True),
    "pre-LN gelu_new shared+tied": dict(
        activation="gelu_new",
        norm_first=True,
        share_embeddings=True,
        tie_output=True,
        tgt_vocab_size=11,
    ),
    "post-LN relu shared": dict(share_embeddings=True, tgt_vocab_size=11, layer_norm_eps=1e-6),
    "post-LN gelu": pytest.param(dict(activation="gelu"), marks=needs_erf),
    "pre-LN gelu tied": pytest.param(
        dict(activation="gelu", norm_first=True, tie_output=True), marks=needs_erf
    ),
}


def torch_pair(variant: dict, dtype) -> tuple[dict, Transformer, TorchSeq2Seq]:
    """The config of ``variant``, our model (dropout 0, LayerNorms moved off their init) and
    the torch model with its weights copied in by name."""
    cfg = {**BASE, **variant}
    nanotf.manual_seed(1)
    model = Transformer(**cfg, dropout=0.0)
    perturb_layer_norms(model)
    ref = TorchSeq2Seq(cfg, TORCH_DTYPE[dtype])
    copy_into_torch(model, ref, cfg["d_model"])
    return cfg, model, ref


@pytest.mark.parametrize("variant", list(VARIANTS.values()), ids=list(VARIANTS))
def test_against_torch(model_dtype, variant):
    cfg, model, ref = torch_pair(variant, model_dtype)
    src, tgt_in, tgt_out = batch(cfg)
    assert (src == PAD).any() and (tgt_in == PAD).any() and (tgt_out == PAD).any()

    logits, loss = run_ours(model, src, tgt_in, tgt_out, smoothing=0.1)
    ref_logits, ref_loss = run_torch(ref, src, tgt_in, tgt_out, smoothing=0.1)
    assert logits.dtype == model_dtype
    out_tol = OUT_RTOL[model_dtype]
    assert rel_error(logits, ref_logits) <= out_tol
    assert rel_error(loss, ref_loss) <= out_tol
    assert all(p.grad.dtype == model_dtype for p in model.parameters())
    # every torch gradient, by name; k_proj.bias (zero by symmetry) against the largest one
    compare_param_grads(model, ref, cfg["d_model"], GRAD_RTOL[model_dtype])


def test_shared_and_tied_gradients_are_sums(float64):
    """A shared table's gradient is the sum of its uses: compare with separate tables."""
    cfg = {**BASE, "tgt_vocab_size": 11}
    nanotf.manual_seed(2)
    tied = Transformer(**cfg, dropout=0.0, share_embeddings=True, tie_output=True)
    free = Transformer(**cfg, dropout=0.0)
    state = dict(tied.state_dict())
    free.load_state_dict(state)  # the tied table goes into all three places
    src, tgt_in, tgt_out = batch(cfg)
    run_ours(tied, src, tgt_in, tgt_out, 0.0)
    run_ours(free, src, tgt_in, tgt_out, 0.0)
    total = free.src_embed.weight.grad + free.tgt_embed.weight.grad + free.out_proj.weight.grad
    assert rel_error(tied.src_embed.weight.grad, total) <= 1e-12
    assert rel_error(tied.out_proj.bias.grad, free.out_proj.bias.grad) <= 1e-12


# -- finite differences on a tiny model -----------------------------------------------------------


TINY = dict(
    src_vocab_size=7,
    tgt_vocab_size=7,
    d_model=8,
    n_heads=2,
    n_encoder_layers=1,
    n_decoder_layers=1,
    d_ff=12,
    activation="gelu_new",
    max_len=16,
)


@pytest.mark.parametrize(
    "variant",
    [
        dict(dropout=0.2, tie_output=True),  # training-mode dropout, replayed
        dict(dropout=0.0, norm_first=True, share_embeddings=True, tie_output=True),
    ],
    ids=["post-LN tied dropout", "pre-LN shared+tied"],
)
def test_finite_differences(float64, variant):
    nanotf.manual_seed(3)
    model = Transformer(**TINY, **variant)
    src, tgt_in, _ = batch(TINY, b=2, s=5, t=4, seed=4)
    seed = 11
    wrapped = DropoutReplay(model, seed)
    errors = gradcheck_module(wrapped, src, tgt_in, max_per_tensor=3, seed=5)
    names = {f"model.{n}" for n, _ in model.named_parameters()}
    assert set(errors) == names  # every parameter checked (ids have no gradient)
    worst = max(errors, key=errors.get)
    assert errors[worst] <= GRADCHECK_RTOL, f"{worst}: {errors[worst]:.3g}"
    if variant["dropout"] > 0:  # the masks really were drawn, and differ from eval mode
        nanotf.manual_seed(seed)
        train = model.forward(src, tgt_in)
        model.eval()
        assert not np.allclose(train, model.forward(src, tgt_in))


# -- behaviour -------------------------------------------------------------------------------------


def small(**kw) -> Transformer:
    nanotf.manual_seed(0)
    return Transformer(**{**BASE, **kw})


def test_encode_decode_make_forward():
    model = small(dropout=0.0)
    src, tgt_in, _ = batch(BASE)
    logits = model.forward(src, tgt_in)
    memory = model.encode(src)
    assert memory.shape == (*src.shape, BASE["d_model"])
    np.testing.assert_array_equal(model.decode(tgt_in, memory, src != PAD), logits)
    # without the source mask the cross-attention also reads the padding: different logits
    assert not np.allclose(model.decode(tgt_in, memory), logits)
    # explicit masks equal to the default ones
    np.testing.assert_array_equal(model.forward(src, tgt_in, src != PAD, tgt_in != PAD), logits)


def test_padding_and_causality(float64):
    """More padding changes no real position's logits; a later target token changes no earlier
    position's logits (the decoder is causal)."""
    model = small(dropout=0.0, norm_first=True)
    src, tgt_in, _ = batch(BASE)
    logits = model.forward(src, tgt_in)
    more = model.forward(np.pad(src, ((0, 0), (0, 4))), np.pad(tgt_in, ((0, 0), (0, 3))))
    real = tgt_in != PAD
    np.testing.assert_allclose(more[:, : tgt_in.shape[1]][real], logits[real], rtol=0, atol=1e-12)
    changed = tgt_in.copy()
    changed[:, 3] = (changed[:, 3] % (BASE["tgt_vocab_size"] - 1)) + 1
    other = model.forward(src, changed, tgt_mask=np.ones_like(real))
    same = model.forward(src, tgt_in, tgt_mask=np.ones_like(real))
    np.testing.assert_array_equal(other[:, :3], same[:, :3])
    assert not np.allclose(other[:, 3:], same[:, 3:])


def test_attention_maps_are_visible():
    model = small(dropout=0.0)
    src, tgt_in, _ = batch(BASE)
    model.forward(src, tgt_in)
    b, s = src.shape
    t, h = tgt_in.shape[1], BASE["n_heads"]
    enc = model.intermediate("encoder.layers.0.self_attn.probs")
    self_ = model.intermediate("decoder.layers.1.self_attn.probs")
    cross = model.intermediate("decoder.layers.0.cross_attn.probs")
    assert enc.shape == (b, h, s, s) and self_.shape == (b, h, t, t) and cross.shape == (b, h, t, s)
    assert (cross[np.broadcast_to((src == PAD)[:, None, None, :], cross.shape)] == 0).all()
    assert (self_[..., np.triu(np.ones((t, t), dtype=bool), 1)] == 0).all()
    np.testing.assert_allclose(cross.sum(-1), 1.0, rtol=1e-5)
    model.backward(np.ones((b, t, BASE["tgt_vocab_size"]), dtype=np.float32))
    assert model.intermediate_grad("encoder.layers.1.self_attn.probs").shape == (b, h, s, s)
    assert model.intermediate_grad("memory").shape == model.intermediate("memory").shape


def test_backward_accumulates(float64):
    model = small(dropout=0.0, tie_output=True)
    src, tgt_in, _ = batch(BASE)
    dlogits = np.random.default_rng(0).normal(size=(*tgt_in.shape, BASE["tgt_vocab_size"]))
    model.forward(src, tgt_in)
    assert model.backward(dlogits) is None
    once = {n: p.grad.copy() for n, p in model.named_parameters()}
    model.forward(src, tgt_in)
    model.backward(dlogits)
    for n, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, 2 * once[n], rtol=1e-12, atol=0, err_msg=n)
    model.zero_grad()
    assert all((p.grad == 0).all() for p in model.parameters())


def test_dropout_train_and_eval():
    model = small(dropout=0.3)
    src, tgt_in, _ = batch(BASE)
    a, b = model.forward(src, tgt_in), model.forward(src, tgt_in)
    assert not np.allclose(a, b)
    model.eval()
    assert not any(m.training for _, m in model.named_modules())
    np.testing.assert_array_equal(model.forward(src, tgt_in), model.forward(src, tgt_in))


# -- structure and initialisation ------------------------------------------------------------------


def test_structure_post_and_pre_ln():
    post, pre = small(), small(norm_first=True)
    post_names = set(post.state_dict())
    pre_names = set(pre.state_dict())
    assert pre_names - post_names == {
        "encoder.norm.weight",
        "encoder.norm.bias",
        "decoder.norm.weight",
        "decoder.norm.bias",
    }
    for name in [
        "src_embed.weight",
        "tgt_embed.weight",
        "out_proj.weight",
        "out_proj.bias",
        "encoder.layers.1.self_attn.q_proj.weight",
        "encoder.layers.0.ff.linear1.weight",
        "decoder.layers.1.cross_attn.v_proj.bias",
        "decoder.layers.0.norm3.weight",
    ]:
        assert name in post_names
    assert len(post.encoder.layers) == 2 and len(post.decoder.layers) == 2
    assert post.pos.max_len == BASE["max_len"]
    assert post.out_proj.weight.shape == (BASE["tgt_vocab_size"], BASE["d_model"])


def test_shared_and_tied_structure():
    model = small(share_embeddings=True, tie_output=True, tgt_vocab_size=11)
    assert model.src_embed is model.tgt_embed
    assert model.out_proj.weight is model.tgt_embed.weight
    assert model.out_proj.bias is not None
    names = [n for n, _ in model.named_parameters()]
    assert "src_embed.weight" in names
    assert "tgt_embed.weight" not in names and "out_proj.weight" not in names
    state = model.state_dict()
    assert state["src_embed.weight"] is state["tgt_embed.weight"] is state["out_proj.weight"]
    untied = small()
    assert len(names) == len(list(untied.named_parameters())) - 2


def test_xavier_init_and_seed():
    model = small()
    for name, p in model.named_parameters():
        if p.data.ndim > 1:
            bound = math.sqrt(6.0 / sum(p.shape))
            assert np.abs(p.data).max() <= bound, name
            assert 0.8 < np.abs(p.data).max() / bound, name
            if p.data.size > 200:  # U(-a, a) has variance a²/3
                assert abs(p.data.std() / (bound / math.sqrt(3)) - 1) < 0.15, name
    again = small()
    for (n, p), (_, q) in zip(model.named_parameters(), again.named_parameters(), strict=True):
        np.testing.assert_array_equal(p.data, q.data, err_msg=n)
    norm = model.encoder.layers[0].norm1
    assert (norm.weight.data == 1).all() and (norm.bias.data == 0).all()


def test_tied_matrix_initialised_once():
    """Drawing the tied table twice would change it (and every matrix drawn after it)."""
    tied, free = small(tie_output=True), small()
    for name, p in tied.named_parameters():
        np.testing.assert_array_equal(p.data, free.state_dict()[name], err_msg=name)


def test_float32_by_default():
    model = small(dropout=0.0)
    src, tgt_in, _ = batch(BASE)
    logits = model.forward(src, tgt_in)
    assert logits.dtype == np.float32
    model.backward(np.ones_like(logits))
    assert all(p.grad.dtype == np.float32 for p in model.parameters())


# -- bad input -------------------------------------------------------------------------------------


@pytest.fixture
def model_and_batch():
    model = small(dropout=0.0)
    src, tgt_in, _ = batch(BASE)
    return model, src, tgt_in


def test_batch_sizes_differ(model_and_batch):
    model, src, tgt_in = model_and_batch
    with pytest.raises(ValueError, match=r"batch sizes differ.*3.*2"):
        model.forward(src, tgt_in[:2])
    memory = model.encode(src)
    with pytest.raises(ValueError, match=r"memory must have shape"):
        model.decode(tgt_in[:2], memory)


def test_too_long_for_position_table(model_and_batch):
    model, src, tgt_in = model_and_batch
    long = np.ones((3, 33), dtype=np.int64)
    with pytest.raises(ValueError, match=r"source length 33 .*max_len=32"):
        model.forward(long, tgt_in)
    with pytest.raises(ValueError, match=r"target length 33 .*max_len=32"):
        model.forward(src, long)
    model.forward(long[:, :32], long[:, :32])  # exactly max_len is fine


def test_masks_of_wrong_shape(model_and_batch):
    model, src, tgt_in = model_and_batch
    with pytest.raises(ValueError, match=r"src_mask must have shape .*\(3, 7\).*\(3, 6\)"):
        model.forward(src, tgt_in, src_mask=np.ones((3, 6), dtype=bool))
    with pytest.raises(ValueError, match=r"tgt_mask must have shape .*\(3, 6\).*\(6,\)"):
        model.forward(src, tgt_in, tgt_mask=np.ones(6, dtype=bool))
    with pytest.raises(TypeError, match=r"src_mask must be boolean"):
        model.forward(src, tgt_in, src_mask=np.ones((3, 7)))
    memory = model.encode(src)
    with pytest.raises(ValueError, match=r"src_mask must have shape"):
        model.decode(tgt_in, memory, src_mask=np.ones((3, 8), dtype=bool))


def test_ids_out_of_range(model_and_batch):
    model, src, tgt_in = model_and_batch
    bad = src.copy()
    bad[1, 2] = BASE["src_vocab_size"]
    with pytest.raises(IndexError, match=r"source ids must lie in \[0, 11\), got a value of 11"):
        model.forward(bad, tgt_in)
    bad[1, 2] = -1
    with pytest.raises(IndexError, match=r"source ids .*-1"):
        model.forward(bad, tgt_in)
    bad = tgt_in.copy()
    bad[0, 0] = 13
    with pytest.raises(IndexError, match=r"target ids must lie in \[0, 13\)"):
        model.forward(src, bad)


def test_non_integer_ids(model_and_batch):
    model, src, tgt_in = model_and_batch
    with pytest.raises(TypeError, match=r"source ids must be an integer array, got float64"):
        model.forward(src.astype(np.float64), tgt_in)
    with pytest.raises(TypeError, match=r"target ids must be an integer array"):
        model.forward(src, tgt_in.tolist())
    with pytest.raises(ValueError, match=r"source ids must have shape \(batch, length\)"):
        model.forward(src[0], tgt_in)


def test_bad_configuration():
    with pytest.raises(ValueError, match=r"d_model=10 must be divisible by n_heads=4"):
        Transformer(5, 5, d_model=10, n_heads=4)
    with pytest.raises(ValueError, match=r"src_vocab_size=5 and tgt_vocab_size=6"):
        Transformer(5, 6, d_model=8, n_heads=2, share_embeddings=True)
    with pytest.raises(ValueError, match=r"unknown activation 'swish'"):
        Transformer(5, 5, d_model=8, n_heads=2, activation="swish")


def test_backward_misuse():
    model = small(dropout=0.0)
    with pytest.raises(RuntimeError, match=r"forward .* first"):
        model.backward(np.zeros((3, 6, 13), dtype=np.float32))
    src, tgt_in, _ = batch(BASE)
    model.forward(src, tgt_in)
    with pytest.raises(ValueError, match=r"dlogits must have the logits' shape \(3, 6, 13\)"):
        model.backward(np.zeros((3, 6, 12), dtype=np.float32))


# -- other array backends --------------------------------------------------------------------------


def run_on(model: Transformer, to_device, src, tgt_in, dlogits, method: str = "forward"):
    """Forward (``method``: ``"forward"`` or ``"forward_unpadded"``) and backward with every
    array moved by ``to_device``; host copies back."""
    for p in model.parameters():  # a tied Parameter is moved once, and stays tied
        p.data, p.grad = to_device(p.data), to_device(p.grad)
    model.zero_grad()
    logits = getattr(model, method)(to_device(src), to_device(tgt_in))
    model.backward(to_device(dlogits))
    grads = {n: nanotf.to_numpy(p.grad) for n, p in model.named_parameters()}
    return nanotf.to_numpy(logits), grads


def test_runs_on_the_strict_device_stand_in():
    """No silent host conversion (CuPy would refuse one): results identical to NumPy's."""
    from nanotf.testing import strict

    model = small(
        dropout=0.0, norm_first=True, share_embeddings=True, tie_output=True, tgt_vocab_size=11
    )
    src, tgt_in, _ = batch({**BASE, "tgt_vocab_size": 11})
    dlogits = np.random.default_rng(0).standard_normal((*tgt_in.shape, 11)).astype(np.float32)
    want_logits, want_grads = run_on(model, np.asarray, src, tgt_in, dlogits)
    got_logits, got_grads = run_on(model, strict.asarray, src, tgt_in, dlogits)
    np.testing.assert_array_equal(got_logits, want_logits)
    for name, g in want_grads.items():
        np.testing.assert_array_equal(got_grads[name], g, err_msg=name)


@pytest.mark.gpu
def test_runs_on_cupy():
    import cupy  # type: ignore[import-not-found]

    model = small(dropout=0.0, tie_output=True)
    src, tgt_in, _ = batch(BASE)
    dlogits = np.random.default_rng(0).standard_normal((*tgt_in.shape, 13)).astype(np.float32)
    want_logits, want_grads = run_on(model, np.asarray, src, tgt_in, dlogits)
    got_logits, got_grads = run_on(model, cupy.asarray, src, tgt_in, dlogits)
    assert rel_error(got_logits, want_logits) <= OUT_RTOL[np.dtype(np.float32)]
    for name, g in want_grads.items():
        assert rel_error(got_grads[name], g) <= GRAD_RTOL[np.dtype(np.float32)], name
