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
# # 7 · Optimizers and schedules
#
# **What you learn:** what happens to a gradient after the backward has written it: plain SGD,
# momentum, Adam and AdamW written out as array updates (nanotf has no autograd and no hidden
# optimizer either), the warm-up schedules Transformers are trained with, and gradient
# clipping. You will see why Adam's first step has the same size for every weight, and race SGD
# against Adam on an ill-conditioned bowl. You write one Adam step yourself.
#
# **Read first:** notebook 5 (where `.grad` gets filled) and notebook 6 (the loss it is the
# gradient of).
#
# **Runs in:** about 5 seconds on a laptop CPU.

# %%
import math

import matplotlib.pyplot as plt
import numpy as np

import nanotf
from nanotf.course import EXERCISES
from nanotf.data import PAD_ID, get_task, make_batch
from nanotf.functional import cross_entropy_backward, cross_entropy_forward
from nanotf.models import Transformer
from nanotf.nn import Parameter
from nanotf.optim import SGD, Adam, AdamW, LRScheduler, clip_grad_norm, cosine_lr, noam_lr

plt.rcParams["figure.dpi"] = 90
rng = np.random.default_rng(0)

# %% [markdown]
# ## What an optimizer does
#
# After a backward every `Parameter` holds its weights $\theta$ in `.data` and the gradient
# $g = \partial L/\partial\theta$ in `.grad`. An optimizer's `step()` reads `.grad` and changes
# `.data` in place; `zero_grad()` clears `.grad` for the next backward (backwards *add* into
# it). Between steps it keeps whatever state its rule needs, one array per parameter.
#
# ## SGD and momentum
#
# Gradient descent steps against the gradient: $\theta \leftarrow \theta - \eta\, g$.
# *Momentum* $\mu$ keeps a running sum of past gradients and steps along it (PyTorch's
# convention, which nanotf follows: the buffer starts as the first gradient):
#
# $$b_1 = g_1,\quad b_t = \mu\, b_{t-1} + g_t,\qquad \theta \leftarrow \theta - \eta\, b_t .$$
#
# Along a direction where the gradient keeps its sign, $b$ grows towards $g/(1-\mu)$ (ten times
# the step for $\mu = 0.9$); where it flips sign from step to step, the terms cancel. Here both
# rules by hand, against `nanotf.optim.SGD`, on the same six random gradients:

# %%
theta0 = rng.normal(size=(3, 4))  # (3, 4) weights, float64
gradients = [rng.normal(size=(3, 4)) for _ in range(6)]
lr, mu = 0.1, 0.9

for momentum in (0.0, mu):
    p = Parameter(theta0.copy())
    opt = SGD([p], lr=lr, momentum=momentum)
    theta, b = theta0.copy(), None
    for g in gradients:
        p.grad[...] = g  # as a backward would have written it
        opt.step()
        b = g.copy() if b is None else momentum * b + g  # by hand
        theta = theta - lr * (b if momentum else g)
    err = np.abs(p.data - theta).max()
    print(f"SGD, momentum {momentum}: nanotf vs by hand after 6 steps: {err:.1e}")
    assert err < 1e-14

# %% [markdown]
# ## Adam
#
# Adam (Kingma & Ba 2015) keeps two running averages per weight: of the gradient ($m$, which
# way to go) and of its square ($v$, how large the gradient usually is), and divides one by the
# square root of the other, so every weight gets its own step size:
#
# $$m_t = \beta_1 m_{t-1} + (1-\beta_1)\, g_t,\qquad v_t = \beta_2 v_{t-1} + (1-\beta_2)\,
# g_t^2,\qquad m_0 = v_0 = 0,$$
#
# $$\hat m_t = \frac{m_t}{1-\beta_1^t},\qquad \hat v_t = \frac{v_t}{1-\beta_2^t},\qquad
# \theta_t = \theta_{t-1} - \eta\, \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}.$$
#
# Why the hats: unrolled, $m_t = (1-\beta_1)\sum_{s \le t} \beta_1^{t-s} g_s$, whose weights
# sum to $1 - \beta_1^t$, not 1. Started at zero, the averages are too small by exactly that
# factor (at $t = 1$, $m_1 = 0.1\, g_1$ for $\beta_1 = 0.9$); dividing by it makes them
# averages again. The Transformer paper uses $\beta = (0.9, 0.98)$, $\epsilon = 10^{-9}$.

# %% [markdown]
# ## Exercise: one Adam step
#
# Write `my_adam_step(theta, g, m, v, t, lr, beta1, beta2, eps)`: update number `t`
# (1, 2, …) of the arrays `theta` with gradient `g`, given the moments `m`, `v` after step
# `t − 1`. Return the new `(theta, m, v)`, where `m` and `v` are the raw running averages (the
# state for the next step), not the bias-corrected ones. No weight decay. The check compares
# it with `nanotf.optim.Adam`, at $t = 1$ and later steps.

# %%
def my_adam_step(theta, g, m, v, t, lr, beta1, beta2, eps):
    """One Adam update: returns (theta, m, v) after step t."""
    # BEGIN SOLUTION
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    m_hat = m / (1 - beta1**t)
    v_hat = v / (1 - beta2**t)
    theta = theta - lr * m_hat / (np.sqrt(v_hat) + eps)
    return theta, m, v
    # END SOLUTION


# %%
EXERCISES["adam_step"].check(my_adam_step)

# %% [markdown]
# ## Adam's first step moves every weight by about $\eta$
#
# At $t = 1$ the bias corrections give $\hat m_1 = g$ and $\hat v_1 = g^2$ exactly, so
#
# $$\Delta\theta = -\eta\,\frac{g}{|g| + \epsilon} \approx -\eta\,\mathrm{sign}(g):$$
#
# the size of the gradient is gone. A weight whose gradient is $10^{-4}$ moves as far as one
# whose gradient is $10^{3}$: $\eta$. SGD's first step, $-\eta g$, spans the same seven orders
# of magnitude as the gradients. (Only gradients near or below $\epsilon$ move less:
# $|g| = \epsilon$ moves by $\eta/2$, $|g| = \epsilon/1000$ by about $\eta/1000$.) So Adam's
# learning rate reads as "how far a weight may move per step", which is why it is usually
# much smaller than a learning rate for SGD (10⁻³ against 10⁻¹ is typical).

# %%
magnitudes = 10.0 ** rng.uniform(-4, 3, size=1000)  # |g| from 1e-4 to 1e3
g = magnitudes * rng.choice([-1.0, 1.0], size=1000)  # (1000,) one gradient per weight
lr = 1e-3
moves = {}
for name, make in [("SGD", lambda ps: SGD(ps, lr=lr)),
                   ("Adam", lambda ps: Adam(ps, lr=lr, betas=(0.9, 0.98), eps=1e-9))]:
    p = Parameter(np.zeros(1000))
    p.grad[...] = g
    make([p]).step()
    moves[name] = np.abs(p.data)  # |Δθ|, since θ started at 0
    print(f"{name:4}: |Δθ| from {moves[name].min():.2e} to {moves[name].max():.2e}")
    assert (np.sign(p.data) == -np.sign(g)).all()  # both step downhill
adam_dev = np.abs(moves["Adam"] / lr - 1).max()
print(f"Adam: largest | |Δθ|/lr − 1 | = {adam_dev:.1e}")
assert adam_dev < 1e-4
assert moves["SGD"].max() / moves["SGD"].min() > 1e6

p = Parameter(np.zeros(3))
p.grad[...] = [1e-9, 1e-12, 1e-6]  # gradients at, below and above eps
Adam([p], lr=lr, eps=1e-9).step()
print("gradients of 1e-9, 1e-12 and 1e-6 move by", np.abs(p.data) / lr, "× lr")

# %% [markdown]
# ## AdamW: weight decay that is not divided by $\sqrt{\hat v}$
#
# `Adam(weight_decay=λ)` adds $\lambda\theta$ to the gradient (L2 regularisation), so the decay
# goes through the normalisation like everything else. Extreme case, a zero gradient: at
# $t = 1$ the "decay" then becomes a full step of size $\eta$ towards 0, whatever $\lambda$ is
# ($\eta\,\lambda\theta/(\lambda|\theta| + \epsilon)$, and $\epsilon$ is tiny).
# AdamW (Loshchilov & Hutter 2019) *decouples* it: $\theta \leftarrow \theta\,(1 - \eta\lambda)$
# first, then the Adam step on the gradient alone, so every weight shrinks at the same rate.

# %%
theta0 = rng.normal(size=5)
for lam in (1e-2, 1e-1):
    adam_l2, adamw = Parameter(theta0.copy()), Parameter(theta0.copy())  # zero gradients
    Adam([adam_l2], lr=lr, weight_decay=lam).step()
    AdamW([adamw], lr=lr, weight_decay=lam).step()
    l2_move = np.abs(adam_l2.data - theta0).min(), np.abs(adam_l2.data - theta0).max()
    w_ratio = adamw.data / theta0
    print(f"λ = {lam:g}: Adam+L2 moves each weight by {l2_move[0]:.2e}..{l2_move[1]:.2e}; "
          f"AdamW scales each by {w_ratio.min():.8f} (1 − lr·λ = {1 - lr * lam:.8f})")
    assert np.abs(np.abs(adam_l2.data - theta0) / lr - 1).max() < 1e-3
    assert np.abs(w_ratio - (1 - lr * lam)).max() < 1e-15

# %% [markdown]
# ## Learning-rate schedules: warm-up
#
# Early in training Adam's $v$ rests on few gradients and the model's gradients are large and
# erratic; a full learning rate at once can wreck a post-LN Transformer (notebook 9). So the
# rate *warms up*. The paper's schedule ("Noam") rises linearly for $w$ steps and then decays
# like $1/\sqrt{t}$:
#
# $$\eta(t) = f \cdot d^{-1/2} \cdot \min\big(t^{-1/2},\; t\, w^{-3/2}\big).$$
#
# The two branches meet where $t^{-1/2} = t\,w^{-3/2}$, at $t = w$, so the peak is
# $\eta(w) = f\,(d\,w)^{-1/2}$: for $d = 512$, $w = 4000$, $f = 1$ that is $7.0 \cdot 10^{-4}$.
# nanotf's main job uses the other common shape, `cosine_lr`: a linear warm-up to the peak,
# then half a cosine down to `min_lr`. `LRScheduler(opt, fn)` sets `opt.lr = fn(t)` before
# update number $t$.

# %%
for d, w, factor in [(512, 4000, 1.0), (512, 1000, 1.0), (64, 100, 2.0)]:
    steps = np.arange(1, 5 * w + 1)
    rates = np.array([noam_lr(int(t), d, w, factor) for t in steps])
    peak = factor * (d * w) ** -0.5
    print(f"d = {d}, w = {w}, f = {factor}: highest at step {steps[rates.argmax()]}, "
          f"{rates.max():.4e}; f·(d·w)^-½ = {peak:.4e}")
    assert steps[rates.argmax()] == w and abs(rates.max() - peak) <= 1e-15 * peak

base, warm, total = 1e-3, 100, 2000  # the main job's cosine schedule
assert cosine_lr(0, base, warm, total) == 0.0 and cosine_lr(warm, base, warm, total) == base
assert abs(cosine_lr((warm + total) // 2, base, warm, total) - base / 2) < 1e-12
assert cosine_lr(total, base, warm, total) < 1e-18

opt = Adam([Parameter(np.zeros(1))], lr=0.0)
sched = LRScheduler(opt, lambda t: noam_lr(t, 512, 4000))
first = [sched.step() for _ in range(3)]
print("LRScheduler: the first three updates use", [f"{r:.3e}" for r in first])
assert opt.lr == noam_lr(3, 512, 4000)

fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
t = np.arange(1, 20001)
for w in (1000, 4000, 8000):
    axes[0].plot(t, [noam_lr(int(s), 512, w) for s in t], label=f"w = {w}")
    axes[0].plot([w], [(512 * w) ** -0.5], "k.", ms=6)
axes[0].set_title("noam_lr, d = 512 (dots: (d·w)^-½ at step w)", fontsize=10)
axes[0].set_xlabel("step"); axes[0].set_ylabel("learning rate"); axes[0].legend()
axes[0].set_xticks([0, 5000, 10000, 15000, 20000])
t = np.arange(0, total + 1)
axes[1].plot(t, [cosine_lr(int(s), base, warm, total) for s in t], color="tab:purple",
             label="min_lr = 0")
axes[1].plot(t, [cosine_lr(int(s), base, warm, total, min_lr=1e-4) for s in t], ":",
             color="tab:purple", label="min_lr = 1e-4")
axes[1].set_title(f"cosine_lr: warm-up {warm}, then down to min_lr at {total}", fontsize=10)
axes[1].set_xlabel("step"); axes[1].legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Gradient clipping
#
# One bad batch can produce a gradient many times the usual size, and one such step can undo
# hours of training. Clipping caps the *global* norm over all parameters,
# $\lVert g\rVert = \sqrt{\sum_{\text{params}}\sum g^2}$: if it exceeds `max_norm`, every
# gradient is scaled by the same factor $\text{max\_norm}/(\lVert g\rVert + 10^{-6})$ (as
# PyTorch's `clip_grad_norm_`). One factor for all keeps the direction of the step; only its
# length changes. Below the threshold nothing is touched. `clip_grad_norm` returns the norm
# *before* clipping, the number worth logging.
#
# Here on a real gradient: the loss of a small Transformer on a batch of the reverse task
# (notebook 5).

# %%
task = get_task("reverse")
batch = make_batch(task.sample(8, 0), task)
nanotf.manual_seed(0)
model = Transformer(len(task.src_vocab), len(task.tgt_vocab), d_model=32, n_heads=4,
                    n_encoder_layers=2, n_decoder_layers=2, d_ff=64, dropout=0.0)
params = model.parameters()


def fresh_gradient():
    model.zero_grad()
    logits = model.forward(batch.src, batch.tgt_in)  # (B, T, V)
    loss, cache = cross_entropy_forward(logits, batch.tgt_out, ignore_index=PAD_ID)
    model.backward(cross_entropy_backward(1.0, cache))


def global_norm():
    return math.sqrt(sum(float((p.grad.astype(np.float64) ** 2).sum()) for p in params))


fresh_gradient()
before = [p.grad.copy() for p in params]
max_norm = 1.0
returned = clip_grad_norm(params, max_norm)
after = global_norm()
scales = [float((p.grad * b).sum() / (b * b).sum()) for p, b in zip(params, before, strict=True)
          if (b != 0).any()]
print(f"{len(params)} parameters; global norm {returned:.4f} before, {after:.7f} after clipping "
      f"to {max_norm}; every gradient scaled by {min(scales):.5f}..{max(scales):.5f}")
assert abs(returned - math.sqrt(sum(float((b.astype(np.float64) ** 2).sum()) for b in before))) \
    < 1e-5 * returned
assert returned > max_norm and abs(after - max_norm) < 1e-6 * max_norm
assert max(scales) - min(scales) < 1e-6  # one factor for all: the direction is kept

fresh_gradient()
untouched = [p.grad.copy() for p in params]
clip_grad_norm(params, 10 * returned)  # a threshold above the norm
assert all((p.grad == u).all() for p, u in zip(params, untouched, strict=True))

# %% [markdown]
# ## SGD against Adam on an ill-conditioned bowl
#
# $f(x, y) = \tfrac12 (x^2 + \kappa\, y^2)$ with $\kappa = 100$: a long narrow valley. Its
# gradient is $(x, \kappa y)$, and gradient descent multiplies $y$ by $1 - \eta\kappa$ each
# step, so it is stable only for $\eta < 2/\kappa = 0.02$; at such a rate $x$ shrinks by only
# $1 - \eta$ per step. The steep direction sets the speed limit, the shallow one pays for it:
# SGD crawls along the valley floor. Momentum builds up speed along the valley. Adam divides
# each coordinate's step by that coordinate's gradient scale, which turns this bowl into a
# round one.
#
# (A caveat that keeps this honest: the valley here runs along a coordinate axis, which is
# where Adam's per-coordinate scaling is exactly right. Turn the bowl by 45° and both
# coordinates see both curvatures; Adam then loses most of its edge.)

# %%
kappa = 100.0
curv = np.array([1.0, kappa])


def race(make, steps=100, start=(-4.0, 0.6)):
    """Run an optimizer on f from start: returns the path (steps+1, 2) and f along it."""
    p = Parameter(np.array(start))
    opt = make([p])
    path = [p.data.copy()]
    for _ in range(steps):
        p.grad[...] = curv * p.data  # ∇f
        opt.step()
        path.append(p.data.copy())
    path = np.array(path)
    return path, 0.5 * (curv * path**2).sum(axis=1)


runs = {
    "SGD, lr 0.018": race(lambda ps: SGD(ps, lr=1.8 / kappa)),
    "SGD + momentum 0.9, lr 0.0045": race(lambda ps: SGD(ps, lr=0.45 / kappa, momentum=0.9)),
    "Adam, lr 0.1": race(lambda ps: Adam(ps, lr=0.1)),
}
_, too_fast = race(lambda ps: SGD(ps, lr=2.2 / kappa))

fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
xs, ys = np.meshgrid(np.linspace(-4.5, 1.5, 200), np.linspace(-0.8, 0.8, 200))
axes[0].contour(xs, ys, 0.5 * (xs**2 + kappa * ys**2), levels=np.geomspace(0.01, 40, 12),
                colors="lightgray", linewidths=0.8)
for (name, (path, losses)), colour in zip(runs.items(), ["tab:blue", "tab:green", "tab:red"],
                                          strict=True):
    axes[0].plot(path[:, 0], path[:, 1], ".-", color=colour, ms=3, lw=0.8, label=name)
    axes[1].semilogy(losses, color=colour, label=name)
axes[1].semilogy(too_fast[:40], ":", color="gray", label="SGD, lr 0.022 > 2/κ")
axes[0].plot([0], [0], "k*", ms=10)
axes[0].set_title(f"100 steps on ½(x² + {kappa:g} y²)", fontsize=10)
axes[0].set_xlabel("x"); axes[0].set_ylabel("y")
axes[1].set_title("f along the way", fontsize=10)
axes[1].set_xlabel("step"); axes[1].set_ylim(1e-5, 1e3); axes[1].legend(fontsize=8)
fig.tight_layout()
plt.show()

final = {name: losses[-1] for name, (_, losses) in runs.items()}
for name, value in final.items():
    print(f"{name:30}: f after 100 steps {value:.2e}")
print(f"SGD at lr 0.022: f went from {too_fast[0]:.0f} to {too_fast[-1]:.1e}")
assert final["Adam, lr 0.1"] < final["SGD, lr 0.018"] / 50
assert final["SGD + momentum 0.9, lr 0.0045"] < final["SGD, lr 0.018"] / 50
assert too_fast[-1] > too_fast[0]  # past 2/κ, gradient descent diverges

# %% [markdown]
# ## Against PyTorch
#
# nanotf's optimizers evaluate their formulas in PyTorch's order (its `lerp` for $m$, the bias
# corrections in Python floats), so where PyTorch is installed the two agree to the last few
# bits after many steps.

# %%
try:
    import torch
except ImportError:
    torch = None

if torch is None:
    print("PyTorch is not installed: comparison skipped")
else:
    theta0 = rng.normal(size=(4, 3))
    grads = [rng.normal(size=(4, 3)) for _ in range(20)]
    kinds = [
        ("SGD + momentum", lambda ps: SGD(ps, lr=0.1, momentum=0.9),
         lambda ts: torch.optim.SGD(ts, lr=0.1, momentum=0.9)),
        ("Adam", lambda ps: Adam(ps, lr=1e-2, betas=(0.9, 0.98), eps=1e-9),
         lambda ts: torch.optim.Adam(ts, lr=1e-2, betas=(0.9, 0.98), eps=1e-9)),
        ("AdamW", lambda ps: AdamW(ps, lr=1e-2, weight_decay=0.1),
         lambda ts: torch.optim.AdamW(ts, lr=1e-2, weight_decay=0.1)),
    ]
    for name, ours, theirs in kinds:
        p = Parameter(theta0.copy())
        pt = torch.tensor(theta0.copy(), requires_grad=True)
        opt, opt_t = ours([p]), theirs([pt])
        for g in grads:
            p.grad[...] = g
            opt.step()
            pt.grad = torch.tensor(g)
            opt_t.step()
        err = float(np.abs(p.data - pt.detach().numpy()).max())
        print(f"{name:15}: after 20 steps nanotf and PyTorch differ by {err:.1e}")
        assert err < 1e-13

# %% [markdown]
# **Next:** notebook 8, *Train a Transformer, then decode*: everything so far in one loop
# (teacher forcing, the smoothed loss, Adam with warm-up and clipping) on the reverse task,
# then greedy and beam search.
