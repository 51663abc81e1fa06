"""The layers of nanotf.nn against their torch counterparts, and finite differences.

* Linear, Embedding, LayerNorm, Activation, PositionalEncoding, Dropout as modules.
* MultiHeadAttention against ``torch.nn.MultiheadAttention`` (self, causal, cross, with key
  padding) including the attention weights, and its saved ``scores`` / ``probs`` and their
  gradients against attention written out by hand in torch.
* EncoderLayer and DecoderLayer against ``torch.nn.TransformerEncoderLayer`` /
  ``TransformerDecoderLayer`` (batch_first, dropout 0), post-LN and pre-LN, ReLU, exact GELU
  and the tanh GELU, with key padding masks, the decoder's causal mask and the memory padding
  mask: output, every parameter gradient, the input (and memory) gradients of the fake loss
  ``(out * dout).sum()``, and the attention probabilities.
* gradcheck_module on every block in float64 with a smooth activation.

Tolerances are normwise relative errors ``max|ours - torch| / max|torch|``, see the constants.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as tF

import nanotf
from nanotf.gradcheck import gradcheck_module
from nanotf.nn import (
    Activation,
    DecoderLayer,
    Dropout,
    Embedding,
    EncoderLayer,
    FeedForward,
    LayerNorm,
    Linear,
    Module,
    MultiHeadAttention,
    PositionalEncoding,
)
from tests.conftest import (
    TORCH_ACTIVATION,
    TORCH_DTYPE,
    compare_param_grads,
    copy_into_torch,
    needs_erf,
    rel_error,
)

# float32: outputs and gradients; float64: both
OUT_RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-9}
GRAD_RTOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-9}
# finite differences in float64 (seven-point stencil of nanotf.gradcheck; ~1e-11 is typical)
GRADCHECK_RTOL = 1e-8
# The key projection's bias gets a gradient that is zero in exact arithmetic, so its difference
# is judged against the largest gradient of the layer instead of its own size (ZERO_BY_SYMMETRY
# and rel_error's floor in tests/conftest.py).

B, T, S, C, H, F = 3, 5, 6, 16, 4, 24
ACTIVATIONS = ["relu", pytest.param("gelu", marks=needs_erf), "gelu_new"]


def check(got, want, tol: float, what: str) -> None:
    err = rel_error(got, want)
    assert err <= tol, f"{what}: relative error {err:.3g} > {tol:g}"


def normal(shape, dtype, seed=0, scale=1.0):
    return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(dtype)


def keep_mask(b: int, lengths: list[int], t: int) -> np.ndarray:
    """(B, T) True for the first ``lengths[i]`` positions of row i (right padding)."""
    return np.arange(t)[None, :] < np.array(lengths)[:, None]


def tt(a: np.ndarray, grad: bool = False) -> torch.Tensor:
    return torch.from_numpy(np.array(a)).requires_grad_(grad)


def randomize(module: Module, seed: int = 0) -> None:
    """Move every parameter off its init (γ = 1, β = 0 would hide a γ/β mix-up)."""
    g = np.random.default_rng(seed)
    for name, p in module.named_parameters():
        if ("norm" in name) and name.endswith("weight"):
            p.data[...] = 1.0 + 0.2 * g.standard_normal(p.shape)
        else:
            p.data[...] = g.standard_normal(p.shape) / math.sqrt(p.shape[-1])


def capture_attention(mha: torch.nn.MultiheadAttention) -> list[torch.Tensor]:
    """Make a torch attention inside a layer also return its per-head weights (B, H, Tq, Tk)."""
    seen: list[torch.Tensor] = []
    forward = mha.forward

    def with_weights(*args, **kwargs):
        kwargs.update(need_weights=True, average_attn_weights=False)
        out, weights = forward(*args, **kwargs)
        seen.append(weights.detach())
        return out, weights

    mha.forward = with_weights
    return seen


# -- basic layers --------------------------------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False])
def test_linear(model_dtype, bias):
    lin = Linear(7, 5, bias=bias)
    assert lin.weight.shape == (5, 7) and lin.weight.dtype == model_dtype
    assert (lin.bias is None) == (not bias)
    assert np.abs(lin.weight.data).max() <= 1 / math.sqrt(7)  # PyTorch's U(-1/√in, 1/√in)
    ref = torch.nn.Linear(7, 5, bias=bias, dtype=TORCH_DTYPE[model_dtype])
    copy_into_torch(lin, ref, 0)
    x, dout = normal((2, 3, 7), model_dtype, 1), normal((2, 3, 5), model_dtype, 2)
    out = lin.forward(x)
    dx = lin.backward(dout)
    xt = tt(x, True)
    out_t = ref(xt)
    (out_t * tt(dout)).sum().backward()
    check(out, out_t, OUT_RTOL[model_dtype], "linear out")
    check(dx, xt.grad, GRAD_RTOL[model_dtype], "linear dx")
    compare_param_grads(lin, ref, 0, GRAD_RTOL[model_dtype])


def test_embedding(model_dtype):
    emb = Embedding(6, 4, padding_idx=1)
    assert (emb.weight.data[1] == 0).all()
    ref = torch.nn.Embedding(6, 4, padding_idx=1, dtype=TORCH_DTYPE[model_dtype])
    copy_into_torch(emb, ref, 0)
    ids = np.array([[0, 1, 2, 2], [5, 1, 0, 2]])  # repeated ids add up, padding_idx gets nothing
    dout = normal((2, 4, 4), model_dtype, 3)
    out = emb.forward(ids)
    assert emb.backward(dout) is None
    out_t = ref(torch.from_numpy(ids))
    (out_t * tt(dout)).sum().backward()
    check(out, out_t, OUT_RTOL[model_dtype], "embedding out")
    compare_param_grads(emb, ref, 0, GRAD_RTOL[model_dtype])
    assert (emb.weight.grad[1] == 0).all() and (emb.weight.grad[[3, 4]] == 0).all()
    with pytest.raises(IndexError, match=r"token ids must lie in \[0, 6\), got a value of 6"):
        emb.forward(np.array([6]))


@pytest.mark.parametrize("eps", [1e-5, 1e-12])
def test_layernorm(model_dtype, eps):
    ln = LayerNorm(8, eps=eps)
    randomize(ln)
    ref = torch.nn.LayerNorm(8, eps=eps, dtype=TORCH_DTYPE[model_dtype])
    copy_into_torch(ln, ref, 0)
    x, dout = normal((3, 4, 8), model_dtype, 4, 3.0), normal((3, 4, 8), model_dtype, 5)
    out = ln.forward(x)
    dx = ln.backward(dout)
    xt = tt(x, True)
    out_t = ref(xt)
    (out_t * tt(dout)).sum().backward()
    check(out, out_t, OUT_RTOL[model_dtype], "layernorm out")
    check(dx, xt.grad, GRAD_RTOL[model_dtype], "layernorm dx")
    compare_param_grads(ln, ref, 0, GRAD_RTOL[model_dtype])
    xhat = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps)
    check(ln.intermediate("xhat"), xhat, OUT_RTOL[model_dtype], "layernorm xhat")


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation(model_dtype, name):
    act = Activation(name)
    x = normal((4, 9), model_dtype, 6, 2.0)
    x[np.abs(x) < 1e-3] = 0.5  # stay off ReLU's kink
    dout = normal((4, 9), model_dtype, 7)
    out, dx = act.forward(x), act.backward(dout)
    xt = tt(x, True)
    fn = TORCH_ACTIVATION[name]
    out_t = tF.relu(xt) if name == "relu" else (tF.gelu(xt) if name == "gelu" else fn(xt))
    (out_t * tt(dout)).sum().backward()
    check(out, out_t, OUT_RTOL[model_dtype], f"{name} out")
    check(dx, xt.grad, GRAD_RTOL[model_dtype], f"{name} dx")


def test_unknown_activation():
    with pytest.raises(ValueError, match=r"unknown activation 'swish'.*relu, gelu"):
        Activation("swish")


def test_positional_encoding(model_dtype):
    pe = PositionalEncoding(6, max_len=10)
    x = normal((2, 7, 6), model_dtype, 8)
    out = pe.forward(x)
    pos = np.arange(7)[:, None]
    angle = pos / 10000.0 ** (np.arange(0, 6, 2) / 6)
    table = np.zeros((7, 6))
    table[:, 0::2], table[:, 1::2] = np.sin(angle), np.cos(angle)
    check(out, x * math.sqrt(6) + table, OUT_RTOL[model_dtype], "positional out")
    assert out.dtype == model_dtype
    check(pe.backward(x), x * math.sqrt(6), OUT_RTOL[model_dtype], "positional dx")
    assert PositionalEncoding(6, 10, scale=False).forward(x)[0, 0, 1] == x[0, 0, 1] + 1.0
    with pytest.raises(ValueError, match=r"sequence length 11 exceeds .*max_len=10"):
        pe.forward(normal((1, 11, 6), model_dtype))


def test_dropout(model_dtype):
    drop = Dropout(0.25)
    x = np.ones((200, 50), dtype=model_dtype)
    out = drop.forward(x)
    kept = out != 0
    assert 0.70 < kept.mean() < 0.80
    np.testing.assert_allclose(out[kept], 1 / 0.75, rtol=1e-6)
    dout = normal(x.shape, model_dtype, 9)
    dx = drop.backward(dout)  # the same draw as the forward
    np.testing.assert_array_equal(dx == 0, ~kept | (dout == 0))
    np.testing.assert_allclose(dx[kept], dout[kept] / 0.75, rtol=1e-6)
    drop.eval()
    assert drop.forward(x) is x and drop.backward(dout) is dout
    assert (Dropout(1.0).forward(x) == 0).all()
    assert Dropout(0.0).forward(x) is x
    with pytest.raises(ValueError, match=r"dropout probability must be in \[0, 1\], got 1.5"):
        Dropout(1.5)


# -- multi-head attention ------------------------------------------------------------------------


def torch_mha(ours: MultiHeadAttention, dtype) -> torch.nn.MultiheadAttention:
    ref = torch.nn.MultiheadAttention(C, H, batch_first=True, dtype=TORCH_DTYPE[dtype])
    copy_into_torch(ours, ref, C)
    return ref


@pytest.mark.parametrize("kind", ["self", "causal", "cross"])
def test_attention_against_torch(model_dtype, kind):
    nanotf.manual_seed(0)
    mha = MultiHeadAttention(C, H, causal=kind == "causal")
    randomize(mha)
    ref = torch_mha(mha, model_dtype)
    t_k = S if kind == "cross" else T
    x, mem = normal((B, T, C), model_dtype, 1), normal((B, S, C), model_dtype, 2)
    keep = keep_mask(B, [t_k, t_k - 2, 2], t_k)
    dout = normal((B, T, C), model_dtype, 3)
    out = mha.forward(x, memory=mem if kind == "cross" else None, key_padding_mask=keep)
    grads = mha.backward(dout)

    xt, mt = tt(x, True), tt(mem, True)
    kv = mt if kind == "cross" else xt
    blocked = torch.triu(torch.ones(T, T, dtype=torch.bool), 1) if kind == "causal" else None
    out_t, w_t = ref(
        xt, kv, kv, key_padding_mask=tt(~keep), attn_mask=blocked, average_attn_weights=False
    )
    (out_t * tt(dout)).sum().backward()
    out_tol, grad_tol = OUT_RTOL[model_dtype], GRAD_RTOL[model_dtype]
    check(out, out_t, out_tol, "attention out")
    check(mha.intermediate("probs"), w_t, out_tol, "attention probs")
    compare_param_grads(mha, ref, C, grad_tol)
    dx, dmem = grads  # always AttentionGrads(dx, dmemory)
    if kind == "cross":
        check(dmem, mt.grad, grad_tol, "attention dmemory")
    else:
        assert dmem is None  # self-attention: keys and values came from x
    check(dx, xt.grad, grad_tol, "attention dx")


def test_attention_intermediates_and_their_gradients(model_dtype):
    """``scores`` (scaled, masked) and ``probs`` and their gradients, against attention written
    out by hand in torch with ``retain_grad``."""
    nanotf.manual_seed(0)
    mha = MultiHeadAttention(C, H, causal=True)
    randomize(mha)
    x, dout = normal((B, T, C), model_dtype, 1), normal((B, T, C), model_dtype, 3)
    keep = keep_mask(B, [T, 3, 2], T)
    mha.forward(x, key_padding_mask=keep)
    mha.backward(dout)

    w = {n: tt(p.data, True) for n, p in mha.named_parameters()}
    xt = tt(x)

    def heads(a):  # (B, T, C) -> (B, H, T, D)
        return a.reshape(B, T, H, C // H).transpose(1, 2)

    q, k, v = (heads(xt @ w[f"{n}_proj.weight"].T + w[f"{n}_proj.bias"]) for n in "qkv")
    allowed = torch.from_numpy(keep)[:, None, None, :] & torch.tril(torch.ones(T, T).bool())
    scores = q @ k.transpose(-1, -2) / math.sqrt(C // H)
    scores.retain_grad()
    probs = torch.softmax(scores.masked_fill(~allowed, -math.inf), dim=-1)
    probs.retain_grad()
    merged = (probs @ v).transpose(1, 2).reshape(B, T, C)
    out = merged @ w["out_proj.weight"].T + w["out_proj.bias"]
    (out * tt(dout)).sum().backward()

    out_tol, grad_tol = OUT_RTOL[model_dtype], GRAD_RTOL[model_dtype]
    ok = np.broadcast_to(allowed.numpy(), (B, H, T, T))
    check(mha.intermediate("scores")[ok], scores.detach().numpy()[ok], out_tol, "scores")
    assert (mha.intermediate("scores")[~ok] == np.finfo(model_dtype).min).all()
    check(mha.intermediate("probs"), probs, out_tol, "probs")
    check(mha.intermediate_grad("probs"), probs.grad, grad_tol, "dprobs")
    check(mha.intermediate_grad("scores"), scores.grad, grad_tol, "dscores")
    assert (mha.intermediate_grad("scores")[~ok] == 0).all()


def test_attention_bad_input():
    mha = MultiHeadAttention(C, H)
    x = normal((B, T, C), np.float32)
    with pytest.raises(ValueError, match=r"key padding mask must have shape .*\(3, 5\).*\(3, 4\)"):
        mha.forward(x, key_padding_mask=np.ones((B, T - 1), dtype=bool))
    with pytest.raises(ValueError, match=r"batch sizes differ: queries have 3, memory has 2"):
        mha.forward(x, memory=normal((2, S, C), np.float32))
    with pytest.raises(ValueError, match=r"d_model=10 is not divisible by n_heads=4"):
        MultiHeadAttention(10, 4)


# -- encoder and decoder layers against torch ----------------------------------------------------


def layer_kwargs(activation, norm_first, model_dtype):
    ours = dict(dropout=0.0, activation=activation, norm_first=norm_first, layer_norm_eps=1e-5)
    ref = dict(
        dropout=0.0,
        activation=TORCH_ACTIVATION[activation],
        norm_first=norm_first,
        layer_norm_eps=1e-5,
        batch_first=True,
        dtype=TORCH_DTYPE[model_dtype],
    )
    return ours, ref


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("norm_first", [False, True], ids=["post-LN", "pre-LN"])
def test_encoder_layer_against_torch(model_dtype, norm_first, activation):
    ours_kw, ref_kw = layer_kwargs(activation, norm_first, model_dtype)
    nanotf.manual_seed(0)
    layer = EncoderLayer(C, H, F, **ours_kw)
    randomize(layer)
    ref = torch.nn.TransformerEncoderLayer(C, H, F, **ref_kw)
    copy_into_torch(layer, ref, C)
    weights = capture_attention(ref.self_attn)

    x, dout = normal((B, T, C), model_dtype, 1), normal((B, T, C), model_dtype, 2)
    keep = keep_mask(B, [T, 3, 1], T)
    out = layer.forward(x, key_padding_mask=keep)
    dx = layer.backward(dout)
    xt = tt(x, True)
    out_t = ref(xt, src_key_padding_mask=tt(~keep))
    (out_t * tt(dout)).sum().backward()

    out_tol, grad_tol = OUT_RTOL[model_dtype], GRAD_RTOL[model_dtype]
    assert out.dtype == dx.dtype == model_dtype
    check(out, out_t, out_tol, "encoder out")
    check(dx, xt.grad, grad_tol, "encoder dx")
    compare_param_grads(layer, ref, C, grad_tol)
    check(layer.intermediate("self_attn.probs"), weights[0], out_tol, "encoder probs")
    dprobs = layer.intermediate_grad("self_attn.probs")
    assert dprobs.shape == (B, H, T, T) and dprobs.dtype == model_dtype
    dscores = layer.intermediate_grad("self_attn.scores")
    assert (dscores[np.broadcast_to(~keep[:, None, None, :], dscores.shape)] == 0).all()


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("norm_first", [False, True], ids=["post-LN", "pre-LN"])
def test_decoder_layer_against_torch(model_dtype, norm_first, activation):
    ours_kw, ref_kw = layer_kwargs(activation, norm_first, model_dtype)
    nanotf.manual_seed(0)
    layer = DecoderLayer(C, H, F, **ours_kw)
    randomize(layer)
    ref = torch.nn.TransformerDecoderLayer(C, H, F, **ref_kw)
    copy_into_torch(layer, ref, C)
    self_w, cross_w = capture_attention(ref.self_attn), capture_attention(ref.multihead_attn)

    x, mem = normal((B, T, C), model_dtype, 1), normal((B, S, C), model_dtype, 2)
    dout = normal((B, T, C), model_dtype, 3)
    tgt_keep, src_keep = keep_mask(B, [T, 4, 2], T), keep_mask(B, [S, 2, 4], S)
    out = layer.forward(x, mem, tgt_key_padding_mask=tgt_keep, memory_key_padding_mask=src_keep)
    dx, dmem = layer.backward(dout)
    xt, mt = tt(x, True), tt(mem, True)
    out_t = ref(
        xt,
        mt,
        tgt_mask=torch.triu(torch.ones(T, T, dtype=torch.bool), 1),  # True = may not attend
        tgt_key_padding_mask=tt(~tgt_keep),
        memory_key_padding_mask=tt(~src_keep),
    )
    (out_t * tt(dout)).sum().backward()

    out_tol, grad_tol = OUT_RTOL[model_dtype], GRAD_RTOL[model_dtype]
    check(out, out_t, out_tol, "decoder out")
    check(dx, xt.grad, grad_tol, "decoder dx")
    check(dmem, mt.grad, grad_tol, "decoder dmemory")
    compare_param_grads(layer, ref, C, grad_tol)
    check(layer.intermediate("self_attn.probs"), self_w[0], out_tol, "decoder self probs")
    check(layer.intermediate("cross_attn.probs"), cross_w[0], out_tol, "decoder cross probs")
    assert layer.intermediate_grad("cross_attn.probs").shape == (B, H, T, S)


def test_layers_are_dropout_free_in_eval_mode():
    """With dropout > 0, eval mode gives the same output as dropout 0 (same weights)."""
    nanotf.manual_seed(0)
    noisy = DecoderLayer(C, H, F, dropout=0.5)
    clean = DecoderLayer(C, H, F, dropout=0.0)
    clean.load_state_dict(noisy.state_dict())
    x, mem = normal((B, T, C), np.float32, 1), normal((B, S, C), np.float32, 2)
    assert not np.allclose(noisy.forward(x, mem), clean.forward(x, mem))
    noisy.eval()
    np.testing.assert_array_equal(noisy.forward(x, mem), clean.forward(x, mem))


# -- finite differences (float64, smooth activation) ---------------------------------------------


def assert_gradcheck(errors: dict[str, float]) -> None:
    assert errors
    worst = max(errors, key=errors.get)
    assert errors[worst] <= GRADCHECK_RTOL, f"{worst}: {errors[worst]:.3g} > {GRADCHECK_RTOL:g}"


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-LN", "pre-LN"])
def test_gradcheck_encoder_layer(float64, norm_first):
    nanotf.manual_seed(1)
    layer = EncoderLayer(8, 2, 12, dropout=0.0, activation="gelu_new", norm_first=norm_first)
    randomize(layer, seed=1)
    x = normal((2, 4, 8), np.float64, 1)
    errors = gradcheck_module(layer, x, key_padding_mask=keep_mask(2, [4, 2], 4), max_per_tensor=8)
    assert "input.0" in errors and "self_attn.k_proj.weight" in errors
    assert_gradcheck(errors)


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-LN", "pre-LN"])
def test_gradcheck_decoder_layer(float64, norm_first):
    nanotf.manual_seed(2)
    layer = DecoderLayer(8, 2, 12, dropout=0.0, activation="gelu_new", norm_first=norm_first)
    randomize(layer, seed=2)
    x, mem = normal((2, 4, 8), np.float64, 1), normal((2, 3, 8), np.float64, 2)
    errors = gradcheck_module(
        layer,
        x,
        mem,
        tgt_key_padding_mask=keep_mask(2, [4, 3], 4),
        memory_key_padding_mask=keep_mask(2, [3, 2], 3),
        max_per_tensor=8,
    )
    assert {"input.0", "input.1", "cross_attn.v_proj.weight", "norm3.bias"} <= set(errors)
    assert_gradcheck(errors)


@pytest.mark.parametrize("kind", ["causal", "cross"])
def test_gradcheck_attention(float64, kind):
    nanotf.manual_seed(3)
    mha = MultiHeadAttention(8, 2, causal=kind == "causal")
    randomize(mha, seed=3)
    x, mem = normal((2, 4, 8), np.float64, 1), normal((2, 3, 8), np.float64, 2)
    if kind == "cross":
        errors = gradcheck_module(mha, x, mem, key_padding_mask=keep_mask(2, [3, 1], 3))
        assert "input.1" in errors
    else:
        errors = gradcheck_module(mha, x, key_padding_mask=keep_mask(2, [4, 2], 4))
    assert_gradcheck(errors)


@pytest.mark.parametrize(
    "make",
    [
        lambda: FeedForward(6, 10, activation="gelu_new"),
        lambda: Linear(6, 4),
        lambda: LayerNorm(6),
        lambda: Activation("gelu_new"),
        lambda: PositionalEncoding(6, 10),
    ],
    ids=["feedforward", "linear", "layernorm", "activation", "positional"],
)
def test_gradcheck_small_modules(float64, make):
    module = make()
    randomize(module, seed=4)
    errors = gradcheck_module(module, normal((2, 3, 6), np.float64, 5, 2.0))
    assert "input.0" in errors
    assert_gradcheck(errors)


def test_gradcheck_catches_a_wrong_backward(float64):
    """The check can fail: a LayerNorm whose backward forgets the mean term is caught."""

    class Broken(LayerNorm):
        def backward(self, dout):
            xhat, rstd, gamma = self._cache
            self.accumulate(self.weight, (dout * xhat).reshape(-1, 6).sum(0))
            self.accumulate(self.bias, dout.reshape(-1, 6).sum(0))
            return dout * gamma * rstd  # wrong: the mean and variance terms are missing

    errors = gradcheck_module(Broken(6), normal((2, 3, 6), np.float64, 5))
    assert errors["input.0"] > 1e-2 and errors["weight"] < GRADCHECK_RTOL
