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
# # 1 · One op: forward, cache, backward
#
# **What you learn:** the contract every piece of nanotf follows. An op is a pair of functions:
# a *forward* that returns its output and a *cache* (exactly what the backward will need), and a
# *backward* that turns the gradient of the output into the gradients of the inputs. You will
# follow softmax and LayerNorm through it, check both against finite differences, and write
# softmax's backward yourself.
#
# **Read first:** nothing — this is the start. A little NumPy and the chain rule are enough.
#
# **Runs in:** about 10 seconds on a laptop CPU.

# %%
import matplotlib.pyplot as plt
import numpy as np

from nanotf.course import EXERCISES
from nanotf.functional import (
    layernorm_backward,
    layernorm_forward,
    softmax_backward,
    softmax_forward,
)
from nanotf.gradcheck import gradcheck

plt.rcParams["figure.dpi"] = 90
rng = np.random.default_rng(0)

# %% [markdown]
# ## The fake loss
#
# A backward never sees the loss itself, only $\partial L/\partial y$ (called `dout`) for its
# output $y$. To test a backward in isolation we invent the simplest loss that produces any
# `dout` we like:
#
# $$L = \sum_i \mathrm{dout}_i \, y_i \quad\Rightarrow\quad \frac{\partial L}{\partial y} =
# \mathrm{dout}.$$
#
# A finite-difference check then nudges each input by $\pm h$ and watches $L$ change.

# %% [markdown]
# ## Softmax
#
# Forward, along the last axis: $y_i = e^{x_i - m} / \sum_j e^{x_j - m}$ with $m = \max_j x_j$
# (subtracting the max changes nothing mathematically and keeps `exp` from overflowing).
#
# The Jacobian is $\partial y_i / \partial x_k = y_i(\delta_{ik} - y_k)$, that is
# $J = \mathrm{diag}(y) - y y^\top$. The backward multiplies by it without ever building it:
#
# $$\mathrm{d}x = J^\top \mathrm{dout} = y \odot \Big(\mathrm{dout} - \sum_j \mathrm{dout}_j\,
# y_j\Big).$$
#
# The cache is just $y$: the backward needs nothing else.

# %%
x = rng.normal(size=(4, 6)) * 2.0  # x: (N, V), float64 for checking
y, cache = softmax_forward(x)
dout = rng.normal(size=y.shape)
dx = softmax_backward(dout, cache)
errors = gradcheck(softmax_forward, softmax_backward, {"x": x})
print(f"softmax: largest relative error against finite differences {max(errors.values()):.1e}")
assert max(errors.values()) < 1e-9
# each row of dx sums to 0: adding a constant to a row of x leaves softmax unchanged
print("row sums of dx:", np.abs(dx.sum(axis=-1)).max())
assert np.abs(dx.sum(axis=-1)).max() < 1e-12

# %% [markdown]
# The Jacobian of one row, $\mathrm{diag}(y) - yy^\top$: positive on the diagonal, negative
# elsewhere, and every row and column sums to zero.

# %%
row = y[0]
jac = np.diag(row) - np.outer(row, row)
fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
axes[0].bar(range(row.size), row)
axes[0].set_title("y = softmax(x), one row"); axes[0].set_xlabel("class")
lim = np.abs(jac).max()
im = axes[1].imshow(jac, cmap="RdBu_r", vmin=-lim, vmax=lim)
axes[1].set_title("Jacobian diag(y) − y yᵀ"); axes[1].set_xlabel("k"); axes[1].set_ylabel("i")
fig.colorbar(im, ax=axes[1])
fig.tight_layout()
plt.show()
assert np.abs(jac.sum(axis=0)).max() < 1e-15 and np.abs(jac.sum(axis=1)).max() < 1e-15

# %% [markdown]
# ## LayerNorm
#
# Over the last axis of width $C$: $\mu = \frac1C\sum_i x_i$,
# $\sigma^2 = \frac1C \sum_i (x_i - \mu)^2$, $\hat x = (x-\mu)\,\mathrm{rstd}$ with
# $\mathrm{rstd} = 1/\sqrt{\sigma^2 + \epsilon}$, and $y = \gamma \odot \hat x + \beta$.
# The cache keeps $\hat x$, $\mathrm{rstd}$ and $\gamma$. With $g = \mathrm{dout} \odot \gamma$:
#
# $$\mathrm{d}x = \mathrm{rstd}\,\big(g - \overline{g} - \hat x\,\overline{g \odot \hat x}\big),
# \qquad \mathrm{d}\gamma = \sum \mathrm{dout} \odot \hat x, \qquad
# \mathrm{d}\beta = \sum \mathrm{dout},$$
#
# where the bars are means over the last axis and the sums run over every other axis.
# Two facts follow: $\mathrm{d}x \perp \mathbf 1$ (shifting a row changes nothing) and, for
# $\epsilon = 0$, $\mathrm{d}x \perp \hat x$ (scaling a row changes nothing). With
# $\epsilon > 0$ scaling changes the output a little, and $\mathrm{d}x \cdot \hat x$ is
# $\epsilon/(\sigma^2+\epsilon)$ times $\mathrm{rstd}\,(g\cdot\hat x)$ instead of 0.

# %%
x = rng.normal(size=(2, 5, 8)) * 3.0 + 1.0  # x: (B, T, C)
gamma, beta = 1.0 + 0.3 * rng.normal(size=8), rng.normal(size=8)
out, cache = layernorm_forward(x, gamma, beta, eps=1e-5)
dout = rng.normal(size=out.shape)
dx, dgamma, dbeta = layernorm_backward(dout, cache)
errors = gradcheck(layernorm_forward, layernorm_backward, {"x": x, "gamma": gamma, "beta": beta})
print({name: f"{err:.1e}" for name, err in errors.items()})
assert max(errors.values()) < 1e-9

xhat = cache.xhat  # the cache is a NamedTuple: LayerNormCache(xhat, rstd, gamma)
ortho_ones = np.abs(dx.sum(axis=-1)).max() / np.abs(dx).max()
print(f"dx · 1 = {ortho_ones:.1e} (relative to max |dx|)")
assert ortho_ones < 1e-12

out0, cache0 = layernorm_forward(x, gamma, beta, eps=0.0)  # the same, with ε = 0
dx0 = layernorm_backward(dout, cache0)[0]
xhat0 = cache0.xhat
ortho_xhat = np.abs((dx0 * xhat0).sum(axis=-1)).max() / np.abs(dx0).max()
with_eps = np.abs((dx * xhat).sum(axis=-1)).max() / np.abs(dx).max()
print(f"dx · x̂ = {ortho_xhat:.1e} with ε = 0, {with_eps:.1e} with ε = 1e-5")
assert ortho_xhat < 1e-12 and with_eps < 1e-4

# %%
fig, axes = plt.subplots(1, 2, figsize=(8, 3))
axes[0].plot(x[0, 0], "o-", label="x"); axes[0].plot(xhat[0, 0], "s-", label="x̂")
axes[0].set_title("one row before and after normalising"); axes[0].legend()
axes[1].plot(dx[0, 0], "o-", label="dx"); axes[1].axhline(0, color="gray", lw=0.8)
axes[1].set_title("its gradient: its entries sum to 0"); axes[1].legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Exercise: softmax's backward
#
# Write `my_softmax_backward(dout, y)`: given the upstream gradient and the forward's output
# (both of shape `(..., V)`), return $\mathrm{d}x$. One or two lines of NumPy; no loops. The cell
# after it grades your answer against finite differences.

# %%
def my_softmax_backward(dout, y):
    """dx = y ⊙ (dout − Σ_j dout_j y_j), along the last axis."""
    # BEGIN SOLUTION
    return y * (dout - (dout * y).sum(axis=-1, keepdims=True))
    # END SOLUTION


# %%
EXERCISES["softmax_backward"].check(my_softmax_backward)

# %% [markdown]
# **Next:** notebook 2, *Trusting a gradient*: why the finite-difference check above can be
# trusted, and when it cannot.
