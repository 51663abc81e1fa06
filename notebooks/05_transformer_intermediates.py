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
# # 5 · A Transformer, every intermediate named
#
# **What you learn:** how the encoder–decoder Transformer of *Attention Is All You Need* is put
# together, how it is trained with *teacher forcing*, and how to read any activation inside it,
# and the gradient of a real loss with respect to that activation, by a dotted name. You will
# check the two masks at work (the decoder never sees the future; padding is never seen at all)
# and check the gradient of the whole model against finite differences. You build the decoder's
# input and labels yourself.
#
# **Read first:** notebook 1 (the op contract), notebook 3 (attention and its masks) and
# notebook 4 (positions and embeddings).
#
# **Runs in:** about 10 seconds on a laptop CPU.

# %%
import matplotlib.pyplot as plt
import numpy as np

import nanotf
from nanotf.course import EXERCISES
from nanotf.data import BOS_ID, EOS_ID, PAD_ID, get_task, make_batch
from nanotf.functional import cross_entropy_backward, cross_entropy_forward
from nanotf.gradcheck import gradcheck_module
from nanotf.models import Transformer
from nanotf.nn import Module
from nanotf.viz import plot_attention

plt.rcParams["figure.dpi"] = 90

# %% [markdown]
# ## A batch of a real task
#
# nanotf ships small tasks whose answers can be checked exactly. Here: *reverse the string*.
# A batch holds a few (source, target) pairs, encoded as token ids and padded to the longest
# sequence of the batch with `<pad>` (id 0). The source ends with `<eos>`; the target is
# wrapped in `<bos>` … `<eos>`. The masks are True at real tokens.

# %%
task = get_task("reverse")
vocab = task.tgt_vocab  # source and target share one character vocabulary here
V = len(vocab)
pairs = task.sample(4, 3)  # 4 random pairs, seed 3
batch = make_batch(pairs, task)
print("vocabulary:", vocab.tokens)
print("pairs:", pairs)
print("src (B, S) =", batch.src.shape, "\n", batch.src)
print("tgt (B, T) =", batch.tgt.shape, "\n", batch.tgt)
print("src_mask of example 3:", batch.src_mask[3].astype(int))

# %% [markdown]
# ## Teacher forcing
#
# The decoder models the target one token at a time, each conditioned on the source $x$ and on
# the tokens before it:
#
# $$p(y_1, \dots, y_{n+1} \mid x) = \prod_{t=1}^{n+1} p(y_t \mid y_0, \dots, y_{t-1}, x),
# \qquad y_0 = \texttt{<bos>},\; y_{n+1} = \texttt{<eos>}.$$
#
# In training we do not let the model feed itself its own guesses: we hand it the *true*
# previous tokens (teacher forcing) and compute every position in one parallel pass. The
# decoder reads `tgt_in` $= (y_0, \dots, y_n)$, the target shifted right behind `<bos>`, and
# at position $t$ predicts `tgt_out[t]` $= y_{t+1}$, the target shifted left and ended by
# `<eos>`. The causal mask (position $t$ attends to positions $\le t$ only) keeps position $t$
# from reading $y_{t+1}$, its own answer. The loss is the mean over the real labels:
#
# $$L = -\frac{1}{N}\sum_{b,t\,:\,\texttt{tgt\_out}_{bt} \ne \texttt{<pad>}}
# \log \mathrm{softmax}(\mathrm{logits}_{bt})_{\texttt{tgt\_out}_{bt}}, \qquad N = \#\{\text{real
# labels}\}.$$

# %% [markdown]
# ## Exercise: build `tgt_in` and `tgt_out`
#
# Write `my_shift_targets(targets, bos_id, eos_id, pad_id)`. `targets` is a `(B, L)` integer
# array of target symbols, each row its $n_b$ symbols followed by `pad_id` (no `<bos>`, no
# `<eos>`). Return `(tgt_in, tgt_out)`, both `(B, L + 1)` integer arrays:
#
# * `tgt_in[b]` $= (\texttt{<bos>}, y_1, \dots, y_{n_b}, \texttt{<pad>}, \dots)$: shifted right;
# * `tgt_out[b]` $= (y_1, \dots, y_{n_b}, \texttt{<eos>}, \texttt{<pad>}, \dots)$: the `<eos>`
#   goes right after the last symbol of *each* row, so rows of different lengths put it in
#   different columns.
#
# A row may be full (no padding) or empty (no symbols). No loops over positions needed.

# %%
def my_shift_targets(targets, bos_id, eos_id, pad_id):
    """targets (B, L) -> tgt_in (B, L+1) = <bos> + row, tgt_out (B, L+1) = row + <eos> + pads."""
    # BEGIN SOLUTION
    targets = np.asarray(targets)
    b = targets.shape[0]
    lengths = (targets != pad_id).sum(axis=1)  # (B,) symbols per row
    tgt_in = np.concatenate([np.full((b, 1), bos_id, dtype=targets.dtype), targets], axis=1)
    tgt_out = np.concatenate([targets, np.full((b, 1), pad_id, dtype=targets.dtype)], axis=1)
    tgt_out[np.arange(b), lengths] = eos_id  # the <eos> right after each row's last symbol
    return tgt_in, tgt_out
    # END SOLUTION


# %%
EXERCISES["shift_targets"].check(my_shift_targets)

# %% [markdown]
# nanotf's `Batch` does the same with two slices of `tgt` $= (y_0, \dots, y_{n+1},
# \texttt{<pad>}, \dots)$: `tgt_in = tgt[:, :-1]` and `tgt_out = tgt[:, 1:]`. The one
# difference from your `tgt_in`: in a row shorter than the longest, the slice keeps `<eos>` as
# an *input* at position $n+1$. Its label there is `<pad>`, so the loss ignores that position,
# and (causal mask) no earlier position can see it: it changes nothing. From here on the
# notebook uses nanotf's batch.

# %%
print("tgt_in  =\n", batch.tgt_in)
print("tgt_out =\n", batch.tgt_out)
assert (batch.tgt_in[:, 0] == BOS_ID).all() and (batch.tgt_out == EOS_ID).sum() == len(batch)

# %% [markdown]
# ## The model
#
# ```
# src (B, S) ─ embed·√C + PE ─ N × EncoderLayer ──────────────────────┐ memory (B, S, C)
# tgt_in (B, T) ─ embed·√C + PE ─ N × DecoderLayer(·, memory) ─ out_proj ─ logits (B, T, V)
# ```
#
# An **encoder layer** (post-LN, as in the paper) is $h = \mathrm{LN}_1(x + \mathrm{SelfAttn}(x))$,
# then $\mathrm{LN}_2(h + \mathrm{FFN}(h))$. A **decoder layer** has three sub-layers: causal
# self-attention over the target, *cross-attention* whose queries come from the decoder and
# whose keys and values come from the encoder's output `memory`, and the FFN, each followed by
# Add & Norm. Three attentions, three masks:
#
# | attention | queries | keys / values | a query may look at |
# | --- | --- | --- | --- |
# | encoder self | source | source | every real source token |
# | decoder self | target | target | real target tokens at or before its own position |
# | cross | target | memory (source) | every real source token |
#
# A small model: width $C = 32$, 4 heads, 2 + 2 layers, FFN width 64. Dropout is 0 so that every
# number below is reproducible (and the finite differences at the end see a deterministic
# function). The model is untrained: its attention is not yet about reversing anything, but
# its masks already work, and its gradients are the ones the first training step would use.

# %%
nanotf.manual_seed(0)
model = Transformer(V, V, d_model=32, n_heads=4, n_encoder_layers=2, n_decoder_layers=2,
                    d_ff=64, dropout=0.0)
print(f"{model.num_parameters():,} parameters")

logits = model.forward(batch.src, batch.tgt_in, src_mask=batch.src_mask,
                       tgt_mask=batch.tgt_in_mask)  # (B, T, V)
loss, ce_cache = cross_entropy_forward(logits, batch.tgt_out, ignore_index=PAD_ID)
print("logits", logits.shape, logits.dtype)
print(f"loss {float(loss):.4f} over {batch.n_tokens} labels (a uniform guess: log V = "
      f"{np.log(V):.4f})")

# %% [markdown]
# ## The backward of a real loss
#
# The loss's backward gives $\partial L/\partial\,\mathrm{logits} = (p - \mathrm{onehot}(y))/N$
# at real labels and exactly 0 at ignored ones (notebook 6 derives it). `model.backward` takes
# that array and runs the whole model in reverse, stack by stack, adding every parameter's
# gradient into its `.grad`. There is no autograd: every step is a hand-written backward.

# %%
dlogits = cross_entropy_backward(1.0, ce_cache)  # (B, T, V)
model.zero_grad()
model.backward(dlogits)
grads = {name: p.grad for name, p in model.named_parameters()}
print(f"{len(grads)} parameter gradients, e.g. out_proj.weight: {grads['out_proj.weight'].shape}")

# %% [markdown]
# ## Every intermediate, by name
#
# Each module keeps what its forward saved (the attention scores and probabilities, the FFN's
# pre-activation, LayerNorm's $\hat x$, …) and, after a backward, the gradient of the loss with
# respect to some of them. The dotted names are those of the module tree, as in
# `state_dict()`:
#
# * `model.intermediate(name)`: the activation of the last forward;
# * `model.intermediate_grad(name)`: $\partial L/\partial(\text{that activation})$;
# * `model.named_intermediates()`: every saved name.

# %%
names = [name for name, _ in model.named_intermediates()]
print(f"{len(names)} intermediates; those of decoder layer 1:")
for name, value in model.named_intermediates():
    if name.startswith("decoder.layers.1."):
        print(f"  {name:40} {value.shape}")

# the ones used below (arrays of this forward and backward: a later forward makes new ones)
enc_probs = model.intermediate("encoder.layers.0.self_attn.probs")  # (B, H, S, S)
self_probs = model.intermediate("decoder.layers.0.self_attn.probs")  # (B, H, T, T)
self_dscores = model.intermediate_grad("decoder.layers.0.self_attn.scores")  # dL/dscores
probs = model.intermediate("decoder.layers.1.cross_attn.probs")  # (B, H, T, S)
dprobs = model.intermediate_grad("decoder.layers.1.cross_attn.probs")  # dL/dprobs
dscores = model.intermediate_grad("decoder.layers.1.cross_attn.scores")
dmemory = model.intermediate_grad("memory")  # (B, S, C): what the decoder sends the encoder
print("cross-attention probs", probs.shape, "rows sum to", np.unique(probs.sum(-1).round(5)))

# %% [markdown]
# ## The causal mask hides the future exactly
#
# The decoder's self-attention sets the score of every key $j > t$ to the most negative float
# before the softmax and multiplies the probabilities by the mask after it, so $P_{tj} = 0$
# exactly for $j > t$. And since the softmax backward
# $\mathrm{d}S = P \odot (\mathrm{d}P - \sum_j \mathrm{d}P_j P_j)$ multiplies by $P$, those
# scores get a gradient of exactly 0 too: no position's loss reaches into a later key.

# %%
future = np.triu(np.ones(self_probs.shape[-2:], dtype=bool), k=1)  # (T, T) True where j > t
p_future = float(np.abs(self_probs[..., future]).max())
ds_future = float(np.abs(self_dscores[..., future]).max())
print(f"decoder self-attention above the diagonal: largest P {p_future}, "
      f"largest dL/dS {ds_future}")
assert p_future == 0.0 and ds_future == 0.0

# %% [markdown]
# Every other part of a layer (LayerNorm, FFN, the projections, the output layer) works on
# each position separately. So the logits at positions $< j$ cannot depend on the token at
# position $j$ in any way: change it, and they stay the same to the last bit, while the logits
# from $j$ on change.

# %%
j = 3
tgt_changed = batch.tgt_in.copy()
tgt_changed[:, j] = np.where(tgt_changed[:, j] == 4, 5, 4)  # another letter at position j
changed = model.forward(batch.src, tgt_changed, src_mask=batch.src_mask,
                        tgt_mask=tgt_changed != PAD_ID)
before = float(np.abs(changed[:, :j] - logits[:, :j]).max())
after = float(np.abs(changed[:, j:] - logits[:, j:]).max())
print(f"positions < {j}: largest logit change {before}; positions >= {j}: {after:.3f}")
assert before == 0.0 and after > 0.1

# %% [markdown]
# ## Padded keys get zero weight
#
# A key-padding mask (True at real tokens) removes the padded keys from every attention that
# reads them: the encoder's self-attention and the cross-attention (source padding), and the
# decoder's self-attention (target padding). Their weight is exactly 0, and therefore so is
# the gradient the loss sends into the padded part of `memory`. Whatever sits at a padded
# position is invisible: put letters where the `<pad>`s were (keeping the mask) and no logit
# changes.

# %%
def on_padded_keys(a, key_pad):
    """a: (B, H, Tq, Tk), key_pad: (B, Tk) True at padding -> a's entries at padded keys."""
    return a.transpose(0, 3, 1, 2)[key_pad]  # (number of padded keys, H, Tq)


src_pad = ~batch.src_mask  # (B, S) True at padding
tgt_pad = ~batch.tgt_in_mask  # (B, T)
weights = {
    "encoder self": on_padded_keys(enc_probs, src_pad),
    "cross": on_padded_keys(probs, src_pad),
    "decoder self": on_padded_keys(self_probs, tgt_pad),
}
for kind, w in weights.items():
    print(f"{kind:13} attention: largest weight on a padded key {np.abs(w).max()}")
    assert np.abs(w).max() == 0.0
print("largest gradient reaching a padded memory position:", np.abs(dmemory[src_pad]).max())
assert np.abs(dmemory[src_pad]).max() == 0.0

src_filled = np.where(batch.src_mask, batch.src, 7)  # letters where the <pad>s were
filled = model.forward(src_filled, batch.tgt_in, src_mask=batch.src_mask,
                       tgt_mask=batch.tgt_in_mask)
print("largest logit change:", float(np.abs(filled - logits).max()))
assert float(np.abs(filled - logits).max()) == 0.0

# %% [markdown]
# ## The three attention kinds
#
# One head of each attention of the first layer, for example 3 of the batch (`dgg` → `ggd`),
# padding included. Rows are queries, columns keys; each row sums to 1. Look for the `<pad>`
# columns (all zero), and the upper triangle of the decoder's self-attention (all zero). (Run
# the forward of the unchanged batch again first: the cells above ran others, and a module
# keeps the intermediates of its *last* forward.)

# %%
logits = model.forward(batch.src, batch.tgt_in, src_mask=batch.src_mask,
                       tgt_mask=batch.tgt_in_mask)
b, head = 3, 0
src_tok = [task.src_vocab.tokens[i] for i in batch.src[b]]
tin_tok = [vocab.tokens[i] for i in batch.tgt_in[b]]
maps = [
    ("encoder.layers.0.self_attn.probs", src_tok, src_tok, "encoder self-attention"),
    ("decoder.layers.0.self_attn.probs", tin_tok, tin_tok, "decoder self-attention"),
    ("decoder.layers.0.cross_attn.probs", src_tok, tin_tok, "cross-attention"),
]
fig, axes = plt.subplots(1, 3, figsize=(12, 4.2))
for ax, (name, keys, queries, title) in zip(axes, maps, strict=True):
    plot_attention(model.intermediate(name)[b, head], keys, queries, ax=ax, title=title,
                   colorbar=False)
fig.suptitle(f"layer 0, head {head}, example {b}: {pairs[b][0]!r} → {pairs[b][1]!r}")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## An attention map beside its gradient
#
# The cross-attention of the last decoder layer, head 0, example 0, with $\partial L/\partial P$
# and $\partial L/\partial S$ (scores). $\mathrm{d}P$ is not 0 on padded keys — changing a
# probability there *would* change the output — but the softmax backward multiplies by
# $P = 0$, so $\mathrm{d}S$ is. And the rows of the positions whose label is `<pad>` get no
# gradient at all: the loss ignores them, and the only positions that read them (causal mask:
# the later ones) are ignored too.

# %%
b = 3
n_real = int(batch.tgt_out_mask[b].sum())  # labels the loss counts in example b
tout_tok = [vocab.tokens[i] for i in batch.tgt_out[b]]
src_tok = [task.src_vocab.tokens[i] for i in batch.src[b]]
panels = [(probs, "P (cross-attention)", "viridis"), (dprobs, "dL/dP", "RdBu_r"),
          (dscores, "dL/dS", "RdBu_r")]
fig, axes = plt.subplots(1, 3, figsize=(12, 4.2))
for ax, (arr, title, cmap) in zip(axes, panels, strict=True):
    m = arr[b, 0]
    lim = float(np.abs(m).max())
    im = ax.imshow(m, cmap=cmap, vmin=0 if cmap == "viridis" else -lim, vmax=lim)
    ax.set_xticks(range(len(src_tok)), src_tok, rotation=90, fontsize=8)
    ax.set_yticks(range(len(tout_tok)), tout_tok, fontsize=8)
    ax.set_xlabel("key (source)"); ax.set_ylabel("query (labelled by its target)")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
fig.suptitle(f"decoder layer 1, head 0, example {b}")
fig.tight_layout()
plt.show()
dp_pad = float(np.abs(on_padded_keys(dprobs, src_pad)).max())
ds_pad = float(np.abs(on_padded_keys(dscores, src_pad)).max())
ignored_rows = float(np.abs(dprobs[b, :, n_real:]).max())
print(f"on padded keys: largest |dP| {dp_pad:.2e}, largest |dS| {ds_pad}; "
      f"largest |dP| in the rows of ignored positions: {ignored_rows}")
assert dp_pad > 0.0 and ds_pad == 0.0 and ignored_rows == 0.0

# %% [markdown]
# ## Gradients by parameter
#
# The norm $\lVert\partial L/\partial W\rVert$ of every weight matrix after this one backward,
# in the order the forward uses them. In this untrained model the value projections get larger
# gradients than the query and key projections: with nearly uniform attention, what is
# averaged matters more than where the average looks. One kind of parameter is missing from
# the plot on purpose: the key-projection biases. Adding the same $b_k$ to every key adds
# $q\cdot b_k$ to every score of a row, which the softmax ignores, so their gradient is 0 up to
# float32 round-off (notebook 3).

# %%
weights_only = [(n, float(np.linalg.norm(g))) for n, g in grads.items() if g.ndim > 1]
labels = [n.replace(".weight", "").replace("layers.", "") for n, _ in weights_only]
colours = ["tab:green" if n.startswith("encoder") else "tab:blue" if n.startswith("decoder")
           else "tab:gray" for n, _ in weights_only]
fig, ax = plt.subplots(figsize=(7, 7))
ax.barh(range(len(labels)), [v for _, v in weights_only], color=colours)
ax.set_yticks(range(len(labels)), labels, fontsize=7)
ax.invert_yaxis()
ax.set_xlabel("‖∂L/∂W‖ (Frobenius)")
ax.set_title("gradient norm of each weight matrix (green: encoder, blue: decoder)", fontsize=10)
fig.tight_layout()
plt.show()

k_bias = max(float(np.linalg.norm(g)) for n, g in grads.items() if n.endswith("k_proj.bias"))
q_bias = min(float(np.linalg.norm(g)) for n, g in grads.items() if n.endswith("q_proj.bias"))
print(f"largest key-bias gradient {k_bias:.1e}, smallest query-bias gradient {q_bias:.1e}")
assert k_bias < 1e-6 < 1e-2 < q_bias

# %% [markdown]
# ## The whole model against finite differences
#
# Is every one of those gradients right? Wrap model and loss in one module whose forward
# returns the loss $L(\theta)$ (a number) and whose backward runs the loss's backward and then
# the model's, and let `gradcheck_module` nudge parameters one at a time (seven-point central
# differences, notebook 2) and compare $\partial L/\partial\theta$ with what the backward
# wrote into `.grad`.
#
# Finite differences need float64 (notebook 2), so the model is rebuilt in float64, tiny
# (width 8, 1 + 1 layers), and with the GELU activation instead of ReLU: ReLU's kink at 0
# makes a finite difference that steps across it wrong, not the backward. It samples 8 entries
# of each parameter tensor.

# %%
class TeacherForcedLoss(Module):
    """forward(src, tgt_in, tgt_out) -> the mean cross-entropy; backward(dloss) fills .grad."""

    def __init__(self, model):
        super().__init__()
        self.model = model  # registered: its parameters are ours, named "model.…"

    def forward(self, src, tgt_in, tgt_out):
        logits = self.model.forward(src, tgt_in)  # (B, T, V)
        loss, self._ce_cache = cross_entropy_forward(logits, tgt_out, ignore_index=PAD_ID)
        return loss  # 0-d

    def backward(self, dloss):
        self.model.backward(cross_entropy_backward(dloss, self._ce_cache))


nanotf.set_default_dtype("float64")
nanotf.manual_seed(1)
tiny = Transformer(V, V, d_model=8, n_heads=2, n_encoder_layers=1, n_decoder_layers=1, d_ff=16,
                   dropout=0.0, activation="gelu")
nanotf.set_default_dtype("float32")  # back to the default for anything built later
errors = gradcheck_module(TeacherForcedLoss(tiny), batch.src, batch.tgt_in, batch.tgt_out,
                          max_per_tensor=8)
worst = max(errors, key=errors.get)
print(f"{len(errors)} tensors checked; largest relative error {errors[worst]:.1e} ({worst})")
assert max(errors.values()) <= 1e-8

# %% [markdown]
# **Next:** notebook 6, *Loss and label smoothing*: the cross-entropy whose gradient started
# every backward here, what `ignore_index` does, and why the trained loss never reaches 0.
