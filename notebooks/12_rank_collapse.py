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
#     figures: 2
# ---

# %% [markdown]
# # 12 · Why residuals: rank collapse
#
# **What you learn:** a stack of self-attention layers *without* skip connections forgets its
# input: after a few layers every token carries the same vector, and the distance from that
# "rank-one" state shrinks *doubly* exponentially with depth (Dong, Cordonnier & Loukas 2021,
# *Attention is not all you need: pure attention loses rank doubly exponentially with depth*).
# You will measure it on nanotf's own `MultiHeadAttention` and `FeedForward` at random
# initialisation, in four stacks of 8 layers, and see that the skip connection is what keeps the
# tokens apart. You write the measure.
#
# **Read first:** notebook 3 (*Attention, masks and 1/√d*) for what one attention layer computes,
# and notebook 9 (*Pre-LN vs post-LN*) for the other thing a residual stream decides.
#
# **Runs in:** about 3 seconds on a laptop CPU.

# %%
import matplotlib.pyplot as plt
import numpy as np
from threadpoolctl import threadpool_limits

import nanotf
from nanotf.course import EXERCISES
from nanotf.nn import FeedForward, MultiHeadAttention

plt.rcParams["figure.dpi"] = 90
# one BLAS thread: on matrices this small a second one gains nothing, and it makes every product
# several times slower when another program holds a core (see nanotf.train.blas_threads)
threadpool_limits(1, user_api="blas")
nanotf.set_default_dtype("float64")  # the collapse goes down to round-off: watch it in float64

# %% [markdown]
# ## Attention averages
#
# One self-attention layer maps the tokens $X \in \mathbb R^{T\times C}$ (one row per token) to
#
# $$\mathrm{SA}(X) = \sum_h P_h\, X W_V^{h} W_O^{h}, \qquad
# P_h = \mathrm{softmax}\!\Big(\frac{X W_Q^h (X W_K^h)^\top}{\sqrt{D}}\Big).$$
#
# Every row of $P_h$ is a probability vector, so every output token is a *weighted average* of
# the value vectors. Averaging pulls points together: if $P_h$ were uniform ($1/T$ everywhere),
# one layer would make all $T$ outputs equal. Stack layers without anything else and the tokens
# are averaged again and again.
#
# ## The measure: distance from rank one
#
# A matrix whose rows are all the same vector $x$ is $\mathbf 1 x^\top$ (rank one). How far is
# $X$ from the nearest one? Minimise $\|X - \mathbf 1 x^\top\|_F^2 = \sum_t \|X_t - x\|^2$ over
# $x$: its gradient $-2\sum_t (X_t - x)$ vanishes at the mean token,
#
# $$x^\star = \frac1T \sum_t X_t, \qquad
# \mathrm{res}(X) = \frac{\|X - \mathbf 1 x^{\star\top}\|_F}{\|X\|_F} \in [0, 1].$$
#
# Dividing by $\|X\|_F$ makes it blind to scale: a layer that merely shrinks its input does not
# count as collapsing it. (Dong et al. use a mixed $\ell_1/\ell_\infty$ norm in their proofs; the
# Frobenius norm tells the same story and is simpler.)
#
# ## Exercise: the residual
#
# Write `my_residual(X)`: given `X` of shape `(T, C)`, return $\mathrm{res}(X)$ as a float. Two
# lines of NumPy. The cell after it grades it on fixed matrices (one of them exactly rank one).

# %%
def my_residual(X):
    """‖X − 1 x*ᵀ‖_F / ‖X‖_F with x* the mean over tokens (rows); X: (T, C)."""
    # BEGIN SOLUTION
    centred = X - X.mean(axis=0, keepdims=True)  # (T, C)
    return float(np.linalg.norm(centred) / np.linalg.norm(X))
    # END SOLUTION


# %%
EXERCISES["rank_residual"].check(my_residual)

# %% [markdown]
# From here on the notebook uses the course's reference answer, so it runs the same whether or
# not your function is done. Two sanity checks: scaling does not change it, and a random matrix
# is far from rank one.

# %%
from nanotf.course.ex12_rank_collapse import relative_residual as residual  # the reference

rng = np.random.default_rng(0)
X0 = rng.normal(size=(8, 32, 64))  # X0: (B, T, C) eight sequences of 32 random tokens
print(f"res of a random (32, 64) matrix: {residual(X0[0]):.3f}")
assert abs(residual(1e-3 * X0[0]) - residual(X0[0])) < 1e-12
assert residual(X0[0]) > 0.9

# %% [markdown]
# ## Four stacks of 8 layers
#
# Each layer is nanotf's `MultiHeadAttention(64, 4)` (query, key, value and output projections)
# and, in two of the variants, a `FeedForward(64, 256)` (ReLU). Weights are nanotf's default
# initialisation (PyTorch's, uniform in $\pm 1/\sqrt{\text{fan-in}}$); no LayerNorm, no training.
#
# * pure attention: $X \leftarrow \mathrm{SA}(X)$;
# * attention + skip: $X \leftarrow X + \mathrm{SA}(X)$;
# * attention + MLP: $X \leftarrow \mathrm{MLP}(\mathrm{SA}(X))$;
# * attention + skip + MLP: $X \leftarrow X + \mathrm{SA}(X)$, then
#   $X \leftarrow X + \mathrm{MLP}(X)$.
#
# Every variant gets the *same* weights (the same seed), so only the wiring differs.

# %%
DEPTH, D_MODEL, N_HEADS, D_FF = 8, 64, 4, 256
VARIANTS = {  # name: (skip, mlp)
    "pure attention": (False, False),
    "attention + skip": (True, False),
    "attention + MLP": (False, True),
    "attention + skip + MLP": (True, True),
}


def make_layers(seed=0, attention_scale=1.0):
    """DEPTH pairs (attention, feed-forward) at nanotf's default init; attention weights times
    ``attention_scale``."""
    nanotf.manual_seed(seed)
    layers = [(MultiHeadAttention(D_MODEL, N_HEADS), FeedForward(D_MODEL, D_FF))
              for _ in range(DEPTH)]
    for attn, _ in layers:
        for _, p in attn.named_parameters():
            p.data *= attention_scale
    return layers


def residual_by_depth(X, layers, skip, mlp):
    """The mean over sequences of res(X) after 0, 1, ..., DEPTH layers; X: (B, T, C)."""
    out = [np.mean([residual(x) for x in X])]
    for attn, ff in layers:
        a = attn.forward(X)  # (B, T, C)
        X = X + a if skip else a
        if mlp:
            m = ff.forward(X)  # (B, T, C), token by token
            X = X + m if skip else m
        out.append(np.mean([residual(x) for x in X]))
    return np.array(out)


def show(value):
    """A residual for printing: anything under 1e-14 is float64 round-off."""
    return f"{value:8.1e}" if value >= 1e-14 else "  <1e-14"


layers = make_layers()
curves = {name: residual_by_depth(X0, layers, *wiring) for name, wiring in VARIANTS.items()}
print("layer:                 " + " ".join(f"{i:8d}" for i in range(DEPTH + 1)))
for name, r in curves.items():
    print(f"{name:23s}" + " ".join(show(v) for v in r))

# %%
fig, ax = plt.subplots(figsize=(6.5, 3.8))
for (name, r), marker in zip(curves.items(), "osv^", strict=True):
    ax.semilogy(range(DEPTH + 1), r, marker=marker, label=name)
ax.axhline(np.finfo(np.float64).eps, color="gray", lw=0.8, ls="--")
ax.text(0, 2 * np.finfo(np.float64).eps, "float64 round-off", fontsize=8)
ax.set_xlabel("layer"); ax.set_ylabel("res(X) = ‖X − 1x*ᵀ‖ / ‖X‖")
ax.set_title("distance from rank one, 8 layers at random init")
ax.legend(fontsize=8, loc="center right")
fig.tight_layout()
plt.show()

# %% [markdown]
# Read the plot on its log scale:
#
# * **Pure attention** loses everything in three layers: under one digit in the first, about
#   five in the second, and the rest down to round-off in the third. The number of digits lost
#   *multiplies* from layer to layer instead of adding up: that is "doubly exponential". Dong
#   et al. prove $\mathrm{res}(\mathrm{SA}(X)) \lesssim c\,\mathrm{res}(X)^3$ for one head, so
#   $L$ layers give an exponent $3^L$.
# * **With a skip**, $X + \mathrm{SA}(X)$ keeps the input on an identity path: the averaging is
#   only ever *added* to it, and the residual barely moves in 8 layers.
# * **An MLP without a skip** does not help. It acts on each token separately, so it can
#   stretch the differences between tokens by at most its Lipschitz constant, while attention
#   shrinks them doubly exponentially; Dong et al. show an MLP can only *slow* the collapse that
#   way. At this initialisation it even shrinks the differences: ReLU outputs are positive, so
#   they share a mean, which the second linear layer turns into a component common to every
#   token (below: one feed-forward layer alone, on random tokens).

# %%
pure, skip = curves["pure attention"], curves["attention + skip"]
both = curves["attention + skip + MLP"]
print(f"pure attention: res {pure[0]:.2f} -> {show(pure[-1]).strip()} (round-off) in {DEPTH} "
      "layers")
print(f"with skips: {skip[-1]:.2f}; with skips and MLPs: {both[-1]:.2f}")
assert pure[-1] < 1e-6 * pure[0], "pure attention should collapse by orders of magnitude"
assert pure[3] < 1e-10, "...and within three layers"
assert skip[-1] > 0.5 and both[-1] > 0.5, "skip connections should keep the tokens apart"
assert curves["attention + MLP"][-1] < 1e-6, "an MLP alone does not stop the collapse"

ff0 = layers[0][1]
after_ff = np.mean([residual(x) for x in ff0.forward(X0)])
print(f"one feed-forward layer alone: res {curves['pure attention'][0]:.2f} -> {after_ff:.2f}")
assert after_ff < curves["pure attention"][0]

# %% [markdown]
# ## Why so fast: nearly uniform attention
#
# At random initialisation the scores $q\cdot k/\sqrt D$ are small, so each softmax row is close
# to uniform and each layer is close to "replace every token by the mean". The entropy of the
# first layer's attention rows, against the $\log T$ of a uniform row:

# %%
attn0 = layers[0][0]
attn0.forward(X0)
probs = attn0.intermediate("probs")  # (B, H, T, T), each row sums to 1
entropy = -(probs * np.log(probs)).sum(axis=-1).mean()
print(f"mean row entropy {entropy:.3f} nats, log T = {np.log(probs.shape[-1]):.3f}")
assert entropy > 0.9 * np.log(probs.shape[-1])

# %% [markdown]
# Larger weights make the scores larger and the attention sharper: a head that looks at one
# token only *copies* it instead of averaging, and copying does not collapse anything. Dong et
# al.'s bound indeed grows with the norms of $W_Q W_K^\top$ and $W_V$. Multiply every attention
# weight by a factor $c$ and measure the residual after 8 layers:

# %%
scales = np.array([0.5, 1, 1.5, 2, 2.5, 3, 4, 5, 6])
after = {name: [] for name in ("pure attention", "attention + skip")}
for c in scales:
    scaled = make_layers(attention_scale=c)
    for name in after:
        after[name].append(residual_by_depth(X0, scaled, *VARIANTS[name])[-1])

fig, ax = plt.subplots(figsize=(6.5, 3.5))
for name, marker in zip(after, "os", strict=True):
    ax.semilogy(scales, np.maximum(after[name], 1e-17), marker=marker, label=name)
ax.axvline(1.0, color="gray", lw=0.8, ls=":")
ax.text(1.05, 1e-12, "default init", fontsize=8)
ax.set_xlabel("attention weights × c"); ax.set_ylabel("res after 8 layers")
ax.set_title("sharper attention collapses less")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()
for c, p, s in zip(scales, after["pure attention"], after["attention + skip"], strict=True):
    print(f"c = {c:3.1f}: pure {show(p)}, with skip {s:.2f}")
assert after["pure attention"][0] < 1e-10 and after["pure attention"][-1] > 0.1

# %% [markdown]
# So pure attention *can* escape collapse, but only with weights far from where training
# starts; with a skip connection the residual stays of order one at every scale tried. That is
# one reason every Transformer in this course (and every one you will meet) wraps each sublayer
# as $x + \mathrm{Sublayer}(x)$.
#
# **Next:** this is the last notebook for now; notebook 13, *GPT from scratch*, arrives with the
# GPT model. Go back to notebook 9 to see what the place of LayerNorm in that residual stream
# does to the gradients.
