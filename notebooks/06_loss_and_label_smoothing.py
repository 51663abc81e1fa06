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
# # 6 · Loss and label smoothing
#
# **What you learn:** the cross-entropy loss that starts every backward pass of a Transformer:
# its forward (through log-softmax, never `log(softmax)`), its famous gradient $p - y$, how
# `ignore_index` keeps padding out of it, and *label smoothing*, which trains towards a slightly
# blurred target and therefore has a floor above 0. You will derive that floor yourself.
#
# **Read first:** notebook 1 (softmax and its backward) and notebook 5 (teacher forcing, where
# the labels come from).
#
# **Runs in:** about 5 seconds on a laptop CPU.

# %%
import matplotlib.pyplot as plt
import numpy as np

from nanotf.course import EXERCISES
from nanotf.data import PAD_ID
from nanotf.functional import cross_entropy_backward, cross_entropy_forward, log_softmax_forward
from nanotf.gradcheck import gradcheck
from nanotf.train import smoothed_loss_floor

plt.rcParams["figure.dpi"] = 90
rng = np.random.default_rng(0)

# %% [markdown]
# ## Cross-entropy from logits
#
# A model outputs *logits* $z \in \mathbb R^V$ per position; softmax turns them into
# probabilities $p_c = e^{z_c} / \sum_k e^{z_k}$. The loss of the right class $y$ is its
# negative log-probability, which is best computed in log space:
#
# $$\ell = -\log p_y = -z_y + \log\sum_k e^{z_k} = -\big(\mathrm{log\_softmax}(z)\big)_y .$$
#
# (`log(softmax(z))` would round a tiny $p_y$ to 0 and return $\infty$; log-softmax subtracts
# the row max first and never exponentiates the answer.) Differentiating, with
# $\partial \log\sum_k e^{z_k} / \partial z_c = p_c$:
#
# $$\frac{\partial \ell}{\partial z_c} = p_c - [c = y], \qquad\text{so}\qquad
# \mathrm{d}z = p - \mathrm{onehot}(y).$$
#
# Over $N$ positions the loss is the mean, so each row's gradient is divided by $N$. Every row
# of $\mathrm{d}z$ sums to $\sum_c p_c - 1 = 0$: adding a constant to all logits of a row
# changes no probability, so the loss cannot care.

# %%
V, N = 7, 5
logits = rng.normal(size=(N, V)) * 2.0  # (N, V), float64 for checking
targets = rng.integers(0, V, size=N)  # (N,)

loss, cache = cross_entropy_forward(logits, targets)
logp, _ = log_softmax_forward(logits)
by_hand = -logp[np.arange(N), targets].mean()
print(f"loss {float(loss):.6f}, by hand {by_hand:.6f}")
assert abs(float(loss) - by_hand) < 1e-14

dlogits = cross_entropy_backward(1.0, cache)  # (N, V)
p = np.exp(logp)
onehot = np.eye(V)[targets]
assert np.abs(dlogits - (p - onehot) / N).max() < 1e-15  # the formula above, exactly
row_sums = np.abs(dlogits.sum(axis=-1)).max()
print(f"largest |Σ_c dz_c| over the rows: {row_sums:.1e}")
assert row_sums < 1e-15

errors = gradcheck(cross_entropy_forward, cross_entropy_backward,
                   {"logits": logits, "targets": targets}, wrt=["logits"])
print(f"against finite differences: {errors['logits']:.1e}")
assert errors["logits"] < 1e-9

# %% [markdown]
# ## The loss of knowing nothing: $\log V$
#
# Equal logits give the uniform distribution $p_c = 1/V$, whatever the label: $\ell = \log V$.
# That is where an untrained model should start (notebook 5's started at 3.1 against
# $\log 14 = 2.64$: its logits are not quite equal), and a loss above it means the model is
# worse than guessing.

# %%
for v in (2, 14, 1000, 37000):
    flat = np.full((3, v), 1.7)  # equal logits, any value
    got = float(cross_entropy_forward(flat, np.array([0, 1, v - 1]))[0])
    print(f"V = {v:5}: loss {got:.12f}, log V {np.log(v):.12f}")
    assert abs(got - np.log(v)) < 1e-12

# %% [markdown]
# ## `ignore_index`: padding is not a label
#
# A batch of targets is padded to its longest sequence (notebook 5). The padded positions must
# neither add to the loss nor to the count it is averaged over:
#
# $$L = \frac{1}{N_{\text{real}}} \sum_{n:\, y_n \ne \text{pad}} \ell_n ,\qquad
# \mathrm{d}z_n = \frac{p_n - \mathrm{onehot}(y_n)}{N_{\text{real}}} \text{ at real labels},
# \quad 0 \text{ at padded ones.}$$
#
# nanotf writes the zeros with `copyto`, not by multiplying with the mask, so even NaN logits at
# a padded position (0 · NaN would be NaN) cannot leak into the loss or the gradient.

# %%
B, T = 2, 4
logits = rng.normal(size=(B, T, V))  # (B, T, V)
tgt_out = np.array([[3, 5, 2, PAD_ID], [4, 2, PAD_ID, PAD_ID]])  # (B, T), <pad> = 0
real = tgt_out != PAD_ID
loss, cache = cross_entropy_forward(logits, tgt_out, ignore_index=PAD_ID)
dlogits = cross_entropy_backward(1.0, cache)  # (B, T, V)
only_real = cross_entropy_forward(logits[real], tgt_out[real])[0]  # the real rows alone
print(f"loss {float(loss):.6f} = mean over the {real.sum()} real labels {float(only_real):.6f}")
assert abs(float(loss) - float(only_real)) < 1e-15
assert (dlogits[~real] == 0).all()

poisoned = logits.copy()
poisoned[~real] = np.nan  # garbage at the padded positions
loss2, cache2 = cross_entropy_forward(poisoned, tgt_out, ignore_index=PAD_ID)
dlogits2 = cross_entropy_backward(1.0, cache2)
print("with NaN logits at the padding:", float(loss2), "finite gradient:",
      bool(np.isfinite(dlogits2).all()))
assert float(loss2) == float(loss) and (dlogits2 == dlogits).all()

# %% [markdown]
# ## Label smoothing
#
# Trained on one-hot targets, a model can always lower the loss by making the right logit
# larger still: the optimum is at $p_y = 1$, infinitely far away, and the logits grow without
# end. *Label smoothing* (Szegedy et al. 2016; the Transformer paper uses $\epsilon = 0.1$)
# trains against a blurred target instead: keep $1 - \epsilon$ on the label and spread
# $\epsilon$ evenly over all $V$ classes,
#
# $$q = (1 - \epsilon)\,\mathrm{onehot}(y) + \frac{\epsilon}{V}\mathbf 1,\qquad
# \ell = -\sum_c q_c \log p_c = (1-\epsilon)(-\log p_y) + \epsilon\,\frac{1}{V}\sum_c
# (-\log p_c).$$
#
# The gradient is the same calculation as before, with $q$ in place of the one-hot (and
# $\sum_c q_c = 1$ in place of 1):
#
# $$\mathrm{d}z = p - q .$$
#
# Its rows still sum to 0, and equal logits still give $\log V$ (because $\sum_c q_c = 1$).

# %%
eps = 0.1
logits = rng.normal(size=(N, V)) * 2.0
loss, cache = cross_entropy_forward(logits, targets, label_smoothing=eps)
dlogits = cross_entropy_backward(1.0, cache)
q = (1 - eps) * np.eye(V)[targets] + eps / V  # (N, V) smoothed targets
p = np.exp(log_softmax_forward(logits)[0])
by_hand = -(q * np.log(p)).sum(axis=-1).mean()
print(f"smoothed loss {float(loss):.6f}, by hand {by_hand:.6f}")
assert abs(float(loss) - by_hand) < 1e-14
assert np.abs(dlogits - (p - q) / N).max() < 1e-15
row_sums = np.abs(dlogits.sum(axis=-1)).max()
errors = gradcheck(cross_entropy_forward, cross_entropy_backward,
                   {"logits": logits, "targets": targets}, wrt=["logits"],
                   forward_kwargs={"label_smoothing": eps})
print(f"largest |Σ_c dz_c| {row_sums:.1e}; against finite differences {errors['logits']:.1e}")
assert row_sums < 1e-15 and errors["logits"] < 1e-9
flat = float(cross_entropy_forward(np.zeros((3, V)), targets[:3], label_smoothing=eps)[0])
assert abs(flat - np.log(V)) < 1e-12

# %% [markdown]
# Side by side, the gradient of one confident row ($p_y = 0.98$) with and without smoothing
# (remember that a step goes *against* the gradient). Without smoothing the label is still
# pushed up and every other class down, as it will be for ever. With $\epsilon = 0.1$ the push
# stops where $p = q$, and here, beyond it, reverses: $p_y$ exceeds
# $q_y = 1 - \epsilon + \epsilon/V = 0.914$, so the label is pushed *down* and the others up.

# %%
row = np.array([[0.5, 6.0, -1.0, 0.0, 1.0, -0.5, 0.2]])  # one row of logits (1, V), label 1
label = np.array([1])
p_label = float(np.exp(log_softmax_forward(row)[0])[0, 1])
fig, axes = plt.subplots(1, 2, figsize=(9, 3))
for ax, e in zip(axes, (0.0, 0.1), strict=True):
    dz = cross_entropy_backward(1.0, cross_entropy_forward(row, label, label_smoothing=e)[1])[0]
    ax.bar(range(V), dz, color=["tab:orange" if c == 1 else "tab:blue" for c in range(V)])
    ax.axhline(0, color="gray", lw=0.8)
    ax.set_title(f"dz = p − q, ε = {e} (label: class 1, orange)", fontsize=10)
    ax.set_xlabel("class"); ax.set_ylim(-0.08, 0.08)
    assert (dz[1] > 0) == (e > 0)  # with smoothing, over-confidence is pushed back
fig.suptitle(f"one row with p_label = {p_label:.3f}", fontsize=10)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## The floor of the smoothed loss
#
# The gradient $p - q$ vanishes where $p = q$. That point is the minimum: the loss is
# $-\sum_c q_c\log p_c = H(q) + \mathrm{KL}(q\,\|\,p)$, the entropy of $q$ (a constant) plus
# the Kullback–Leibler divergence, which is $\ge 0$ and 0 only at $p = q$. So no model, however
# good, gets below
#
# $$L_{\min}(\epsilon, V) = H(q) = -\sum_c q_c \log q_c ,$$
#
# and a training loss that sits there is a perfect fit, not a plateau. With $\epsilon = 0$,
# $q$ is one-hot and the floor is 0.

# %% [markdown]
# ## Exercise: derive the floor
#
# Write `my_loss_floor(eps, V)`: the least possible label-smoothed cross-entropy, as a number,
# for smoothing `eps` in $[0, 1]$ and `V` classes. Work out the two values $q$ takes (on the
# label, on each of the $V - 1$ others) and add up $-q\log q$; no arrays needed. Mind
# $\epsilon = 0$, where $0 \log 0$ counts as 0.

# %%
def my_loss_floor(eps, V):
    """H(q) for q = (1 − eps)·onehot + eps/V over V classes."""
    # BEGIN SOLUTION
    hit, miss = 1.0 - eps + eps / V, eps / V  # q on the label, q on each other class
    floor = -hit * np.log(hit) if hit < 1.0 else 0.0
    if miss > 0.0:
        floor -= (V - 1) * miss * np.log(miss)
    return floor
    # END SOLUTION


# %%
EXERCISES["loss_floor"].check(my_loss_floor)

# %% [markdown]
# nanotf's own formula is `nanotf.train.smoothed_loss_floor`, the number the training loop
# prints as `loss_floor`. With $\epsilon = 0.1$ and the 14 tokens of the reverse task it is
# 0.547: the final training loss of `python -m nanotf train`. Three checks that it is the
# minimum: it equals $H(q)$ summed over an array; the loss of a model that outputs exactly
# $p = q$ (logits $= \log q$) equals it, with a zero gradient; and every nearby $p$ does worse.
# (With $\epsilon = 0$ the floor 0 is only approached, as the logits grow without end.)

# %%
for e, v in [(0.1, 14), (0.1, 37000), (0.3, 5), (1.0, 14)]:
    floor = smoothed_loss_floor(e, v)
    q = np.full(v, e / v)  # (V,) the smoothed target of label 0
    q[0] += 1 - e
    entropy = -(q[q > 0] * np.log(q[q > 0])).sum()
    at_q_logits = np.log(q)[None]  # logits = log q  ->  p = q
    loss_q, cache_q = cross_entropy_forward(at_q_logits, np.array([0]), label_smoothing=e)
    grad_q = np.abs(cross_entropy_backward(1.0, cache_q)).max()
    nudged = at_q_logits + 0.05 * rng.normal(size=(20, v))  # 20 nearby models
    worse = min(float(cross_entropy_forward(z[None], np.array([0]), label_smoothing=e)[0])
                for z in nudged)
    print(f"ε = {e}, V = {v:5}: floor {floor:.6f}, H(q) {entropy:.6f}, loss at p = q "
          f"{float(loss_q):.6f} (largest |dz| {grad_q:.1e}), best nearby {worse:.6f}")
    assert abs(floor - entropy) < 1e-12 and abs(float(loss_q) - floor) < 1e-9
    assert grad_q < 1e-12 and worse > floor
assert abs(smoothed_loss_floor(0.1, 14) - 0.5473) < 1e-4
assert smoothed_loss_floor(0.0, 14) == 0.0  # approached as the logits grow, never reached

# %% [markdown]
# ## Loss against confidence
#
# Take a model that puts probability $c$ on the label and spreads $1 - c$ evenly over the
# others. Without smoothing the loss $-\log c$ falls all the way to 0 as $c \to 1$. With
# $\epsilon = 0.1$ it has a minimum at $c^* = 1 - \epsilon + \epsilon/V$, of height the floor,
# and rises again beyond: over-confidence is now penalised. In logits, the best margin between
# the label and the other classes is finite, $\log(c^* (V-1)/(1-c^*)) = \log((1 - \epsilon +
# \epsilon/V)\,V/\epsilon)$, where without smoothing it is $+\infty$.

# %%
V = 14
conf = np.linspace(0.02, 0.9999, 400)  # probability on the label
probs = np.empty((conf.size, V))  # (400, V): one model per row
probs[:] = ((1 - conf) / (V - 1))[:, None]
probs[:, 0] = conf  # the label is class 0
margin = np.log(conf * (V - 1) / (1 - conf))  # z_label − z_other
curves = {}
for e in (0.0, 0.1):
    curves[e] = np.array([float(cross_entropy_forward(np.log(r)[None], np.array([0]),
                                                      label_smoothing=e)[0]) for r in probs])
    hit = 1 - e + e / V  # q on the label
    formula = -hit * np.log(conf) - (1 - hit) * np.log((1 - conf) / (V - 1))
    assert np.abs(curves[e] - formula).max() < 1e-12
    assert curves[e].min() >= smoothed_loss_floor(e, V) - 1e-12

fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
for e, colour in [(0.0, "tab:blue"), (0.1, "tab:orange")]:
    floor = smoothed_loss_floor(e, V)
    for ax, x in zip(axes, (conf, margin), strict=True):
        ax.plot(x, curves[e], color=colour, label=f"ε = {e}")
        ax.axhline(floor, color=colour, ls=":", lw=1)
    if e > 0:
        best = 1 - e + e / V
        axes[0].plot([best], [floor], "o", color=colour)
        axes[1].plot([np.log(best * V / e)], [floor], "o", color=colour)
axes[0].set_xlabel("probability on the label, c"); axes[0].set_ylabel("loss")
axes[1].set_xlabel("logit margin z_label − z_other"); axes[1].set_ylim(0, 3)
axes[0].set_title("loss vs confidence (dotted: the floors)", fontsize=10)
axes[1].set_title("the same against the logit margin", fontsize=10)
axes[0].legend()
fig.tight_layout()
plt.show()
i = int(np.argmin(curves[0.1]))
print(f"ε = 0.1: lowest loss {curves[0.1][i]:.4f} at c = {conf[i]:.3f}, margin {margin[i]:.2f}; "
      f"formula: c* = {1 - 0.1 + 0.1 / V:.3f}, margin {np.log((1 - 0.1 + 0.1 / V) * V / 0.1):.2f}")

# %% [markdown]
# ## Against PyTorch
#
# `torch.nn.functional.cross_entropy` has the same `ignore_index` and `label_smoothing` (and
# divides by the number of real labels in the mean too). Where PyTorch is installed, both
# losses and both gradients agree.

# %%
try:
    import torch
except ImportError:
    torch = None

if torch is None:
    print("PyTorch is not installed: comparison skipped")
else:
    logits = rng.normal(size=(B, T, 7))
    loss, cache = cross_entropy_forward(logits, tgt_out, ignore_index=PAD_ID, label_smoothing=0.1)
    dlogits = cross_entropy_backward(1.0, cache)
    zt = torch.tensor(logits, requires_grad=True)
    lt = torch.nn.functional.cross_entropy(zt.reshape(-1, 7), torch.tensor(tgt_out).reshape(-1),
                                           ignore_index=PAD_ID, label_smoothing=0.1)
    lt.backward()
    loss_err = abs(float(loss) - lt.item())
    grad_err = float(np.abs(dlogits - zt.grad.numpy()).max())
    print(f"PyTorch: loss differs by {loss_err:.1e}, gradient by {grad_err:.1e}")
    assert loss_err < 1e-12 and grad_err < 1e-12

# %% [markdown]
# **Next:** notebook 7, *Optimizers and schedules*: what to do with these gradients once the
# backward has written them: SGD, momentum, Adam and AdamW by hand, warm-up and clipping.
