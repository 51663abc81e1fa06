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
#     figures: 3
# ---

# %% [markdown]
# # 13 · GPT from scratch
#
# **What you learn:** what makes GPT-2 a *decoder*: the causal mask (a position never sees a
# later one, so changing token $t$ changes no logit before $t$, exactly); the key/value cache,
# and why it is exact rather than an approximation; and how the next token is chosen —
# temperature, top-k and top-p (nucleus) filtering. You write top-p filtering and the causal
# mask of a cached step yourself. Nothing is trained: a small random GPT-2 shows all of it.
#
# **Read first:** notebook 3 (attention and its masks) and notebook 8 (decoding).
#
# **Runs in:** about 10 seconds on a laptop CPU.

# %%
import matplotlib.pyplot as plt
import numpy as np

import nanotf
from nanotf.course import EXERCISES
from nanotf.functional import causal_mask, softmax_forward
from nanotf.functional.sampling import next_token, top_k_filter, top_p_filter
from nanotf.models import GPT2LMHeadModel

plt.rcParams["figure.dpi"] = 90
rng = np.random.default_rng(0)
saved_dtype = nanotf.default_dtype()
nanotf.set_default_dtype("float64")  # float64: "equal" below means equal to round-off
nanotf.manual_seed(0)

# %% [markdown]
# ## A small random GPT-2
#
# The configuration is the dict Hugging Face's `GPT2Config(...).to_dict()` would give; we write
# it by hand. The weights are drawn with standard deviation 0.3 instead of GPT-2's 0.02, so that
# the untrained model's next-token distribution is not almost flat. Dropout is 0.

# %%
config = dict(vocab_size=30, n_positions=64, n_embd=32, n_layer=2, n_head=4, n_inner=None,
              activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
              layer_norm_epsilon=1e-5, initializer_range=0.3)
model = GPT2LMHeadModel.from_config(config)
model.eval()
V, T = config["vocab_size"], 16
ids = rng.integers(0, V, size=(1, T))  # (B, T): one sequence of 16 tokens
logits = model.forward(ids)  # (B, T, V)
print("logits", logits.shape, "| parameters:", sum(p.data.size for p in model.parameters()))

# %% [markdown]
# ## 1 · The causal mask
#
# Row $i$ of the attention scores $S = QK^\top/\sqrt d$ is masked where $j > i$ before the
# softmax, so $P_{ij} = 0$ for every key in the future:
#
# $$P_{ij} = \frac{e^{S_{ij}}\,[j \le i]}{\sum_{l \le i} e^{S_{il}}}.$$
#
# By induction over the layers, the hidden state at position $i$ is a function of tokens
# $0..i$ only, and so is the logit row $i$. Change token $t$: every row before $t$ must stay
# **exactly** the same — the same floating-point operations on the same numbers, not merely
# close. This is what lets a GPT train on all $T$ next-token predictions of a sequence at once.

# %%
probs = model.intermediate("transformer.h.0.attn.probs")  # (B, H, T, T), layer 0
t = 9
changed = ids.copy()
changed[0, t] = (changed[0, t] + 1) % V  # another token at position 9
diff = np.abs(model.forward(changed) - logits).max(axis=-1)[0]  # (T,): per position
print("largest |Δ logit| before t:", diff[:t].max(), "| at t and after, smallest:",
      f"{diff[t:].min():.1e}")
print("largest attention probability above the diagonal:", np.triu(probs, k=1).max())
assert (diff[:t] == 0).all()  # exactly 0, not round-off
assert diff[t:].min() > 1e-6  # the change does reach every later position
assert (np.triu(probs, k=1) == 0).all() and np.allclose(probs.sum(-1), 1.0)

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
axes[0].imshow(probs[0, 0], cmap="viridis")
axes[0].set_title("layer 0, head 0: P (zero above the diagonal)")
axes[0].set_xlabel("key"); axes[0].set_ylabel("query")
axes[1].bar(np.arange(T), np.maximum(diff, 1e-20), color=["gray"] * t + ["C3"] * (T - t))
axes[1].set_yscale("log"); axes[1].set_ylim(1e-20, 10)
axes[1].axvline(t - 0.5, color="k", ls=":", lw=0.8)
axes[1].set_title(f"max |Δ logit| per position, token {t} changed")
axes[1].set_xlabel("position (bars at 1e-20 are exactly 0)")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 2 · The key/value cache, and why it is exact
#
# Generating $n$ tokens the plain way runs the forward on the whole prefix at each step: step
# $s$ recomputes all $T_0 + s$ positions, though only the last row of logits is used. But by
# the causal mask, the keys and values of positions $0..i$ depend on tokens $0..i$ only: once
# computed they **never change**. So keep them. A cached step feeds only the new token, computes
# its query, key and value, appends the key and value to the cache, and attends its one query
# to every cached key:
#
# $$o_{\text{new}} = \mathrm{softmax}\!\Big(\frac{q_{\text{new}} [K_{\text{cache}};
# k_{\text{new}}]^\top}{\sqrt d}\Big)\,[V_{\text{cache}}; v_{\text{new}}].$$
#
# These are the same numbers the full forward computes in its last row — nothing is
# approximated. `model.forward_cached(new_ids, caches)` does it, with `caches =
# model.new_cache()` (one `KVCache` per layer); the first call may give the whole prompt.

# %%
caches = model.new_cache()
pieces = [model.forward_cached(ids[:, :5], caches)]  # the prompt: 5 positions at once
for i in range(5, T):
    pieces.append(model.forward_cached(ids[:, i : i + 1], caches))  # one new token a step
cached = np.concatenate(pieces, axis=1)  # (B, T, V)
rel = np.abs(cached - logits).max() / np.abs(logits).max()
print(f"cached vs full forward, every position: relative error {rel:.1e}; cache length",
      caches[0].length)
assert rel <= 1e-12

# %% [markdown]
# `generate(..., use_cache=True)` (the default) runs that loop; `use_cache=False` runs the full
# forward at every step. With the same seed the two must pick **the same tokens**, greedy or
# sampled. Below, a wrapper counts how many positions each step feeds through the model.

# %%
prompt = ids[:, :8]  # (1, 8)
N_NEW = 40


def counting(f, seen):
    """f, wrapped to note how many positions each call feeds (x: (B, T_fed))."""
    def wrapped(x, *args, **kwargs):
        seen.append(x.shape[1])
        return f(x, *args, **kwargs)
    return wrapped


counts = {}
for use_cache in (False, True):
    seen = []
    model.forward = counting(model.forward, seen)
    model.forward_cached = counting(model.forward_cached, seen)
    out = model.generate(prompt, N_NEW, do_sample=True, top_k=20, seed=7, use_cache=use_cache)
    del model.forward, model.forward_cached  # back to the class's methods
    counts[use_cache] = (np.array(seen), out)
(full_n, full_out), (kv_n, kv_out) = counts[False], counts[True]
greedy_kv = model.generate(prompt, N_NEW, use_cache=True)
greedy_full = model.generate(prompt, N_NEW, use_cache=False)
print("sampled tokens equal:", (full_out == kv_out).all(), "| greedy tokens equal:",
      (greedy_kv == greedy_full).all())
print(f"positions processed for {N_NEW} tokens: without the cache {full_n.sum()}, with it "
      f"{kv_n.sum()}")
assert (full_out == kv_out).all() and (greedy_kv == greedy_full).all()
assert list(full_n) == list(range(8, 8 + N_NEW)) and list(kv_n) == [8] + [1] * (N_NEW - 1)

# %% [markdown]
# The work of a step is proportional to the positions it processes (the projections and the
# MLP run per position; attention is one query row per position, against the keys so far).
# Without the cache, step $s$ costs $T_0 + s$; with it, 1: generating $n$ tokens costs
# $O(n^2)$ instead of $O(n)$ position-passes. (Its price is memory: 2 × layers × $T$ × $C$
# numbers per sequence.)

# %%
steps = np.arange(N_NEW)
fig, axes = plt.subplots(1, 2, figsize=(9, 3))
axes[0].plot(steps, full_n, "o-", ms=3, label="no cache: whole prefix")
axes[0].plot(steps, kv_n, "s-", ms=3, label="KV cache: the new token")
axes[0].set_xlabel("generation step"); axes[0].set_ylabel("positions processed")
axes[0].set_title("work per step"); axes[0].legend(fontsize=8)
axes[1].plot(steps, np.cumsum(full_n), "o-", ms=3, label="no cache")
axes[1].plot(steps, np.cumsum(kv_n), "s-", ms=3, label="KV cache")
axes[1].set_xlabel("generation step"); axes[1].set_ylabel("positions processed so far")
axes[1].set_title("total work: quadratic vs linear"); axes[1].legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# ### Exercise 1: the causal mask of a cached step
#
# In a cached step, $T_n$ new queries meet $T_p + T_n$ keys ($T_p$ cached). New query $i$ sits
# at position $T_p + i$, so it may see keys $0..T_p + i$. Write `my_kv_causal_mask(t_new,
# t_past)`, returning a `(t_new, t_past + t_new)` boolean array, True where a query may
# attend. (A plain lower triangle, aligned top-left, would hide the cache from the queries.)

# %%
def my_kv_causal_mask(t_new, t_past):
    """(t_new, t_past + t_new) bool: True where new query i may see key j."""
    # BEGIN SOLUTION
    return np.tril(np.ones((t_new, t_past + t_new), dtype=bool), k=t_past)
    # END SOLUTION


# %%
EXERCISES["kv_causal_mask"].check(my_kv_causal_mask)

# %% [markdown]
# nanotf's `causal_mask(t_q, t_k)` is this mask (PyTorch calls it `causal_lower_right`):

# %%
print(causal_mask(2, 5).astype(int))

# %% [markdown]
# ## 3 · Choosing the next token: temperature, top-k, top-p
#
# From the last row of logits $z$ (one per vocabulary token), sampling draws from
#
# $$p_i = \frac{e^{z_i/\tau}}{\sum_j e^{z_j/\tau}}.$$
#
# * **temperature** $\tau$: $\tau < 1$ sharpens, $\tau > 1$ flattens. As $\tau \to 0$ the
#   distribution becomes one-hot on $\arg\max_i z_i$: sampling turns into greedy decoding.
# * **top-k**: keep the $k$ largest logits, set the others to $-\infty$ (probability 0).
#   $k = 1$ is greedy.
# * **top-p** (nucleus): sort the tokens by probability and keep the smallest set of most
#   likely tokens whose mass is **at least** $p$ — the token that crosses $p$ stays, the top
#   token always stays.
#
# nanotf applies them in Hugging Face's order: $z/\tau$, then top-k, then top-p, then the draw.

# %%
z = logits[:, -1]  # (1, V): the next-token logits after the 16 tokens


def dist(x):
    return softmax_forward(x, axis=-1)[0][0]  # (V,)


temps = (0.5, 1.0, 2.0)
p_temp = {tau: dist(z / tau) for tau in temps}
p_topk = dist(top_k_filter(z, 5))
p_topp = dist(top_p_filter(z, 0.6))
order = np.argsort(-p_temp[1.0], kind="stable")  # tokens from most to least likely
for tau in temps:
    print(f"τ = {tau}: largest p {p_temp[tau].max():.3f}, entropy "
          f"{-(p_temp[tau] * np.log(p_temp[tau])).sum():.2f}")
print("kept by top-k 5:", int((p_topk > 0).sum()), "| kept by top-p 0.6:", int((p_topp > 0).sum()))

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 3))
x = np.arange(V)
for tau, style in zip(temps, ("o-", "s-", "^-"), strict=True):
    axes[0].plot(x, p_temp[tau][order], style, ms=3, label=f"τ = {tau}")
axes[0].set_title("temperature"); axes[0].set_xlabel("token, by rank"); axes[0].legend(fontsize=8)
axes[0].set_ylabel("probability")
axes[1].bar(x - 0.2, p_topk[order], width=0.4, label="top-k, k = 5")
axes[1].bar(x + 0.2, p_topp[order], width=0.4, label="top-p, p = 0.6")
axes[1].plot(x, p_temp[1.0][order], "k:", lw=1, label="τ = 1, unfiltered")
axes[1].set_title("after filtering (renormalised)"); axes[1].set_xlabel("token, by rank")
axes[1].legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# The facts, asserted: as $\tau \to 0$ the distribution becomes greedy, and sampling at a tiny
# temperature or with $k = 1$ gives greedy's tokens; top-p keeps the smallest set of mass
# $\ge p$ (drop its least likely member and the mass falls below $p$).

# %%
for tau in (1.0, 0.1, 0.01, 0.001):
    print(f"τ = {tau:5g}: probability of the argmax {dist(z / tau)[z.argmax()]:.6f}")
assert dist(z / 0.001)[z.argmax()] > 1 - 1e-9
greedy = model.generate(prompt, 20)
for seed in range(3):
    cold = model.generate(prompt, 20, do_sample=True, temperature=1e-3, seed=seed)
    top1 = model.generate(prompt, 20, do_sample=True, top_k=1, seed=seed)
    assert (cold == greedy).all() and (top1 == greedy).all()
    assert (next_token(z, do_sample=True, top_k=1, rng=np.random.default_rng(seed))
            == z.argmax(-1)).all()
print("temperature 1e-3 and top_k = 1 give greedy's tokens, for seeds 0, 1, 2")
p1 = p_temp[1.0]
for p in (0.3, 0.6, 0.9):
    kept = np.isfinite(top_p_filter(z, p))[0]  # (V,)
    mass, smallest = p1[kept].sum(), p1[kept].min()
    print(f"top-p {p}: keeps {kept.sum():2d} tokens of mass {mass:.3f}; without the least likely "
          f"{mass - smallest:.3f}")
    assert mass >= p and mass - smallest < p  # at least p, and the smallest such set
    assert p1[kept].min() >= p1[~kept].max()  # and the most likely tokens

# %% [markdown]
# ### Exercise 2: top-p filtering
#
# Write `my_top_p_filter(logits, p)` for `logits: (B, V)` and $0 < p \le 1$: return a copy where
# every token outside the nucleus is $-\infty$ (the kept ones unchanged). Per row: sort by
# probability, keep the most likely tokens until their mass first reaches $p$ (the one that
# crosses $p$ stays), always keep the most likely token, and with $p = 1$ keep every token of
# non-zero probability. Hugging Face's way avoids round-off trouble at $p = 1$: sort
# **ascending**, and remove the tokens whose cumulative probability is $\le 1 - p$. The check
# compares with nanotf's `top_p_filter` on fixed logits, with ties, $-\infty$ entries and $p=1$.

# %%
def my_top_p_filter(logits, p):
    """logits (B, V) -> (B, V): tokens outside the top-p nucleus set to -inf."""
    # BEGIN SOLUTION
    probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probs = probs / probs.sum(axis=-1, keepdims=True)  # (B, V)
    order = np.argsort(logits, axis=-1, kind="stable")  # (B, V) ascending
    cum = np.take_along_axis(probs, order, axis=-1).cumsum(axis=-1)  # (B, V)
    remove_sorted = cum <= 1.0 - p
    remove_sorted[:, -1] = False  # the most likely token always stays
    remove = np.zeros_like(remove_sorted)
    np.put_along_axis(remove, order, remove_sorted, axis=-1)  # back to vocabulary order
    return np.where(remove, -np.inf, logits)
    # END SOLUTION


# %%
EXERCISES["top_p_filter"].check(my_top_p_filter)

# %%
nanotf.set_default_dtype(saved_dtype)

# %% [markdown]
# **Next:** this is the end of the course. From here: a real GPT-2 checkpoint's state dict has
# exactly these parameter names and layouts, so `GPT2LMHeadModel.load_state_dict` takes it as it
# is (nanotf ships no GPT-2 weights); the same causal mask, cache and sampling then work on text.
