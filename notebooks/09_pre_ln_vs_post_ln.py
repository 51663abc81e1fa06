# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: nanotf
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
#   nanotf:
#     budget_s: 45
#     figures: 3
# ---

# %% [markdown]
# # 9 · Pre-LN vs post-LN: where LayerNorm sits decides the gradients at initialisation
#
# **What you learn:** Xiong et al. (2020), *On Layer Normalization in the Transformer
# Architecture*, in one experiment. Take the paper's 6 + 6-layer encoder–decoder, initialise it
# (Xavier, as the paper), compute one real loss on one batch and read, with nanotf's
# hand-written backward, the gradient of every layer's feed-forward output weights. In the
# original *post-LN* layout the gradient grows towards the top of the decoder, the layers next to
# the loss: that is why post-LN Transformers need a learning-rate warm-up. In the *pre-LN* layout
# it is about the same in every layer. The forward pass shows why: post-LN keeps every hidden
# vector at $\|x_l\|^2 = d$, pre-LN lets the residual stream grow layer by layer. Then you
# predict what BERT's small $\mathcal N(0, 0.02^2)$ initialisation does to the picture.
#
# **Read first:** notebook 1 (LayerNorm's backward), notebook 5 (the Transformer and reading any
# gradient by name) and notebook 7 (the warm-up schedule).
#
# **Runs in:** about 10 seconds on a 2-core CPU.

# %%
import matplotlib.pyplot as plt
import numpy as np
from threadpoolctl import threadpool_limits

import nanotf
from nanotf.course import EXERCISES
from nanotf.data import PAD_ID, get_task, make_batch
from nanotf.functional import cross_entropy_backward, cross_entropy_forward
from nanotf.models import Transformer
from nanotf.nn.init import normal_

plt.rcParams["figure.dpi"] = 90
blas = threadpool_limits(1, user_api="blas")  # small matrices: one BLAS thread is faster

# %% [markdown]
# ## The two layouts
#
# A sub-layer $F$ (self-attention, cross-attention or the feed-forward network) sits in a
# residual branch. The paper's Transformer normalises *after* adding the branch, the pre-LN
# variant normalises the branch's *input* and leaves the residual stream alone (and puts one
# final LayerNorm on top of each stack):
#
# $$\text{post-LN:}\quad x \leftarrow \mathrm{LN}\big(x + F(x)\big) \qquad\qquad
# \text{pre-LN:}\quad x \leftarrow x + F\big(\mathrm{LN}(x)\big).$$
#
# In nanotf the choice is one flag, `Transformer(..., norm_first=False)` (post-LN) or
# `norm_first=True` (pre-LN). We keep the paper's depth, 6 encoder and 6 decoder layers, and
# shrink the width from 512 to $d = 128$ (4 heads, $d_{ff} = 4d$) so that it runs in seconds.
# Every matrix is drawn Xavier-uniform, $U(-a, a)$ with $a = \sqrt{6/(n_{in} + n_{out})}$, which
# is nanotf's default and the paper's.
#
# The task is a stand-in for translation: reverse strings of 8–16 letters over a 26-letter
# alphabet; the loss is the plain cross-entropy of the next target token.

# %%
D, HEADS, LAYERS, SEEDS = 128, 4, 6, range(6)
task = get_task("reverse", alphabet="abcdefghijklmnopqrstuvwxyz", min_len=8, max_len=16)
V = len(task.src_vocab)


def build(norm_first, seed, std=None):
    """The 6 + 6-layer model, Xavier-initialised from nanotf's generator (seeded), or with every
    matrix redrawn from N(0, std²) when std is given."""
    nanotf.manual_seed(seed)
    model = Transformer(V, V, d_model=D, n_heads=HEADS, n_encoder_layers=LAYERS,
                        n_decoder_layers=LAYERS, d_ff=4 * D, dropout=0.0,
                        norm_first=norm_first, max_len=40)
    if std is not None:
        for p in model.parameters():
            if p.data.ndim > 1:
                normal_(p, std)
    return model


def batch_for(seed):
    return make_batch(task.sample(32, np.random.default_rng(1000 + seed)), task)


model = build(norm_first=False, seed=0)
print(f"{sum(p.data.size for p in model.parameters()):,} parameters; "
      f"an example pair: {task.sample(1, np.random.default_rng(0))[0]}")

# %% [markdown]
# ## The gradient of each layer's FFN output weights
#
# The feed-forward network of layer $l$ is $\mathrm{FFN}(u) = W_2\,\mathrm{ReLU}(W_1 u + b_1)
# + b_2$, with $W_2$ of shape $(d, d_{ff})$ (`ff.linear2.weight`). Its backward (notebook 5)
# sums, over every token $i$ of the batch, the outer product of the gradient arriving at the
# FFN's output with the hidden activation $h_i$:
#
# $$\frac{\partial L}{\partial W_2} = \sum_i \delta_i\, h_i^\top, \qquad
# \delta_i = \frac{\partial L}{\partial\, \mathrm{FFN}(u_i)}.$$
#
# The hidden activations have the same scale in every layer (each FFN reads a normalised
# input in both layouts), so $\|\partial L/\partial W_2\|_F$ by layer shows how much gradient
# reaches each depth. One forward, one loss, one backward per model, six seeds (each with its
# own batch) averaged.

# %%
def ffn_grad_norms(model, batch):
    """Frobenius norms of ∂L/∂W2 of every encoder and decoder layer's FFN, for one batch."""
    logits = model.forward(batch.src, batch.tgt_in, batch.src_mask, batch.tgt_in_mask)
    loss, cache = cross_entropy_forward(logits, batch.tgt_out, ignore_index=PAD_ID)
    model.zero_grad()
    model.backward(cross_entropy_backward(1.0, cache))
    params = dict(model.named_parameters())
    return {
        stack: np.array([np.linalg.norm(params[f"{stack}.layers.{l}.ff.linear2.weight"].grad)
                         for l in range(LAYERS)])
        for stack in ("encoder", "decoder")
    }


def profile(norm_first, std=None):
    """∂L/∂W2 norms by layer, averaged over the seeds: {"encoder": (6,), "decoder": (6,)}."""
    runs = [ffn_grad_norms(build(norm_first, s, std), batch_for(s)) for s in SEEDS]
    return {k: np.mean([r[k] for r in runs], axis=0) for k in ("encoder", "decoder")}


grads = {"post-LN": profile(norm_first=False), "pre-LN": profile(norm_first=True)}
for name, g in grads.items():
    for stack in ("encoder", "decoder"):
        ratio = g[stack][-1] / g[stack][0]
        print(f"{name:8s} {stack}: " + "  ".join(f"{x:.3f}" for x in g[stack])
              + f"   top / bottom = {ratio:.2f}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(8.6, 3.4), sharey=True)
layers = np.arange(1, LAYERS + 1)
for ax, stack in zip(axes, ("encoder", "decoder"), strict=True):
    for name, style in (("post-LN", "o-"), ("pre-LN", "s--")):
        ax.plot(layers, grads[name][stack], style, label=name)
    ax.set_title(f"{stack}: ‖∂L/∂W₂‖ of the FFN, at initialisation")
    ax.set_xlabel("layer (1 = bottom)")
    ax.set_xticks(layers)
axes[0].set_ylabel("gradient norm (Frobenius)")
axes[1].legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# The paper's Figure 3, in small: in the post-LN decoder the gradient grows layer by layer
# towards the output, several-fold from bottom to top; in the pre-LN decoder it is nearly flat
# (it even falls a little towards the top). A learning rate that suits the bottom layers is then
# several times too large for the top ones; the warm-up keeps the first updates small while
# Adam's statistics settle. (The encoders behave differently here: post-LN's stays flat and
# pre-LN's falls gently towards the top. The growth layer by layer is the decoder's, the stack
# the loss sits on.)

# %%
post, pre = grads["post-LN"]["decoder"], grads["pre-LN"]["decoder"]
post_ratio, pre_ratio = post[-1] / post[0], pre[-1] / pre[0]
print(f"decoder top / bottom: post-LN {post_ratio:.2f}, pre-LN {pre_ratio:.2f}; "
      f"pre-LN's largest / smallest layer {pre.max() / pre.min():.2f}")
assert np.all(np.diff(post) > 0), "post-LN: the gradient should grow with every layer"
assert post_ratio > 3.0
assert 0.5 < pre_ratio < 1.5 and pre.max() / pre.min() < 2.0

# %% [markdown]
# ## Why: the forward pass, and LayerNorm's backward
#
# **Post-LN.** Every layer ends with a LayerNorm ($\gamma = 1$, $\beta = 0$ at
# initialisation), whose output $\hat x$ has mean 0 and variance $\sigma^2/(\sigma^2+\epsilon)$
# over its $d$ features, so
#
# $$\|x_l\|^2 = d\,\frac{\sigma^2}{\sigma^2 + \epsilon} \approx d \quad\text{for every } l.$$
#
# LayerNorm's backward (notebook 1) is
# $\mathrm{d}x = \mathrm{rstd}\,(g - \bar g - \hat x\,\overline{g\odot\hat x})$ with
# $\mathrm{rstd} = 1/\sqrt{\sigma^2+\epsilon}$: it divides the gradient by the standard deviation
# $\sigma$ of its input $x + F(x)$. At Xavier initialisation a branch's output is about as
# large as its input ($\sigma$ between 1.1 and 1.5, measured below), and the gradient on its way
# from the loss down to layer $l$ passes every LayerNorm above it. What the branches' own
# Jacobians give back does not make up for it in the decoder: the lower the layer, the less
# gradient arrives.
#
# **Pre-LN.** The residual stream is never normalised: each layer *adds* its branches,
# $x_{l+1} = x_l + F_{\mathrm{att}}(\cdot) + F_{\mathrm{ffn}}(\cdot)$, and at initialisation the
# additions are roughly uncorrelated with $x_l$, so the squared norm grows by a fixed amount per
# layer. Xiong et al.'s Lemma 1 bounds it: $\mathbb E\|x_{l+1}\|^2 - \mathbb E\|x_l\|^2 \in
# [\tfrac d2, \tfrac{3d}2]$. Every branch's output reaches the final LayerNorm through the
# identity path, unnormalised; that LayerNorm divides by $\|x_L\|/\sqrt d$, the same for all
# layers, so every layer gets about the same gradient, smaller the deeper the stack (the paper:
# $O(d\sqrt{\ln d / L})$ for pre-LN's last layer against $O(d\sqrt{\ln d})$ for post-LN's).
#
# We measure $\|x_l\|^2 / d$ per token in the encoder by running its layers one by one (the
# same modules `model.encode` runs); $l = 0$ is the embedded source
# $\mathrm{embed}\cdot\sqrt d + \mathrm{PE}$.

# %%
def stream_norms(model, batch):
    """‖x_l‖² / d averaged over real source tokens, l = 0 (embeddings) .. 6 (after the last
    layer, before pre-LN's final LayerNorm), and a check against model.encode."""
    mask = batch.src_mask  # (B, S), True for real tokens
    x = model.pos.forward(model.src_embed.forward(batch.src))  # (B, S, C): embed·√d + PE
    norms = [(x**2).sum(axis=-1)[mask].mean() / D]
    for layer in model.encoder.layers:
        x = layer.forward(x, key_padding_mask=mask)  # (B, S, C)
        norms.append((x**2).sum(axis=-1)[mask].mean() / D)
    top = x if model.encoder.norm is None else model.encoder.norm.forward(x)
    assert np.allclose(top, model.encode(batch.src, mask), atol=1e-5)
    return np.array(norms)


xnorm = {
    name: np.mean([stream_norms(build(nf, s), batch_for(s)) for s in SEEDS], axis=0)
    for name, nf in (("post-LN", False), ("pre-LN", True))
}
for name, v in xnorm.items():
    print(f"{name:8s} ‖x_l‖²/d, l = 0..6: " + "  ".join(f"{x:.3f}" for x in v))
growth = np.diff(xnorm["pre-LN"])
print("pre-LN: growth per layer, in units of d:", "  ".join(f"{g:.2f}" for g in growth))
assert np.abs(xnorm["post-LN"][1:] - 1.0).max() < 1e-3
assert np.all((growth >= 0.5) & (growth <= 1.5)), "Lemma 1: each layer adds d/2 .. 3d/2"

# %%
fig, ax = plt.subplots(figsize=(5.4, 3.4))
ls = np.arange(LAYERS + 1)
ax.plot(ls, xnorm["post-LN"], "o-", label="post-LN")
ax.plot(ls, xnorm["pre-LN"], "s--", label="pre-LN")
lo = xnorm["pre-LN"][0] + 0.5 * ls
hi = xnorm["pre-LN"][0] + 1.5 * ls
ax.fill_between(ls, lo, hi, color="tab:orange", alpha=0.12, label="Lemma 1: + d/2 … 3d/2 per layer")
ax.set_xlabel("l (layers passed; 0 = embeddings)"); ax.set_ylabel("‖x_l‖² / d")
ax.set_title("the encoder's hidden vectors, at initialisation")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# How much each post-LN LayerNorm divides by is readable after any forward: every `LayerNorm`
# saves its `rstd`. Here are the decoder's, $\sigma = 1/\mathrm{rstd}$ averaged over real
# tokens, for its three LayerNorms (after self-attention, cross-attention, FFN). Every one of
# them is above 1; the first is largest because it reads the embeddings, whose
# $\|x_0\|^2 \approx 2d$.

# %%
model = build(norm_first=False, seed=0)
b = batch_for(0)
model.forward(b.src, b.tgt_in, b.src_mask, b.tgt_in_mask)
real = np.asarray(b.tgt_in_mask)
for l in range(LAYERS):
    sig = [float((1 / model.intermediate(f"decoder.layers.{l}.norm{k}.rstd")[..., 0])[real].mean())
           for k in (1, 2, 3)]
    print(f"decoder layer {l + 1}: σ = " + ", ".join(f"{s:.2f}" for s in sig))
    assert min(sig) > 1.05  # every post-LN LayerNorm shrinks the gradient passing through it

# %% [markdown]
# ## Exercise: predict the profile under BERT's initialisation
#
# BERT (and Hugging Face's `BertModel`, post-LN) does not use Xavier: it draws every matrix
# from $\mathcal N(0, 0.02^2)$, embeddings included. At $d = 128$ that is far smaller than
# Xavier's $\mathrm{Var} = 2/(n_{in}+n_{out})$: for the FFN, $d \cdot 0.02^2 \approx 0.05$ for
# $W_1$ against Xavier's $0.4$. Think about what a branch's output $F(x)$ then looks like next
# to $x$, what the LayerNorm after $x + F(x)$ divides by, and what happens to the gradient on
# its way down.
#
# Write `bert_init_ratio(norm_first)`: your prediction of the decoder's top / bottom ratio
# $\|\partial L/\partial W_2\|$ of layer 6 over layer 1, for the same 6 + 6 model and batches
# with every matrix drawn from $\mathcal N(0, 0.02^2)$; `norm_first=False` is post-LN, `True`
# pre-LN. A number (no need to run anything). The checker measures it on a smaller copy of
# this experiment (width 64, two seeds) and accepts a prediction within a factor of about 1.5
# ($|\ln(\text{predicted} / \text{measured})| \le 0.4$).

# %%
def bert_init_ratio(norm_first):
    """Predicted decoder top / bottom ratio of ‖∂L/∂W2‖ under N(0, 0.02²) initialisation."""
    # BEGIN SOLUTION
    # The branches start tiny (output variance under 1% of their input's), so x + F(x) ≈ x:
    # every post-LN LayerNorm divides by σ ≈ 1 and the gradient reaches every layer unchanged.
    # Pre-LN's stream hardly grows either. Both profiles are flat.
    return 1.0
    # END SOLUTION


# %%
EXERCISES["bert_init_ratio"].check(bert_init_ratio)

# %% [markdown]
# ## The measurement
#
# The same experiment with every matrix drawn from $\mathcal N(0, 0.02^2)$:

# %%
bert = {"post-LN": profile(norm_first=False, std=0.02),
        "pre-LN": profile(norm_first=True, std=0.02)}
for name, g in bert.items():
    d = g["decoder"]
    print(f"{name:8s} decoder: " + "  ".join(f"{x:.4f}" for x in d)
          + f"   top / bottom = {d[-1] / d[0]:.2f}")

model = build(norm_first=False, seed=0, std=0.02)
model.forward(b.src, b.tgt_in, b.src_mask, b.tgt_in_mask)
sig = [float((1 / model.intermediate(f"decoder.layers.{l}.norm{k}.rstd")[..., 0])[real].mean())
       for l in range(LAYERS) for k in (1, 2, 3)]
print(f"post-LN decoder LayerNorms divide by σ = {sig[0]:.3f} (the first: it reads the "
      f"embeddings), then {min(sig[1:]):.3f} .. {max(sig[1:]):.3f}")

fig, ax = plt.subplots(figsize=(5.4, 3.4))
for name, marker, color in (("post-LN", "o", "tab:blue"), ("pre-LN", "s", "tab:orange")):
    g = grads[name]["decoder"]
    ax.plot(layers, g / g[0], marker=marker, color=color, label=f"{name}, Xavier")
    g = bert[name]["decoder"]
    ax.plot(layers, g / g[0], marker=marker, color=color, ls=":", alpha=0.6,
            label=f"{name}, N(0, 0.02²)")
ax.set_xlabel("decoder layer"); ax.set_ylabel("‖∂L/∂W₂‖ / layer 1's")
ax.set_title("the decoder's profile under two initialisations")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

for name in ("post-LN", "pre-LN"):
    d = bert[name]["decoder"]
    assert 0.75 < d[-1] / d[0] < 1.33 and d.max() / d.min() < 1.2, name
assert all(abs(s - 1) < 0.05 for s in sig[1:])

# %% [markdown]
# Both profiles are flat: with branches whose output has well under 1% of the stream's
# variance, $x + F(x) \approx x$, post-LN's LayerNorms divide by $\sigma \approx 1$ and pass
# the gradient down unchanged. The price is a network that starts out as almost nothing but
# its embeddings and LayerNorms (every layer computes $\approx$ the identity), and BERT still
# trains with a warm-up. The small initialisation hides post-LN's depth problem at step 0; it
# does not remove it once the weights grow.
#
# **Next:** notebook 10, *Inside a pretrained BERT*: a real post-LN model, weights and all.
