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
#     budget_s: 90
#     figures: 3
# ---

# %% [markdown]
# # 8 · Train a Transformer, then decode
#
# **What you learn:** the main job, end to end, in a notebook. A small encoder–decoder
# Transformer learns to reverse strings of 1–8 letters with nanotf's trainer (teacher forcing,
# label smoothing, Adam with warm-up, gradient clipping: every gradient by hand). You will read
# the loss curve against the least loss label smoothing allows, watch the cross-attention turn
# into an anti-diagonal, and decode held-out strings greedily and with beam search. Then you
# predict the attention of the *copy* task, and a copy model trained on the spot shows it.
#
# **Read first:** notebooks 5 (the model and teacher forcing), 6 (the loss and its floor) and 7
# (Adam and the schedule); `nanotf/train/__init__.py` (its module docstring is one training
# step) and `nanotf/decode/` (greedy.py and beam.py).
#
# **Runs in:** about 20 seconds on a 2-core CPU, nearly all of it training.

# %%
import warnings

import matplotlib.pyplot as plt
import numpy as np
from threadpoolctl import threadpool_limits

from nanotf.course import EXERCISES
from nanotf.data import EOS_ID, make_batch
from nanotf.decode import beam_search, greedy_decode, length_penalty_factor, sequence_log_prob
from nanotf.train import TrainConfig, Trainer, smoothed_loss_floor
from nanotf.viz import plot_attention

plt.rcParams["figure.dpi"] = 90
blas = threadpool_limits(1, user_api="blas")  # tiny matrices: one BLAS thread is faster
warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm, even with its bar off

# %% [markdown]
# ## The task and the run
#
# `TrainConfig` holds everything that defines a run; its defaults are `python -m nanotf train`
# (2 + 2 layers, width 64, 4 heads, post-LN, strings of 1–10 letters, 2000 steps of 64 pairs).
# We keep the model, shorten the strings to at most 8 letters (`task_options`) and train for
# 500 steps, which is enough here. `Trainer(config)` seeds nanotf's generator, splits the data
# (no held-out source ever occurs in training) and builds the model and the optimizer;
# `progress=False` keeps the progress bar out of the notebook.

# %%
config = TrainConfig(task="reverse", task_options={"max_len": 8}, steps=500, warmup=50,
                     eval_every=100, seed=0)
trainer = Trainer(config, progress=False)
task, model = trainer.task, trainer.model
vocab = task.tgt_vocab  # source and target share one character vocabulary
n_params = sum(p.data.size for p in model.parameters())
print(task.description)
print(f"{len(trainer.train_pairs)} training pairs, {len(trainer.heldout_pairs)} held out; "
      f"vocabulary of {len(vocab)} tokens; {n_params:,} parameters")

# one example, laid out as the model reads it
example = make_batch([("cabjj", "jjbac")], task)
for name in ("src", "tgt_in", "tgt_out"):
    row = getattr(example, name)[0]
    print(f"{name:8s}", " ".join(vocab.id_to_token(int(i)) for i in row))

# %% [markdown]
# ## One training step, in symbols
#
# For a batch, the decoder reads `tgt_in` $= \langle\mathrm{bos}\rangle\,y$ and predicts
# `tgt_out` $= y\,\langle\mathrm{eos}\rangle$ at every position at once (teacher forcing; the
# causal mask stops position $t$ from seeing $y_t$). The loss is the cross-entropy against the
# *smoothed* target $q = (1-\varepsilon)\,\mathrm{onehot}(y_t) + \varepsilon/V$, averaged over
# the $N$ real (non-pad) target tokens:
#
# $$L = -\frac1N \sum_{t} \sum_{c} q_{t,c} \log p_{t,c}, \qquad
# \frac{\partial L}{\partial z_{t,c}} = \frac{p_{t,c} - q_{t,c}}{N}$$
#
# with $p = \mathrm{softmax}(z)$ of the logits $z$. `model.backward` carries that gradient
# through every layer by hand; the trainer clips the global gradient norm to 1 and takes an
# Adam step with the scheduled learning rate (linear warm-up, then half a cosine).
#
# No model can go below the entropy of $q$ itself (reached at $p = q$), so the training loss
# has a floor above zero (notebook 6):
#
# $$L_{\min} = H(q) = -\big(1-\varepsilon+\tfrac{\varepsilon}{V}\big)
# \log\big(1-\varepsilon+\tfrac{\varepsilon}{V}\big)
# - (V-1)\,\tfrac{\varepsilon}{V}\log\tfrac{\varepsilon}{V}.$$

# %%
floor = smoothed_loss_floor(config.label_smoothing, len(vocab))
eps, v = config.label_smoothing, len(vocab)
by_hand = -(1 - eps + eps / v) * np.log(1 - eps + eps / v) - (v - 1) * (eps / v) * np.log(eps / v)
print(f"least possible training loss with ε = {eps}, V = {v}: {floor:.4f} (by hand {by_hand:.4f})")
assert abs(floor - by_hand) < 1e-12

# %% [markdown]
# ## Cross-attention before training
#
# Reversing needs one thing from the cross-attention: the decoder position that writes the
# $t$-th output letter must read source letter $n-1-t$. Query row $t$ of a cross-attention map
# reads `tgt_in[t]` and writes `tgt_out[t]`; key column $s$ is source position $s$ (the $n$
# letters, then $\langle\mathrm{eos}\rangle$). So the rows $t = 0..n-1$ should put their weight
# on column $n-1-t$, the *anti-diagonal*. We measure the average weight there, for the last
# decoder layer with its heads averaged, on 200 held-out strings, before any training.

# %%
probe = trainer.heldout_pairs[:200]
LAST = f"decoder.layers.{config.n_layers - 1}.cross_attn.probs"


def cross_attention(model, pairs, task=task):
    """Head-averaged cross-attention of the last decoder layer, one (n+1, n+1) map per pair."""
    batch = make_batch(pairs, task)
    model.eval()
    model.forward(batch.src, batch.tgt_in, batch.src_mask, batch.tgt_in_mask)
    probs = np.asarray(model.intermediate(LAST)).mean(axis=1)  # (B, H, T, S) -> (B, T, S)
    return [probs[i, : len(s) + 1, : len(s) + 1] for i, (s, _) in enumerate(pairs)]


def mass_on(maps, key_of):
    """Average weight row t (t < n) of each map puts on key key_of(t, n), and the share of
    those rows whose largest weight is there."""
    mass, hits = [], []
    for p in maps:
        n = p.shape[0] - 1
        rows = np.arange(n)
        keys = key_of(rows, n)
        mass.append(p[rows, keys].mean())
        hits.append((p[rows].argmax(axis=1) == keys).mean())
    return float(np.mean(mass)), float(np.mean(hits))


def anti_diagonal(t, n):
    return n - 1 - t


maps_before = cross_attention(model, probe)
demo = "hcbfjgad"  # eight different letters, for the pictures
demo_before = cross_attention(model, [(demo, demo[::-1])])[0]
mass_before, hits_before = mass_on(maps_before, anti_diagonal)
uniform = np.mean([1 / (len(s) + 1) for s, _ in probe])  # a map spread evenly over n+1 keys
print(f"before training: weight on the anti-diagonal {mass_before:.3f} "
      f"(an even spread gives {uniform:.3f}); the row's largest weight is there "
      f"{hits_before:.0%} of the time")
assert abs(mass_before - uniform) < 0.05  # untrained: about as if spread evenly

# %% [markdown]
# ## Train
#
# `trainer.train()` runs the 500 steps; every 100 steps (and at the end) it evaluates on the
# held-out strings: the teacher-forced loss *without* smoothing, and the exact match of greedy
# decoding (the whole output right). The history keeps every step's loss, learning rate and
# gradient norm.

# %%
history = trainer.train()
for e in history.evals:
    print(f"step {e['step']:4d}: held-out loss {e['loss']:.3f}, exact match {e['exact_match']:.3f}")

# %%
loss = np.array(history.loss)
steps = np.array(history.step)
ema = np.empty_like(loss)  # exponential moving average, bias-corrected (as TensorBoard's)
s = 0.0
for i, x in enumerate(loss):
    s = 0.95 * s + 0.05 * x
    ema[i] = s / (1 - 0.95 ** (i + 1))

fig, ax = plt.subplots(figsize=(7, 4.2))
ax.plot(steps, loss, color="tab:blue", alpha=0.3, lw=0.8, label="training loss (smoothed labels)")
ax.plot(steps, ema, color="tab:blue", lw=1.6, label="its moving average")
ax.axhline(floor, color="tab:blue", ls=":", label=f"least possible: H(q) = {floor:.3f}")
ax.plot([e["step"] for e in history.evals], [e["loss"] for e in history.evals], "o-",
        color="tab:orange", label="held-out loss (no smoothing)")
ax.set_yscale("log"); ax.set_xlabel("step"); ax.set_ylabel("cross-entropy per token")
ax2 = ax.twinx()
ax2.plot([e["step"] for e in history.evals], [e["exact_match"] for e in history.evals], "s--",
         color="tab:green", label="held-out exact match")
ax2.set_ylim(-0.02, 1.02); ax2.set_ylabel("exact match")
handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
ax.legend(handles=handles, fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2)
fig.tight_layout()
plt.show()

# %% [markdown]
# The training loss does not go to zero: it settles on $H(q)$, which is where a perfect model of
# the *smoothed* targets sits. The held-out loss, measured against the one-hot targets, keeps
# falling below it. Two facts to hold the run to: the last 100 steps average within a few
# hundredths of the floor, and greedy decoding gets nearly every held-out string exactly right.

# %%
final_loss = loss[-100:].mean()
final = history.final_eval
print(f"training loss, last 100 steps: {final_loss:.4f}; floor {floor:.4f} "
      f"(gap {final_loss - floor:.4f})")
print(f"held-out exact match (greedy, {final['n']} strings): {final['exact_match']:.3f}")
assert floor <= final_loss < floor + 0.03
assert final["exact_match"] >= 0.97

# %% [markdown]
# ## Cross-attention after training
#
# The same 200 held-out strings through the trained model.

# %%
maps_after = cross_attention(model, probe)
mass_after, hits_after = mass_on(maps_after, anti_diagonal)
print(f"after training: weight on the anti-diagonal {mass_after:.3f} (before {mass_before:.3f}); "
      f"the row's largest weight is there {hits_after:.0%} of the time (before {hits_before:.0%})")
assert mass_after > 0.4 and mass_after > 2 * mass_before
assert hits_after > 0.8

# %%
demo_after = cross_attention(model, [(demo, demo[::-1])])[0]
keys = list(demo) + ["<eos>"]
queries = ["<bos>"] + list(demo[::-1])
fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.9))
plot_attention(demo_before, keys, queries, ax=axes[0], title="before training")
plot_attention(demo_after, keys, queries, ax=axes[1], title=f"after {config.steps} steps")
fig.suptitle(f"cross-attention, last decoder layer, heads averaged: {demo!r} → {demo[::-1]!r}")
fig.tight_layout()
plt.show()

# %% [markdown]
# Each row reads one letter of the output so far and must write the next: row
# $\langle\mathrm{bos}\rangle$ writes the last source letter, so it looks at column $n-1$; the
# row that reads it looks at column $n-2$, and so on. A row may split its weight between two
# neighbours (the second row here): the decoder's self-attention also knows what was written,
# and the layers below help. The last row writes $\langle\mathrm{eos}\rangle$: it has no letter
# to fetch, and it looks back at the first source letter, the one it has just written.

# %% [markdown]
# ## Decoding: greedy and beam search
#
# At test time there is no target to force: the model reads its own outputs. *Greedy*
# decoding takes the most likely token at each step, $y_t = \arg\max_v p(v \mid y_{<t}, x)$,
# until $\langle\mathrm{eos}\rangle$. *Beam search* keeps the $K$ best prefixes instead of one
# and ranks finished outputs by their length-penalised log-probability
#
# $$\mathrm{score}(Y) = \frac{\log P(Y\mid X)}{\mathrm{lp}(|Y|)}, \qquad
# \log P(Y\mid X) = \sum_t \log p(y_t \mid y_{<t}, X), \qquad
# \mathrm{lp}(n) = \Big(\frac{5+n}{6}\Big)^{\alpha}, \ \alpha = 0.6.$$
#
# With $K = 1$ beam search *is* greedy decoding. On 200 held-out strings both are right
# nearly always:

# %%
held_pairs = trainer.heldout_pairs[:200]
held = make_batch(held_pairs, task)
max_len = task.max_tgt_len + 4
greedy = greedy_decode(model, held.src, held.src_mask, max_len)
beam1 = beam_search(model, held.src, held.src_mask, beam_width=1, max_len=max_len)
beam4 = beam_search(model, held.src, held.src_mask, beam_width=4, max_len=max_len)
targets = [t for _, t in held_pairs]


def exact(out):
    return np.mean([task.decode_target(row) == t for row, t in zip(out, targets, strict=True)])


same = np.array_equal(greedy, beam1)  # the very same ids
print(f"exact match: greedy {exact(greedy):.3f}, beam 1 {exact(beam1):.3f}, "
      f"beam 4 {exact(beam4):.3f}; beam 1 gives greedy's outputs: {same}")
assert same and exact(beam4) >= 0.97

# %% [markdown]
# Beam search earns its keep where the model is unsure. Strings of 9 and 10 letters are longer
# than any it trained on: there, we compare the two decoders' outputs and their scores
# (`sequence_log_prob` re-scores greedy's output in one teacher-forced pass).

# %%
gen = np.random.default_rng(8)
longer = ["".join(gen.choice(list("abcdefghij"), size=n)) for n in [9] * 10 + [10] * 10]
batch = make_batch([(s, s[::-1]) for s in longer], task)
g_out = greedy_decode(model, batch.src, batch.src_mask, 16)
b_out, b_score = beam_search(model, batch.src, batch.src_mask, 4, 16, return_scores=True)
g_len = [list(row).index(EOS_ID) + 1 if EOS_ID in row else len(row) for row in g_out]
g_score = sequence_log_prob(model, batch.src, batch.src_mask, g_out) / np.array(
    [length_penalty_factor(n, 0.6) for n in g_len])
print(f"{'source':14s} {'greedy':14s} {'beam 4':14s} {'score g':>8s} {'score b':>8s}")
for s, g, b, sg, sb in zip(longer, g_out, b_out, g_score, b_score, strict=True):
    g, b = task.decode_target(g), task.decode_target(b)
    mark = "  (differ)" if g != b else ""
    print(f"{s:14s} {g:14s} {b:14s} {sg:8.3f} {sb:8.3f}{mark}")
n_right_g = sum(task.decode_target(g) == s[::-1] for g, s in zip(g_out, longer, strict=True))
n_right_b = sum(task.decode_target(b) == s[::-1] for b, s in zip(b_out, longer, strict=True))
print(f"right: greedy {n_right_g}/20, beam {n_right_b}/20; beam's score ≥ greedy's on "
      f"{np.sum(b_score >= g_score - 1e-4)}/20")
assert np.all(b_score >= g_score - 1e-4)

# %% [markdown]
# Beam search finds outputs the model itself scores at least as well as greedy's, and
# sometimes better; it cannot make the model *right* about lengths it never saw. A better
# search is no cure for a model that has not learned the task there.
#
# ## Exercise: predict the copy task's attention
#
# Now the *copy* task (the target is the source). Write `copy_attention(n)`: the ideal
# cross-attention for a source of $n$ letters, as an array of shape `(n, n + 1)`: one row for
# each decoder position that writes a letter (it reads `tgt_in[t]`, i.e. $\langle\mathrm{bos}
# \rangle$ or the letter before, and writes `tgt_out[t]`), one column for each source position
# (the $n$ letters, then $\langle\mathrm{eos}\rangle$). Each row puts weight 1 on the position
# the decoder must read and 0 elsewhere. Mind which letter a row *writes*, not which it reads.

# %%
def copy_attention(n):
    """Ideal cross-attention (n, n + 1) of the copy task: row t writes letter t."""
    # BEGIN SOLUTION
    return np.eye(n, n + 1)
    # END SOLUTION


# %%
EXERCISES["copy_attention"].check(copy_attention)

# %% [markdown]
# ## See it: a copy model, trained on the spot
#
# 400 steps of the copy task, same model, string lengths and seed. We measure where its rows
# look, on the diagonal $t \mapsto t$ (computed here, not from your function).

# %%
copy_config = TrainConfig(task="copy", task_options={"max_len": 8}, steps=400, warmup=50,
                          eval_every=0, n_heldout=200, seed=0)
copier = Trainer(copy_config, progress=False)
copier.train()
copy_em = copier.history.final_eval["exact_match"]
maps_copy = cross_attention(copier.model, copier.heldout_pairs[:200], copier.task)
mass_diag, hits_diag = mass_on(maps_copy, lambda t, n: t)
mass_anti, _ = mass_on(maps_copy, anti_diagonal)
print(f"copy model: exact match {copy_em:.3f}; weight on the diagonal {mass_diag:.3f} "
      f"(largest there {hits_diag:.0%} of rows), on the anti-diagonal {mass_anti:.3f}")
assert mass_diag > 0.45 and hits_diag > 0.75 and mass_anti < 0.2

measured = cross_attention(copier.model, [(demo, demo)], copier.task)[0][:-1]  # letter rows
keys, queries = list(demo) + ["<eos>"], ["<bos>"] + list(demo[:-1])
fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.9))
plot_attention(measured, keys, queries, ax=axes[0], title=f"copy model, measured: {demo!r}")
plot_attention(np.eye(8, 9), keys, queries, ax=axes[1], title="ideal")
fig.suptitle("cross-attention of the copy task (rows that write a letter)")
fig.tight_layout()
plt.show()

# %% [markdown]
# **Next:** notebook 9, *Pre-LN vs post-LN*: why this post-LN model needed its learning-rate
# warm-up, seen in the gradients at initialisation.
