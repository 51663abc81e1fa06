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
# # 2 · Trusting a gradient
#
# **What you learn:** every backward in nanotf is checked against a *finite difference*, a
# derivative computed from nothing but forward passes. This notebook shows why that check can be
# trusted and when it cannot: how the step size $h$ trades truncation error against round-off,
# why nanotf uses a seven-point stencil in float64 rather than the textbook two-point one in
# float32, and what happens at a kink (ReLU at 0). Then you use the check to find a bug planted in
# a GELU backward, and fix it.
#
# **Read first:** notebook 1, *One op* (the op contract and the fake loss
# $L = \sum \mathrm{dout} \odot y$).
#
# **Runs in:** about 5 seconds on a laptop CPU.

# %%
import matplotlib.pyplot as plt
import numpy as np

from nanotf.course import EXERCISES
from nanotf.functional import gelu_backward, gelu_forward, relu_backward, relu_forward
from nanotf.gradcheck import gradcheck, numerical_gradient

plt.rcParams["figure.dpi"] = 90
rng = np.random.default_rng(0)

# %% [markdown]
# ## Three stencils
#
# Take a smooth scalar function $f$ of one variable. Taylor's theorem gives the error of each way
# of estimating $f'(0)$ from a few values of $f$:
#
# | stencil | formula | truncation error |
# | --- | --- | --- |
# | forward, 2 points | $\frac{f(h) - f(0)}{h}$ | $\frac{h}{2} f''$: order $h$ |
# | central, 2 points | $\frac{f(h) - f(-h)}{2h}$ | $\frac{h^2}{6} f'''$: order $h^2$ |
# | central, 7 points | $\frac{45\Delta_1 - 9\Delta_2 + \Delta_3}{60h}$ | $\frac{h^6}{140}f^{(7)}$ |
#
# (the last is order $h^6$), where $\Delta_k = f(kh) - f(-kh)$. The seven-point weights are
# chosen so that the $h^2$ and $h^4$ terms of the three central differences cancel. Truncation
# error says: make $h$ small. But each $f(\cdot)$ is computed with a relative round-off of
# about $\varepsilon$ (machine epsilon: $2.2\times10^{-16}$ in float64, $1.2\times10^{-7}$ in
# float32), and dividing by $h$ magnifies it. For the central two-point stencil the total error
# is about
#
# $$E(h) \approx \frac{h^2}{6}\,|f'''| + \frac{\varepsilon\,|f|}{h},$$
#
# which is smallest at an *interior* $h^\star \sim \varepsilon^{1/3}$ (about $10^{-5}$ in
# float64), where $E \sim \varepsilon^{2/3} \approx 10^{-11}$. With the seven-point stencil,
# $h^\star \sim \varepsilon^{1/7} \approx 10^{-2}$ to $10^{-3}$ and $E \sim \varepsilon^{6/7}$,
# a few hundred times $\varepsilon$. That is why `nanotf.gradcheck` uses it with $h = 10^{-3}$.
#
# Our $f$ is the fake loss of notebook 1 through a GELU (the tanh form), moved along a random
# direction $u$: $f(t) = \sum \mathrm{dout} \odot \mathrm{GELU}(x + t\,u)$, whose exact
# derivative at $t = 0$ is $\mathrm{d}x \cdot u$, with $\mathrm{d}x$ from nanotf's backward.

# %%
x = rng.normal(size=16)  # x: (16,), a point to differentiate at
u = rng.normal(size=16)  # the direction
dout = rng.normal(size=16)  # the fake loss's weights
_, cache = gelu_forward(x, approximate="tanh")
exact = float(gelu_backward(dout, cache) @ u)  # f'(0) = dx · u, in float64


def f(t, dtype):
    """The fake loss at x + t u, computed entirely in `dtype`."""
    xt = x.astype(dtype) + dtype(t) * u.astype(dtype)
    y, _ = gelu_forward(xt, approximate="tanh")
    return (dout.astype(dtype) * y).sum()


STENCILS = {
    "forward, 2 points": lambda g, h: (g(h) - g(0.0)) / h,
    "central, 2 points": lambda g, h: (g(h) - g(-h)) / (2 * h),
    "central, 7 points": lambda g, h: (
        45 * (g(h) - g(-h)) - 9 * (g(2 * h) - g(-2 * h)) + (g(3 * h) - g(-3 * h))
    ) / (60 * h),
}
hs = np.logspace(-12, -1, 45)  # step sizes, 4 per decade
errors = {}  # (dtype name, stencil) -> relative error for each h
for dtype in (np.float64, np.float32):
    for name, stencil in STENCILS.items():
        est = [float(stencil(lambda t, dtype=dtype: float(f(t, dtype)), h)) for h in hs]
        errors[dtype.__name__, name] = np.abs(np.array(est) - exact) / abs(exact)
for (dt, name), err in errors.items():
    i = int(err.argmin())
    print(f"{dt:7s} {name:18s} best h = {hs[i]:.0e}, error {err[i]:.0e}")

# %%
fig, ax = plt.subplots(figsize=(7, 4))
colors = dict(zip(STENCILS, ["tab:orange", "tab:blue", "tab:green"], strict=True))
for (dt, name), err in errors.items():
    style = "-" if dt == "float64" else "--"
    ax.loglog(hs, np.maximum(err, 1e-17), style, color=colors[name], label=f"{name}, {dt}")
ax.axvline(1e-3, color="gray", lw=0.8, ls=":")
ax.text(1.2e-3, 1e0, "gradcheck's h", color="gray")
ax.set_ylim(1e-17, 1e2)
ax.set_xlabel("step h"); ax.set_ylabel("relative error of f'(0)")
ax.set_title("truncation error falls with h, round-off grows as 1/h")
ax.legend(fontsize=7, ncol=2, loc="lower left")
fig.tight_layout()
plt.show()

# %% [markdown]
# Read the figure from the right: each stencil's error falls along its truncation slope
# (1, 2 and 6 decades per decade of $h$) until round-off, which grows like $1/h$, takes over.
# The two meet at an interior optimum. In float32 (dashed) round-off is $10^9$ times larger, so
# it takes over at much larger $h$ and the best error is $10^{-4}$ to $10^{-6}$ instead of
# $10^{-11}$ to $10^{-13}$; below $h \approx 10^{-7}$ the float32 step vanishes entirely
# ($x + h u = x$), the estimate is 0 and the error 100%.

# %%
def slope(err, lo, hi):
    """The fitted slope of log(error) against log(h) for h in [lo, hi]."""
    sel = (hs >= lo) & (hs <= hi)
    return np.polyfit(np.log10(hs[sel]), np.log10(err[sel]), 1)[0]


central = errors["float64", "central, 2 points"]
best = int(central.argmin())
print(f"central 2-point, float64: optimum h = {hs[best]:.0e} (error {central[best]:.0e}); "
      f"error {central[0]:.0e} at h = 1e-12 and {central[-1]:.0e} at h = 1e-1")
assert 0 < best < len(hs) - 1, "the optimum step is interior"
assert central[best] < 1e-9
assert central[0] > 1e3 * central[best] and central[-1] > 1e3 * central[best]
fwd_slope = slope(errors["float64", "forward, 2 points"], 1e-5, 1e-2)
cen_slope = slope(central, 1e-4, 1e-1)
print(f"truncation slopes: forward {fwd_slope:.2f} (theory 1), central {cen_slope:.2f} (theory 2)")
assert 0.8 < fwd_slope < 1.2 and 1.8 < cen_slope < 2.2
seven = errors["float64", "central, 7 points"]
at_1e3 = float(np.interp(-3.0, np.log10(hs), seven))
print(f"central 7-point, float64: best error {seven.min():.0e}, at h = 1e-3 {at_1e3:.0e}")
assert seven.min() < 1e-12 and at_1e3 < 1e-11
best32 = errors["float32", "central, 2 points"].min()
print(f"float32 central 2-point can do no better than {best32:.0e}, "
      f"{best32 / central[best]:.0e} times float64's best")
assert best32 > 1e-7 and best32 > 1e3 * central[best]

# %% [markdown]
# ## nanotf's check
#
# `gradcheck(forward, backward, inputs)` runs the op's forward and backward once with a random
# `dout`, then estimates $\partial L/\partial x_i$ for *every* element with the seven-point
# stencil at $h = 10^{-3}$, and reports the normwise relative error
# $\max|a - n| / \max(\max|a|, \max|n|)$ per input. A correct backward gives about $10^{-13}$;
# a wrong one gives something near 1. It refuses float32, where, as the figure shows, no step
# size gets below about $10^{-6}$, too coarse to tell a subtle bug from noise.

# %%
xg = rng.normal(size=(4, 8)) * 2.0  # x: (N, C)
for approximate in ("none", "tanh"):
    kwargs = {"approximate": approximate}
    err = gradcheck(gelu_forward, gelu_backward, {"x": xg}, forward_kwargs=kwargs)
    print(f"GELU ({approximate}): gradcheck error {err['x']:.1e}")
    assert err["x"] < 1e-11
try:
    gradcheck(gelu_forward, gelu_backward, {"x": xg.astype(np.float32)})
    refused = False
except TypeError as exc:
    refused = True
    print("float32:", exc)
assert refused

# %% [markdown]
# ## A kink: ReLU at 0
#
# $\mathrm{ReLU}(x) = \max(x, 0)$ has no derivative at $x = 0$. The backward picks the
# subgradient 0 there (as PyTorch does). A central stencil straddles the kink: at exactly
# $x = 0$ every $\Delta_k = kh$, so the seven-point estimate is
# $(45 - 18 + 3)/60 = \tfrac12$, and anywhere within $3h$ of the kink it is something else
# again (it even overshoots, to $-7/60$ at $x = -h$). The check cannot know which answer is
# "right" (neither is), and it says so: the error is large. That is the honest outcome. The fix
# is to keep test inputs more than $3h$ from any kink (nanotf's tests do), never to loosen the
# tolerance.

# %%
xr = rng.normal(size=(3, 5))  # x: (3, 5), away from 0 ...
xr[1, 2] = 0.0  # ... except one entry exactly at the kink
err_kink = gradcheck(relu_forward, relu_backward, {"x": xr})["x"]
xr[1, 2] = 0.5  # the same entry moved off the kink
err_smooth = gradcheck(relu_forward, relu_backward, {"x": xr})["x"]
print(f"ReLU with an input at 0: error {err_kink:.2f};  all inputs away from 0: {err_smooth:.0e}")
assert err_kink > 1e-2 and err_smooth < 1e-11

h = 1e-3
x0s = np.linspace(-5 * h, 5 * h, 201)  # where to estimate ReLU'(x0)


def relu_slope(x0):
    """The seven-point estimate of ReLU'(x0) with nanotf's numerical_gradient."""
    p = np.array([x0])
    return numerical_gradient(lambda: relu_forward(p)[0], p, np.ones(1), eps=h)[0]


numeric = np.array([relu_slope(x0) for x0 in x0s])
at_zero = numeric[100]  # x0s[100] == 0
print(f"seven-point estimate of ReLU'(0) = {at_zero:.12f}; the backward says 0")
assert abs(at_zero - 0.5) < 1e-12
far = np.abs(x0s) > 3 * h + 1e-12
assert np.allclose(numeric[far], (x0s[far] > 0).astype(float), atol=1e-12)

# %% [markdown]
# The numerical derivative is exact (0 or 1) more than $3h$ from the kink; within $3h$ the
# stencil's points lie on both sides of it, and the estimate is piecewise linear in between.

# %%
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(x0s / h, numeric, label="seven-point estimate, h = 1e-3")
ax.plot(x0s / h, (x0s > 0).astype(float), "--", label="relu_backward (x > 0)")
ax.axvspan(-3, 3, color="gray", alpha=0.15, label="within 3h of the kink")
ax.set_xlabel("x₀ / h"); ax.set_ylabel("d ReLU / dx at x₀")
ax.set_title("finite differences straddle the kink")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Exercise: a bug planted in a GELU backward
#
# The tanh form of GELU (GPT-2's `gelu_new`) is
#
# $$\mathrm{GELU}(x) = \tfrac12\,x\,\big(1 + \tanh u\big), \qquad
# u = \sqrt{2/\pi}\,\big(x + c\,x^3\big), \quad c = 0.044715.$$
#
# With $t = \tanh u$, the product rule and $\tanh' = 1 - \tanh^2$ give
#
# $$\frac{\mathrm{d}\,\mathrm{GELU}}{\mathrm{d}x} = \tfrac12\,(1 + t) + \tfrac12\,x\,(1 - t^2)\,
# \frac{\mathrm{d}u}{\mathrm{d}x}, \qquad \mathrm{d}x = \mathrm{dout} \odot
# \frac{\mathrm{d}\,\mathrm{GELU}}{\mathrm{d}x}.$$
#
# Below is a backward somebody wrote for it. It looks right, it gives sensible numbers, and it is
# wrong. First let the check find out *that* it is wrong, then *where*.

# %%
C = 0.044715


def buggy_gelu_backward(dout, x):
    """dx for the tanh GELU... or so it claims."""
    t = np.tanh(np.sqrt(2 / np.pi) * (x + C * x**3))
    du_dx = np.sqrt(2 / np.pi) * (1 + C * x**2)
    return dout * (0.5 * (1 + t) + 0.5 * x * (1 - t**2) * du_dx)


def gelu_tanh(x):  # a forward for gradcheck: out, and the cache the buggy backward wants (x)
    return gelu_forward(x, approximate="tanh")[0], x


xb = rng.normal(size=(4, 8)) * 2.0  # x: (N, C)
err = gradcheck(gelu_tanh, buggy_gelu_backward, {"x": xb})["x"]
print(f"gradcheck of the buggy backward: {err:.1e} (a correct one gives ~1e-13)")
assert err > 1e-3

# %% [markdown]
# It fails, but only by a few percent: a loose check (float32, with a tolerance of 5%) would
# have let it through. *Where* is it wrong? Compare it element by element with the numerical
# derivative on a grid of $x$.

# %%
grid = np.linspace(-5, 5, 201)  # x: (201,)
ones = np.ones_like(grid)  # dout = 1: the backward returns the derivative itself
numeric = numerical_gradient(lambda: gelu_forward(grid, approximate="tanh")[0], grid, ones)
wrong_by = buggy_gelu_backward(ones, grid) - numeric
fig, axes = plt.subplots(1, 2, figsize=(9, 3))
axes[0].plot(grid, numeric, label="numerical d GELU/dx")
axes[0].plot(grid, buggy_gelu_backward(ones, grid), "--", label="buggy backward")
axes[0].set_xlabel("x"); axes[0].legend(fontsize=8); axes[0].set_title("they look alike")
axes[1].plot(grid, wrong_by, color="tab:red")
axes[1].axhline(0, color="gray", lw=0.8)
axes[1].set_xlabel("x"); axes[1].set_title("buggy − numerical")
fig.tight_layout()
plt.show()
print(f"error at x = 0: {abs(wrong_by[100]):.0e}; largest |error| {np.abs(wrong_by).max():.3f}")
assert abs(wrong_by[100]) < 1e-12 and np.abs(wrong_by).max() > 1e-2

# %% [markdown]
# The clues: the error is exactly 0 at $x = 0$, it is odd in $x$, it grows like $x^3$ near 0, and
# it dies out for $|x| \gtrsim 3$, where $\tanh$ saturates and $1 - t^2 \to 0$. So it lives in the
# second term, $\tfrac12 x (1-t^2)\,\mathrm{d}u/\mathrm{d}x$, and is an $x^2$ piece of
# $\mathrm{d}u/\mathrm{d}x$. Differentiate $u$ yourself and compare.
#
# Write `my_gelu_backward(dout, x)` that returns the correct $\mathrm{d}x$ (same shape as `x`, any
# shape). The check compares it with the seven-point finite difference of nanotf's
# `gelu_forward(x, approximate="tanh")`.

# %%
def my_gelu_backward(dout, x):
    """dx = dout ⊙ d GELU_tanh(x)/dx."""
    # BEGIN SOLUTION
    t = np.tanh(np.sqrt(2 / np.pi) * (x + C * x**3))
    du_dx = np.sqrt(2 / np.pi) * (1 + 3 * C * x**2)  # d/dx (x + c x³) = 1 + 3 c x²
    return dout * (0.5 * (1 + t) + 0.5 * x * (1 - t**2) * du_dx)
    # END SOLUTION


# %%
EXERCISES["gelu_backward_bug"].check(my_gelu_backward)

# %% [markdown]
# **Next:** notebook 3, *Attention, masks and 1/√d*: the backward of scaled dot-product
# attention, why the scores are divided by $\sqrt d$, and how masks keep a fully masked row from
# turning into NaN.
