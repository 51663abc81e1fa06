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
#     budget_s: 20
#     figures: 2
# ---

# %% [markdown]
# # 4 · Positions and embeddings
#
# **What you learn:** attention by itself does not know the order of its keys, so a Transformer
# adds a *position* vector to each token's embedding. You meet the sinusoidal encoding of
# *Attention Is All You Need*, see why a shift by $k$ positions is the same rotation at every
# position (and write that rotation yourself), compare it with learned positions, and follow the
# embedding lookup's backward, where repeated tokens add up their gradients.
#
# **Read first:** notebook 3, *Attention, masks and 1/√d*.
#
# **Runs in:** about 5 seconds on a laptop CPU.

# %%
import matplotlib.pyplot as plt
import numpy as np

from nanotf.course import EXERCISES
from nanotf.functional import (
    add_positional_backward,
    add_positional_forward,
    attention_forward,
    embedding_backward,
    embedding_forward,
    sinusoidal_encoding,
)
from nanotf.gradcheck import gradcheck
from nanotf.nn import Embedding

plt.rcParams["figure.dpi"] = 90
rng = np.random.default_rng(0)

# %% [markdown]
# ## Attention cannot see order
#
# $O = \mathrm{softmax}(QK^\top/\sqrt d)\,V$ treats its keys as a *set*: shuffle the keys and
# values together (a permutation $\Pi$: $K \to \Pi K$, $V \to \Pi V$) and the scores' columns
# shuffle the same way, the softmax of each row does not care about the order of its entries,
# and $P\,V$ sums the same terms. "dog bites man" and "man bites dog" look alike to it.

# %%
q, k, v = (rng.normal(size=(1, 1, 5, 8)) for _ in range(3))  # (B, H, T, D)
perm = rng.permutation(5)
out, _ = attention_forward(q, k, v)
out_shuffled, _ = attention_forward(q, k[:, :, perm], v[:, :, perm])
print(f"largest change after shuffling the keys: {np.abs(out - out_shuffled).max():.0e}")
assert np.allclose(out, out_shuffled, atol=1e-14)

# %% [markdown]
# ## The sinusoidal encoding
#
# The paper adds to the embedding of the token at position $t$ a fixed vector $P_t$ whose pairs
# of entries are a sine and a cosine of the same frequency:
#
# $$P_{t,\,2i} = \sin(t\,\omega_i), \qquad P_{t,\,2i+1} = \cos(t\,\omega_i), \qquad
# \omega_i = 10000^{-2i/d}, \quad i = 0, \dots, d/2 - 1.$$
#
# The wavelengths $2\pi/\omega_i$ run geometrically from $2\pi$ to $2\pi \cdot 10000$: the first
# pairs tick like a seconds hand, the last ones barely move over thousands of positions.
# `sinusoidal_encoding(max_len, d_model)` builds the table.

# %%
L, d = 100, 32
P = sinusoidal_encoding(L, d, dtype=np.float64)  # P: (L, d)
omega = 10000.0 ** (-np.arange(0, d, 2) / d)  # (d/2,) the frequencies
t = np.arange(L)[:, None]
assert np.allclose(P[:, 0::2], np.sin(t * omega)) and np.allclose(P[:, 1::2], np.cos(t * omega))

fig, ax = plt.subplots(figsize=(7, 3.2))
im = ax.imshow(P.T, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
ax.set_xlabel("position t"); ax.set_ylabel("dimension")
ax.set_title("sinusoidal encoding: fast pairs at the top, slow at the bottom")
fig.colorbar(im, ax=ax)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Dot products depend only on the distance
#
# For one pair, $\sin a \sin b + \cos a \cos b = \cos(a - b)$, so
#
# $$P_t \cdot P_{t+k} = \sum_{i} \cos(k\,\omega_i),$$
#
# the same for every $t$: the dot product of two positions depends only on how far apart they
# are, so $PP^\top$ is constant along each diagonal (a Toeplitz matrix). Attention scores are dot
# products, so a layer can learn to prefer "the previous token" or "tokens 3 back" at every
# position at once.

# %%
G = P @ P.T  # (L, L): G[t, s] = P_t · P_s
predicted = np.array([np.cos(kk * omega).sum() for kk in range(L)])  # Σ_i cos(k ω_i)
worst = max(np.abs(np.diagonal(G, offset=kk) - predicted[kk]).max() for kk in range(L))
print(f"largest |P_t · P_(t+k) − Σ cos(k ω_i)| over all t, k: {worst:.1e}")
assert worst < 1e-12

# %% [markdown]
# ## A shift is a rotation
#
# More is true. Look at one pair $(P_{t,2i}, P_{t,2i+1}) = (\sin t\omega_i, \cos t\omega_i)$: a
# point on the unit circle at angle $t\omega_i$ (measured from the second axis). Moving $k$
# positions on moves it by the angle $k\omega_i$, whatever $t$ is. So
# $P_{t+k} = M_k P_t$ for one matrix $M_k$ that does not depend on $t$: a rotation by
# $k\omega_i$ in each plane $(2i, 2i+1)$, that is a block-diagonal matrix of $2 \times 2$
# rotations. Let us find it without knowing it: fit the linear map from $P_t$ to $P_{t+k}$ by
# least squares over all $t$ (with $d = 8$, where the fit is well conditioned).

# %%
kk, d8 = 5, 8
P8 = sinusoidal_encoding(256, d8, dtype=np.float64)  # (256, 8)
X, Y = P8[:-kk], P8[kk:]  # rows: P_t and P_(t+k)
M_fit = np.linalg.lstsq(X, Y, rcond=None)[0].T  # solves Y = X M_fitᵀ, i.e. P_(t+k) = M_fit P_t
residual = np.abs(X @ M_fit.T - Y).max()
blocks = np.kron(np.eye(d8 // 2), np.ones((2, 2))).astype(bool)  # True on the 2x2 blocks
off_block = np.abs(M_fit[~blocks]).max()
not_orthogonal = np.abs(M_fit.T @ M_fit - np.eye(d8)).max()
dets = [np.linalg.det(M_fit[i:i + 2, i:i + 2]) for i in range(0, d8, 2)]  # one per block
print(f"fit residual {residual:.0e}; |off-block entries| ≤ {off_block:.0e}; "
      f"|MᵀM − I| = {not_orthogonal:.0e}; determinants of the blocks {np.round(dets, 9)}")
assert residual < 1e-12  # one matrix for every t
assert off_block < 1e-10  # block diagonal
assert not_orthogonal < 1e-10 and np.allclose(dets, 1.0)  # each block a rotation

# the angle of each pair advances by k ω_i at every t, at a realistic width too (d = 32)
angles = np.arctan2(P[:, 0::2], P[:, 1::2])  # (L, d/2): t ω_i, wrapped to (−π, π]
step = np.angle(np.exp(1j * (angles[kk:] - angles[:-kk])))  # wrapped differences
assert np.allclose(step, np.angle(np.exp(1j * kk * omega)), atol=1e-12)

# %%
fig, axes = plt.subplots(1, 3, figsize=(11, 3.3))
im = axes[0].imshow(G, cmap="viridis")
axes[0].set_title("P Pᵀ: constant along diagonals")
axes[0].set_xlabel("s"); axes[0].set_ylabel("t")
fig.colorbar(im, ax=axes[0])
for t0 in (0, 10, 30):
    axes[1].plot(np.arange(L - t0), G[t0, t0:], label=f"t = {t0}")
axes[1].set_xlabel("distance k"); axes[1].set_title("P_t · P_(t+k), three t: one curve")
axes[1].legend(fontsize=8)
lim = np.abs(M_fit).max()
im = axes[2].imshow(M_fit, cmap="RdBu_r", vmin=-lim, vmax=lim)
axes[2].set_title(f"M fitted for k = {kk}, d = {d8}")
fig.colorbar(im, ax=axes[2])
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Exercise: build the rotation $M_k$
#
# Write `my_rotation(k, d_model, base=10000.0)` that returns the $(d, d)$ matrix $M_k$ with
# $P_{t+k} = M_k P_t$ for every $t$ (`d_model` even). Work out one $2\times 2$ block from
# $\sin(a + b) = \sin a \cos b + \cos a \sin b$ and $\cos(a + b) = \cos a \cos b - \sin a \sin b$,
# with $a = t\omega_i$ and $b = k\omega_i$; mind which entry of the pair is the sine. The check
# compares your matrix with the right one for several $k$ (also 0 and negative), widths and
# bases.

# %%
def my_rotation(k, d_model, base=10000.0):
    """M_k: (d_model, d_model), block diagonal, with P[t + k] = M_k @ P[t]."""
    # BEGIN SOLUTION
    omega = base ** (-np.arange(0, d_model, 2) / d_model)  # (d/2,)
    c, s = np.cos(k * omega), np.sin(k * omega)
    M = np.zeros((d_model, d_model))
    M[0::2, 0::2] = np.diag(c)  # new sin = sin · cos kω + cos · sin kω
    M[0::2, 1::2] = np.diag(s)
    M[1::2, 0::2] = np.diag(-s)  # new cos = −sin · sin kω + cos · cos kω
    M[1::2, 1::2] = np.diag(c)
    return M
    # END SOLUTION


# %%
EXERCISES["rotation_matrix"].check(my_rotation)

# %% [markdown]
# (Rotary position embeddings, RoPE, take this one step further: instead of *adding* $P_t$,
# they rotate the query and key of position $t$ by $M_t$, so that $q_t \cdot k_s$ depends on
# $t - s$ exactly.)
#
# ## Learned positions
#
# BERT, DistilBERT and GPT-2 learn the position vectors instead: a second embedding table
# $W_{\text{pos}}$ of shape $(\text{max\_len}, d)$, looked up with the positions
# $0, 1, \dots, T-1$ and added to the token embeddings. The sinusoidal table is a constant, so its
# backward is only the scaling of the input, $\mathrm{d}x = \sqrt{d}\,\mathrm{d}\text{out}$ for
# $\text{out} = \sqrt{d}\,x + P$ (`add_positional_backward`); the learned table gets a gradient,
# and since every sequence of the batch uses the same positions,
#
# $$\mathrm{d}W_{\text{pos}}[t] = \sum_{b} \mathrm{d}\text{out}[b, t] \quad (t < T),
# \qquad \mathrm{d}W_{\text{pos}}[t] = 0 \quad (t \ge T).$$
#
# Positions longer than any training sequence never get a gradient and stay at their random
# initialisation: learned positions do not extrapolate; sinusoidal ones at least are defined.

# %%
Bn, T, C = 3, 5, 8
x = rng.normal(size=(Bn, T, C))  # token embeddings: (B, T, C)
out, cache = add_positional_forward(x, P[:, :C], scale=np.sqrt(C))
dout = rng.normal(size=out.shape)
assert np.allclose(add_positional_backward(dout, cache), np.sqrt(C) * dout)

pos = Embedding(16, C)  # learned positions, max_len 16
positions = np.tile(np.arange(T), (Bn, 1))  # (B, T): 0..T-1 in every row
pos_out = pos.forward(positions)  # (B, T, C), float32 like the table
pos.backward(dout.astype(np.float32))
grad = pos.weight.grad  # (16, C)
print("rows of dW_pos that got a gradient:", np.flatnonzero(np.abs(grad).sum(axis=1)))
assert np.allclose(grad[:T], dout.sum(axis=0), rtol=1e-5, atol=1e-6) and (grad[T:] == 0).all()

# %% [markdown]
# ## The embedding backward: repeated ids add
#
# The lookup `out[p] = W[ids[p]]` copies row `ids[p]` of $W$ to position $p$. Each copy is used
# separately downstream, so by the chain rule each contributes its own gradient, and a token
# that occurs several times collects the sum:
#
# $$\mathrm{d}W[v] = \sum_{p\,:\,\mathrm{ids}[p] = v} \mathrm{d}\text{out}[p].$$
#
# A classic NumPy trap: `dW[ids] += dout` does **not** do this. Fancy-index assignment is
# buffered, so for repeated indices only one of the writes survives. The scatter-add
# `np.add.at(dW, ids, dout)` adds every one: it is what `embedding_backward` does here, since the
# course runs the readable reference ops. With nanotf's fast paths on (outside the course), it
# adds each token's rows in a fixed tree order instead (`segment_sum`: the same sum up to
# round-off, and it repeats bit for bit on a GPU, where a scatter-add's atomic adds run in any
# order).

# %%
V = 6
W = rng.normal(size=(V, C))  # (V, C)
ids = np.array([[3, 1, 3, 0], [3, 5, 1, 3]])  # (B, T): token 3 four times, token 1 twice
out, cache = embedding_forward(ids, W)
dout = rng.normal(size=out.shape)  # (B, T, C)
dW = embedding_backward(dout, cache)  # (V, C)

by_hand = np.zeros_like(W)
for p in np.ndindex(ids.shape):  # the definition, one position at a time
    by_hand[ids[p]] += dout[p]
naive = np.zeros_like(W)
naive[ids] += dout  # buffered: repeated ids keep one write
print(f"token 3: embedding_backward vs the loop {np.abs(dW[3] - by_hand[3]).max():.0e}, "
      f"naive += is off by {np.abs(naive[3] - by_hand[3]).max():.2f}")
assert np.allclose(dW, by_hand, atol=1e-14)
assert not np.allclose(naive[3], by_hand[3])  # the trap is real
assert (dW[[2, 4]] == 0).all()  # tokens that do not occur get no gradient

err = gradcheck(embedding_forward, embedding_backward, {"ids": ids, "weight": W})
print(f"gradcheck of the embedding: {err['weight']:.0e}")
assert err["weight"] < 1e-10

_, cache_pad = embedding_forward(ids, W, padding_idx=3)
assert (embedding_backward(dout, cache_pad)[3] == 0).all()  # the padding row: never updated

# %% [markdown]
# **Next:** notebook 5, *A Transformer, every intermediate named*: embeddings, positions,
# attention and feed-forward blocks put together into the encoder–decoder, trained with teacher
# forcing, with every activation and gradient readable by name.
