# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Every gradient visible
#
# nanotf has no autograd. Each op is a pair of functions, a forward that returns its output and a
# cache, and a backward that turns the gradient of the output into the gradients of the inputs.
# This notebook follows one op, then one attention layer, then a whole Transformer, and checks
# each backward against finite differences and against PyTorch.

# %%
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import nanotf
from nanotf.functional import layernorm_backward, layernorm_forward
from nanotf.gradcheck import gradcheck, gradcheck_module

rng = np.random.default_rng(0)

# %% [markdown]
# ## One op: LayerNorm
#
# Forward: $\hat x = (x - \mu)/\sqrt{\sigma^2 + \epsilon}$, $y = \gamma \hat x + \beta$.
# Backward, with $g = \partial L/\partial y \cdot \gamma$:
# $\partial L/\partial x = \mathrm{rstd}\,(g - \overline{g} - \hat x\,\overline{g \hat x})$.

# %%
x = rng.normal(size=(2, 4, 8))  # x: (B, T, C), float64 for checking
gamma, beta = rng.normal(size=8), rng.normal(size=8)
out, cache = layernorm_forward(x, gamma, beta, eps=1e-5)
dout = rng.normal(size=out.shape)
dx, dgamma, dbeta = layernorm_backward(dout, cache)

errors = gradcheck(layernorm_forward, layernorm_backward, dict(x=x, gamma=gamma, beta=beta))
print({k: f"{v:.1e}" for k, v in errors.items()})
assert max(errors.values()) < 1e-9

# %% [markdown]
# The same gradients from PyTorch's autograd, for comparison:

# %%
import torch

xt = torch.tensor(x, requires_grad=True)
gt, bt = torch.tensor(gamma, requires_grad=True), torch.tensor(beta, requires_grad=True)
yt = torch.nn.functional.layer_norm(xt, (8,), gt, bt, eps=1e-5)
(yt * torch.tensor(dout)).sum().backward()
print("max |dx - torch|:", np.abs(dx - xt.grad.numpy()).max())
assert np.allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)

# %% [markdown]
# ## A whole model, and the intermediates inside it
#
# After one forward and one backward, every intermediate a module saved, and its gradient, can
# be read by a dotted name: here the attention probabilities of the first decoder layer's
# cross-attention.

# %%
from nanotf.models import Transformer

nanotf.manual_seed(0)
model = Transformer(src_vocab_size=12, tgt_vocab_size=12, d_model=32, n_heads=4,
                    n_encoder_layers=2, n_decoder_layers=2, d_ff=64, dropout=0.0)
src = rng.integers(3, 12, size=(1, 7))
tgt_in = rng.integers(3, 12, size=(1, 6))
logits = model.forward(src, tgt_in)  # (B, T, V)
model.backward(np.ones_like(logits) / logits.size)

probs = model.intermediate("decoder.layers.0.cross_attn.probs")  # (B, H, T, S)
dprobs = model.intermediate_grad("decoder.layers.0.cross_attn.probs")
print("probs", probs.shape, "rows sum to", probs.sum(-1).round(6).ravel()[:4])
print("a few names:", [name for name, _ in model.named_intermediates()][:6])

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
axes[0].imshow(probs[0, 0]); axes[0].set_title("cross-attention, head 0")
axes[1].imshow(dprobs[0, 0], cmap="RdBu"); axes[1].set_title("its gradient")
for ax in axes:
    ax.set_xlabel("source position"); ax.set_ylabel("target position")
fig.tight_layout()

# %% [markdown]
# ## A finite-difference check of a whole (tiny) model in float64

# %%
nanotf.set_default_dtype("float64")
nanotf.manual_seed(1)
tiny = Transformer(src_vocab_size=7, tgt_vocab_size=7, d_model=8, n_heads=2, n_encoder_layers=1,
                   n_decoder_layers=1, d_ff=16, dropout=0.0, activation="gelu_new")
errors = gradcheck_module(tiny, src % 7, tgt_in % 7, max_per_tensor=6)
nanotf.set_default_dtype("float32")
print(f"{len(errors)} parameters checked, largest relative error {max(errors.values()):.1e}")
assert max(errors.values()) < 1e-8
