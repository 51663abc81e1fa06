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
#     budget_s: 30
#     figures: 3
# ---

# %% [markdown]
# # 3 · Attention, masks and 1/√d
#
# **What you learn:** scaled dot-product attention, forward and backward, written out; why the
# scores are divided by $\sqrt d$ (without it the softmax saturates and its gradient vanishes);
# how padding and causal masks work, and why a query that may see no key at all must come out as
# zeros rather than NaN; and why the key projection's bias never gets a gradient. You write the
# attention backward yourself.
#
# **Read first:** notebook 1 (softmax's backward, $\mathrm{d}x = y \odot (\mathrm{dout} -
# \sum_j \mathrm{dout}_j y_j)$) and notebook 2 (why `gradcheck` can be trusted).
#
# **Runs in:** about 10 seconds on a laptop CPU.

# %%
import matplotlib.pyplot as plt
import numpy as np

import nanotf
from nanotf.course import EXERCISES
from nanotf.functional import attention_backward, attention_forward, padding_mask
from nanotf.gradcheck import gradcheck
from nanotf.nn import MultiHeadAttention

plt.rcParams["figure.dpi"] = 90
rng = np.random.default_rng(0)

# %% [markdown]
# ## The forward
#
# Per batch element and head, with queries $Q$ ($T_q \times d$), keys $K$ ($T_k \times d$) and
# values $V$ ($T_k \times d_v$):
#
# $$S = \frac{Q K^\top}{\sqrt d}, \qquad P = \mathrm{softmax}_{\text{rows}}(S), \qquad
# O = P V.$$
#
# Row $i$ of $P$ says how much query $i$ takes from each value. nanotf's `attention_forward(q,
# k, v, mask=None, causal=False, scale=None)` works on arrays of shape $(B, H, T, d)$ and
# returns `out` and a cache; the cache holds $Q, K, V$, the scores $S$ and the probabilities
# $P$ (its fields `scores` and `probs`), so they can be plotted.

# %%
B, H, T, D = 2, 2, 6, 4
q, k, v = (rng.normal(size=(B, H, T, D)) for _ in range(3))  # each (B, H, T, D)
out, cache = attention_forward(q, k, v)
scores, probs = cache.scores, cache.probs  # (B, H, Tq, Tk) each
print("out", out.shape, " probs", probs.shape, " rows of P sum to 1:",
      np.allclose(probs.sum(-1), 1.0))
assert np.allclose(out, probs @ v) and np.allclose(scores, q @ k.swapaxes(-1, -2) / np.sqrt(D))

# %% [markdown]
# ## Why $1/\sqrt d$
#
# Take $q, k \in \mathbb R^d$ with independent entries of mean 0 and variance 1. Then
# $q \cdot k = \sum_{i=1}^d q_i k_i$ is a sum of $d$ independent terms, each of mean 0 and
# variance $\mathbb E[q_i^2]\,\mathbb E[k_i^2] = 1$, so
#
# $$\mathbb E[q\cdot k] = 0, \qquad \mathrm{Var}(q \cdot k) = d.$$
#
# The scores spread out like $\sqrt d$; dividing by $\sqrt d$ brings their variance back to 1 at
# every width. (Xavier-style initialisation keeps the entries of $q$ and $k$ near unit
# variance, so this is the situation at the start of training.)

# %%
widths = [16, 64, 256]
raw = {}
for d in widths:
    qs, ks = rng.normal(size=(10000, d)), rng.normal(size=(10000, d))  # 10000 pairs
    raw[d] = (qs * ks).sum(axis=-1)  # q · k for each pair
    print(f"d = {d:3d}: Var(q·k) = {raw[d].var():6.1f} = {raw[d].var() / d:.3f} d;  "
          f"Var(q·k/√d) = {(raw[d] / np.sqrt(d)).var():.3f}")
    assert abs(raw[d].var() / d - 1) < 0.05

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 3))
for d in widths:
    axes[0].hist(raw[d], bins=80, histtype="step", density=True, label=f"d = {d}")
    axes[1].hist(raw[d] / np.sqrt(d), bins=80, histtype="step", density=True, label=f"d = {d}")
axes[0].set_title("q · k: spread grows like √d"); axes[0].set_xlabel("score")
axes[1].set_title("q · k / √d: the same at every width"); axes[1].set_xlabel("score")
axes[0].legend(fontsize=8); axes[1].legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# ### Without the scale, softmax saturates
#
# With scores of standard deviation $\sqrt d$, the largest score of a row is usually far ahead
# of the second, and $\mathrm{softmax}$ turns the row into nearly a one-hot vector. Its
# entropy $-\sum_j P_j \log P_j$ (at most $\log T_k$, for a uniform row) falls towards 0.
#
# That kills the gradient. The softmax backward is $\mathrm{d}S_{ij} = P_{ij}\,(\mathrm{d}P_{ij}
# - \sum_l \mathrm{d}P_{il} P_{il})$: multiplication by the Jacobian $\mathrm{diag}(p) - pp^\top$,
# which is exactly 0 when $p$ is one-hot. Whatever $\mathrm{d}P$ arrives, almost none of it gets
# through to the scores, and so to $Q$ and $K$. Below, 16 keys, random $\mathrm{d}O$, and widths
# from 4 to 1024; `scale=1.0` switches the $1/\sqrt d$ off. `attention_backward(...,
# grads=dict)` hands back $\mathrm{d}P$ and $\mathrm{d}S$.

# %%
TK = 16  # keys per query
ds = [4, 16, 64, 256, 1024]
stats = {"scaled": [], "unscaled": []}  # per width: median max prob, entropy, |dS| / |dP|
examples = {}
for d in ds:
    qd, kd, vd = (rng.normal(size=(4, 4, TK, d)) for _ in range(3))  # (B, H, T, d)
    doutd = rng.normal(size=(4, 4, TK, d))
    for name, scale in (("scaled", None), ("unscaled", 1.0)):
        o, c = attention_forward(qd, kd, vd, scale=scale)
        p = c.probs  # (B, H, T, TK)
        grads = {}
        attention_backward(doutd, c, grads=grads)
        entropy = -(p * np.log(np.maximum(p, 1e-300))).sum(axis=-1).mean()
        # per row: how much of dP's size survives the softmax's Jacobian
        ratio = np.linalg.norm(grads["scores"], axis=-1) / np.linalg.norm(grads["probs"], axis=-1)
        stats[name].append((np.median(p.max(axis=-1)), entropy, np.median(ratio)))
        if d == 256:
            examples[name] = (p[0, 0], grads["scores"][0, 0])
for name in stats:
    for d, (pmax, ent, ratio) in zip(ds, stats[name], strict=True):
        print(f"{name:8s} d = {d:4d}: median max prob {pmax:.3f}, entropy {ent:.2f}, "
              f"|dS| / |dP| = {ratio:.4f}")

# %%
scaled, unscaled = np.array(stats["scaled"]), np.array(stats["unscaled"])  # (len(ds), 3)
big = ds.index(1024)
print(f"d = 1024 without the scale: median max prob {unscaled[big, 0]:.3f}; "
      f"gradient through the softmax {unscaled[big, 2] / scaled[big, 2]:.0e} × the scaled one")
assert unscaled[big, 0] > 0.95  # saturated: nearly one-hot rows
assert scaled[:, 0].max() < 0.5  # scaled: no width saturates
assert unscaled[big, 2] < 1e-2 * scaled[big, 2]  # the gradient through the softmax vanishes
assert np.ptp(scaled[:, 1]) < 0.2 and unscaled[big, 1] < 0.2  # entropy: flat vs collapsed

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 3))
for name, st, style in (("scaled", scaled, "o-"), ("unscaled", unscaled, "s--")):
    axes[0].semilogx(ds, st[:, 1], style, base=2, label=name)
    axes[1].semilogx(ds, st[:, 2], style, base=2, label=name)
axes[1].set_yscale("log")
axes[0].axhline(np.log(TK), color="gray", lw=0.8, ls=":")
axes[0].text(4, np.log(TK) - 0.25, "log Tk (uniform)", color="gray", fontsize=8)
axes[0].set_xlabel("d"); axes[0].set_ylabel("mean entropy of a row of P")
axes[0].set_title("entropy vs d"); axes[0].legend(fontsize=8)
axes[1].set_xlabel("d"); axes[1].set_ylabel("median over rows of |dS| / |dP|")
axes[1].set_title("how much gradient passes the softmax"); axes[1].legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# One head at $d = 256$: the probabilities, and beside them the gradient they pass to the
# scores. Unscaled, each row is one bright cell, and the gradient is nearly 0 everywhere.

# %%
fig, axes = plt.subplots(2, 2, figsize=(6.5, 6))
for col, name in enumerate(("scaled", "unscaled")):
    p, ds_ = examples[name]
    axes[0, col].imshow(p, cmap="viridis", vmin=0, vmax=1)
    axes[0, col].set_title(f"P, {name}")
    lim = np.abs(examples["scaled"][1]).max()
    axes[1, col].imshow(ds_, cmap="RdBu_r", vmin=-lim, vmax=lim)
    axes[1, col].set_title(f"dS, {name} (same colour scale)")
    for row in (0, 1):
        axes[row, col].set_xlabel("key"); axes[row, col].set_ylabel("query")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## The backward
#
# Run the forward in reverse, one line per step (per batch and head; $\mathrm{d}O$ is `dout`):
#
# $$\begin{aligned}
# O = PV &\;\Rightarrow\; \mathrm{d}V = P^\top \mathrm{d}O, \quad \mathrm{d}P = \mathrm{d}O\,
# V^\top \\
# P = \mathrm{softmax}(S) &\;\Rightarrow\; \mathrm{d}S_{ij} = P_{ij} \Big(\mathrm{d}P_{ij} -
# \textstyle\sum_l \mathrm{d}P_{il} P_{il}\Big) \quad\text{(row by row, notebook 1)} \\
# S = \tfrac{1}{\sqrt d}\, Q K^\top &\;\Rightarrow\; \mathrm{d}Q = \tfrac{1}{\sqrt d}\,
# \mathrm{d}S\, K, \quad \mathrm{d}K = \tfrac{1}{\sqrt d}\, \mathrm{d}S^\top Q
# \end{aligned}$$
#
# The rule for a matrix product $C = AB$ is $\mathrm{d}A = \mathrm{d}C\,B^\top$ and
# $\mathrm{d}B = A^\top \mathrm{d}C$: write down the shapes and there is only one way to fit
# them. nanotf's
# `attention_backward(dout, cache)` is these five lines.

# %%
errs = gradcheck(attention_forward, attention_backward, {"q": q, "k": k, "v": v})
print("no mask:", {name: f"{e:.1e}" for name, e in errs.items()})
assert max(errs.values()) < 1e-9

# %% [markdown]
# ## Masks
#
# A mask says which keys a query **may** attend to (True = attend, as in PyTorch's
# `scaled_dot_product_attention`). Two kinds:
#
# * **padding**: batches hold sequences of different lengths, filled up with a padding token
#   that must get no weight. `padding_mask(keep)` turns a `(B, Tk)` array of "real token" flags
#   into `(B, 1, 1, Tk)`, which broadcasts over heads and queries;
# * **causal**: in a decoder, query $i$ must not see keys $j > i$ (the future). `causal=True`
#   adds the lower-triangular mask.
#
# A masked score is replaced by a very negative number before the softmax, so its
# probability is $e^{-\infty} = 0$, and the other weights of the row still sum to 1. Since
# $P_{ij} = 0$ there, $\mathrm{d}S_{ij} = 0$ too: masked entries get no gradient.

# %%
keep_tokens = np.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])  # (B, Tk): 2nd has 2 pads
mask = padding_mask(keep_tokens)  # (B, 1, 1, Tk)
out_m, cache_m = attention_forward(q, k, v, mask=mask, causal=True)
probs_m = cache_m.probs
print("mask", mask.shape, "| row sums of P for the 2nd sequence, query 5:", probs_m[1, 0, 5].sum())
assert (probs_m[1, :, :, 4:] == 0).all()  # padded keys: exactly 0 weight
assert (np.triu(probs_m[0, 0], k=1) == 0).all()  # no query sees the future
assert np.allclose(probs_m.sum(-1), 1.0)
errs = gradcheck(attention_forward, attention_backward, {"q": q, "k": k, "v": v},
                 forward_kwargs={"mask": mask, "causal": True})
print("padding + causal:", {name: f"{e:.1e}" for name, e in errs.items()})
assert max(errs.values()) < 1e-9

# %% [markdown]
# ### A query that may see nothing
#
# Pad on the *left* (as many decoders do) and add the causal mask: the first two queries may see
# only the first two keys, which are padding. Their rows are **fully masked**. What should come
# out? Three ways of masking:
#
# 1. fill with $-\infty$: the row's max is $-\infty$, and $-\infty - (-\infty)$ is NaN, which then
#    spreads through every later layer and every gradient;
# 2. fill with the most negative float: every score of the row is equal, so the softmax returns a
#    *uniform* row: the query attends to padding and nobody notices;
# 3. nanotf: fill with the most negative float, then multiply $P$ by the mask. A fully masked row
#    is all zeros, its output is 0, and its gradients are 0: nothing is taken from padding.

# %%
left = np.array([[0, 0, 1, 1, 1, 1]])  # (1, Tk): two pads on the left
allowed = padding_mask(left) & np.tril(np.ones((T, T), dtype=bool))  # (1, 1, T, T)
ql, kl, vl = q[:1], k[:1], v[:1]
raw_scores = ql @ kl.swapaxes(-1, -2) / np.sqrt(D)


def naive_softmax(s):
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


with np.errstate(invalid="ignore"):  # -inf - (-inf): NumPy would warn, and return NaN
    p_inf = naive_softmax(np.where(allowed, raw_scores, -np.inf))
p_min = naive_softmax(np.where(allowed, raw_scores, np.finfo(np.float64).min))
out_l, cache_l = attention_forward(ql, kl, vl, mask=padding_mask(left), causal=True)
print("query 0, fill -inf:     ", np.round(p_inf[0, 0, 0], 3))
print("query 0, fill float min:", np.round(p_min[0, 0, 0], 3))
print("query 0, nanotf:        ", np.round(cache_l.probs[0, 0, 0], 3))
dq_l, dk_l, dv_l = attention_backward(rng.normal(size=out_l.shape), cache_l)
assert np.isnan(p_inf[0, 0, 0]).all() and np.allclose(p_min[0, 0, 0], 1 / T)
assert (cache_l.probs[0, :, :2] == 0).all() and (out_l[0, :, :2] == 0).all()  # queries 0, 1
assert all(np.isfinite(g).all() for g in (dq_l, dk_l, dv_l)) and (dq_l[0, :, :2] == 0).all()
assert (dk_l[0, :, :2] == 0).all() and (dv_l[0, :, :2] == 0).all()  # padded keys: no gradient

# %% [markdown]
# ## The key bias gets no gradient
#
# In a layer, $k_j = W_k x_j + b_k$. The bias adds $q_i \cdot b_k / \sqrt d$ to **every** score
# of row $i$, and a softmax does not change when a constant is added to its whole row. So $b_k$
# cannot change the output, and its gradient is 0 — exactly, by symmetry:
#
# $$\frac{\partial L}{\partial b_k} = \sum_j \mathrm{d}k_j = \frac{1}{\sqrt d} \sum_j \sum_i
# \mathrm{d}S_{ij}\, q_i = \frac{1}{\sqrt d}\sum_i q_i \underbrace{\textstyle\sum_j
# \mathrm{d}S_{ij}}_{=\,0} = 0,$$
#
# because each row of a softmax's gradient sums to zero (notebook 1). With masks too: a masked
# entry has $\mathrm{d}S_{ij} = 0$, and a fully masked row is all zeros. In floating point the
# computed gradient is round-off, so we compare it with the size of the other gradients, here in
# `nanotf.nn.MultiHeadAttention` (float64, 4 heads).

# %%
saved_dtype = nanotf.default_dtype()
nanotf.set_default_dtype("float64")  # parameters in float64, for a clean zero
nanotf.manual_seed(0)
mha = MultiHeadAttention(d_model=16, n_heads=4)
x = rng.normal(size=(2, 6, 16))  # x: (B, T, C)
y = mha.forward(x, key_padding_mask=keep_tokens)
mha.backward(rng.normal(size=y.shape))
grads = {name: np.abs(p.grad).max() for name, p in mha.named_parameters()}
largest = max(grads.values())
for name, g in grads.items():
    print(f"{name:16s} max |grad| = {g:.1e}")
print(f"k_proj.bias: {grads['k_proj.bias'] / largest:.0e} of the largest gradient")
assert grads["k_proj.bias"] < 1e-12 * largest
assert min(g for name, g in grads.items() if name != "k_proj.bias") > 1e-3 * largest
nanotf.set_default_dtype(saved_dtype)

# %% [markdown]
# ## Against PyTorch
#
# When PyTorch is installed, compare with `torch.nn.functional.scaled_dot_product_attention`
# and its autograd, in float64, with the padding and causal masks of above.

# %%
try:
    import torch
except ImportError:
    torch = None
if torch is None:
    print("PyTorch is not installed: comparison skipped")
else:
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    full = torch.tensor(mask & np.tril(np.ones((T, T), dtype=bool)))  # (B, 1, T, T)
    to = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, attn_mask=full)
    dout_m = rng.normal(size=out_m.shape)
    (to * torch.tensor(dout_m)).sum().backward()
    ours = attention_backward(dout_m, cache_m)
    diffs = [np.abs(out_m - to.detach().numpy()).max()]
    diffs += [np.abs(g - t.grad.numpy()).max() for g, t in zip(ours, (tq, tk, tv), strict=True)]
    print("largest |nanotf − torch| over out, dq, dk, dv:", f"{max(diffs):.0e}")
    assert max(diffs) < 1e-10

# %% [markdown]
# ## Exercise: the attention backward
#
# Write `my_attention_backward(dout, q, k, v, probs, scale)` that returns `(dq, dk, dv)`, for
# `q: (B, H, Tq, D)`, `k: (B, H, Tk, D)`, `v: (B, H, Tk, Dv)`, `dout: (B, H, Tq, Dv)`, the
# forward's probabilities `probs: (B, H, Tq, Tk)` (already masked: zero where a key is hidden)
# and the scale $1/\sqrt D$. No dropout. Use `@` on the last two axes and `.swapaxes(-1, -2)`
# for the transposes; no loops. The check compares with nanotf's backward on shapes where
# $T_q \ne T_k$, with and without masks (including a fully masked row).

# %%
def my_attention_backward(dout, q, k, v, probs, scale):
    """(dq, dk, dv) of out = softmax(q kᵀ · scale, masked) v."""
    # BEGIN SOLUTION
    dv = probs.swapaxes(-1, -2) @ dout  # (B, H, Tk, Dv)
    dprobs = dout @ v.swapaxes(-1, -2)  # (B, H, Tq, Tk)
    dscores = probs * (dprobs - (dprobs * probs).sum(axis=-1, keepdims=True))
    dq = dscores @ k * scale  # (B, H, Tq, D)
    dk = dscores.swapaxes(-1, -2) @ q * scale  # (B, H, Tk, D)
    return dq, dk, dv
    # END SOLUTION


# %%
EXERCISES["attention_backward"].check(my_attention_backward)

# %% [markdown]
# **Next:** notebook 4, *Positions and embeddings*: attention by itself cannot tell the order of
# its keys; sinusoidal and learned positions tell it, and the embedding lookup's backward adds up
# the gradients of repeated tokens.
