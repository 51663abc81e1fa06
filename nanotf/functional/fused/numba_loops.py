"""The parallel loops of the Numba kernels (``numba_kernels``): GELU, LayerNorm, the softmax
along the last axis and the Adam/AdamW update, one ``numba.prange`` loop each over elements or
rows, every output element (or row) computed by one thread in a fixed order.
"""

from __future__ import annotations

import math

import numba

from .numba_math import _PARALLEL, _exp, _gelu_cdf, _gelu_tanh_t, _row_dot, _row_max, _row_sum

# -- GELU -------------------------------------------------------------------------------------


@numba.njit(**_PARALLEL)
def _gelu_erf(x, out, cdf, sqrt_half, one, half, a, hi, k, p, r):  # pragma: no cover
    # cdf = ½ (1 + erf(x / √2)), out = x · cdf; x, out, cdf: (n,); a ... r: erf's table
    for i in numba.prange(x.size):
        xi = x[i]
        c = _gelu_cdf(xi, sqrt_half, one, half, a, hi, k, p, r)
        cdf[i] = c
        out[i] = xi * c


@numba.njit(**_PARALLEL)
def _gelu_tanh(x, out, t, gelu_c, one, sqrt_2_over_pi, half):  # pragma: no cover - compiled
    # t = tanh(√(2/π) (x + c x³)), out = ½ x (1 + t); x, out, t: (n,)
    for i in numba.prange(x.size):
        xi = x[i]
        th = _gelu_tanh_t(xi, gelu_c, one, sqrt_2_over_pi)
        t[i] = th
        o = th + one
        o = o * xi
        out[i] = o * half


@numba.njit(**_PARALLEL)
def _bias_gelu_erf(x, b, out, z, cdf, sqrt_half, one, half, a, hi, k, p,
                   r):  # pragma: no cover - compiled
    # z = x + b along the last axis, then GELU (erf) of z; x, out, z, cdf: (rows, C), b: (C,)
    rows, c = x.shape
    for row in numba.prange(rows):
        for j in range(c):
            zz = x[row, j] + b[j]
            z[row, j] = zz
            cc = _gelu_cdf(zz, sqrt_half, one, half, a, hi, k, p, r)
            cdf[row, j] = cc
            out[row, j] = zz * cc


@numba.njit(**_PARALLEL)
def _bias_gelu_tanh(x, b, out, z, t, gelu_c, one, sqrt_2_over_pi,
                    half):  # pragma: no cover - compiled
    # z = x + b along the last axis, then GELU (tanh) of z; x, out, z, t: (rows, C), b: (C,)
    rows, c = x.shape
    for r in numba.prange(rows):
        for j in range(c):
            zz = x[r, j] + b[j]
            z[r, j] = zz
            th = _gelu_tanh_t(zz, gelu_c, one, sqrt_2_over_pi)
            t[r, j] = th
            o = th + one
            o = o * zz
            out[r, j] = o * half


@numba.njit(**_PARALLEL)
def _bias_gelu_erf_out(x, b, out, sqrt_half, one, half, a, hi, k, p,
                       r):  # pragma: no cover - compiled
    # out = GELU (erf) of x + b, the same arithmetic as _bias_gelu_erf, out alone (inference)
    rows, c = x.shape
    for row in numba.prange(rows):
        for j in range(c):
            zz = x[row, j] + b[j]
            out[row, j] = zz * _gelu_cdf(zz, sqrt_half, one, half, a, hi, k, p, r)


@numba.njit(**_PARALLEL)
def _bias_gelu_tanh_out(x, b, out, gelu_c, one, sqrt_2_over_pi,
                        half):  # pragma: no cover - compiled
    # out = GELU (tanh) of x + b, the same arithmetic as _bias_gelu_tanh, out alone (inference)
    rows, c = x.shape
    for r in numba.prange(rows):
        for j in range(c):
            zz = x[r, j] + b[j]
            o = _gelu_tanh_t(zz, gelu_c, one, sqrt_2_over_pi) + one
            o = o * zz
            out[r, j] = o * half


@numba.njit(**_PARALLEL)
def _gelu_erf_backward(dout, x, cdf, dx, neg_half, inv_sqrt_2pi):  # pragma: no cover - compiled
    # dx = dout (Φ(x) + x φ(x)),  φ(x) = exp(-x²/2) / √(2π); all (n,)
    for i in numba.prange(x.size):
        xi = x[i]
        p = xi * xi
        p = p * neg_half
        p = _exp(p)
        p = p * inv_sqrt_2pi
        p = p * xi
        p = p + cdf[i]
        dx[i] = p * dout[i]


@numba.njit(**_PARALLEL)
def _gelu_tanh_backward(dout, x, t, dx, three_gelu_c, one, sqrt_2_over_pi,
                        half):  # pragma: no cover - compiled
    # dx = dout · ½ (1 + t + x (1 - t²) √(2/π) (1 + 3 c x²)); all (n,)
    for i in numba.prange(x.size):
        xi = x[i]
        ti = t[i]
        du = xi * xi
        du = du * three_gelu_c
        du = du + one
        du = du * sqrt_2_over_pi
        s = ti * ti
        s = one - s
        du = du * s
        du = du * xi
        du = du + ti
        du = du + one
        du = du * half
        dx[i] = du * dout[i]


# -- LayerNorm --------------------------------------------------------------------------------


@numba.njit(**_PARALLEL)
def _layernorm_forward(x, gamma, beta, eps, one, out, xhat, rstd, mean):  # pragma: no cover
    # per row of x: mean, var = mean((x - mean)²) + eps, rstd = 1 / √var,
    # xhat = (x - mean) · rstd, out = xhat · γ + β; x, out, xhat: (rows, n), rstd, mean: (rows,)
    rows, n = x.shape
    for r in numba.prange(rows):
        mean[r] = _row_sum(x, r) / n  # rounded to the dtype on the store
        m = mean[r]
        for j in range(n):
            xhat[r, j] = x[r, j] - m
        rstd[r] = _row_dot(xhat, xhat, r) / n  # the biased variance, in the dtype
        var = rstd[r] + eps
        rs = one / math.sqrt(var)
        rstd[r] = rs
        for j in range(n):
            h = xhat[r, j] * rs
            xhat[r, j] = h
            o = h * gamma[j]
            out[r, j] = o + beta[j]


@numba.njit(**_PARALLEL)
def _layernorm_backward(dout, xhat, rstd, gamma, dx, g, mean_g, mean_gh):  # pragma: no cover
    # per row: g = dout · γ, dx = rstd · (g - (x̂ · mean(g x̂) + mean(g))); (rows, n)
    rows, n = xhat.shape
    for r in numba.prange(rows):
        for j in range(n):
            g[r, j] = dout[r, j] * gamma[j]
        mean_g[r] = _row_sum(g, r) / n
        mean_gh[r] = _row_dot(g, xhat, r) / n
        mg = mean_g[r]
        mgh = mean_gh[r]
        rs = rstd[r]
        for j in range(n):
            t = xhat[r, j] * mgh
            t = t + mg
            t = g[r, j] - t
            dx[r, j] = t * rs


@numba.njit(**_PARALLEL)
def _layernorm_param_partials(dout, xhat, part_gamma, part_beta, rows,
                              block):  # pragma: no cover - compiled
    # float64 column sums of dout · x̂ and dout over each block of `block` rows;
    # dout, xhat: (rows, n), part_*: (blocks, n)
    blocks, n = part_gamma.shape
    for k in numba.prange(blocks):
        r1 = min(rows, (k + 1) * block)
        for r in range(k * block, r1):
            for j in range(n):
                d = dout[r, j]
                part_gamma[k, j] += d * xhat[r, j]
                part_beta[k, j] += d


@numba.njit(**_PARALLEL)
def _sum_blocks(part_gamma, part_beta, dgamma, dbeta):  # pragma: no cover - compiled
    # the blocks' partial sums added in order, per column; part_*: (blocks, n), d*: (n,)
    blocks, n = part_gamma.shape
    for j in numba.prange(n):
        sg = 0.0
        sb = 0.0
        for k in range(blocks):
            sg += part_gamma[k, j]
            sb += part_beta[k, j]
        dgamma[j] = sg
        dbeta[j] = sb


# -- softmax along the last axis --------------------------------------------------------------


@numba.njit(**_PARALLEL)
def _softmax_forward(x, mask, has_mask, write_scores, scale, lowest, zero, scores, probs,
                     total):  # pragma: no cover - compiled
    # per row: s = x · scale, masked entries at the dtype's lowest value (to scores when asked);
    # p = exp(s - max s) / Σ exp(s - max s), masked entries then 0; x, mask, scores, probs:
    # (rows, n) (mask (1, 1) and scores unused when not asked), total: (rows,)
    rows, n = x.shape
    for r in numba.prange(rows):
        for j in range(n):
            s = x[r, j] * scale
            if has_mask and not mask[r, j]:
                s = lowest
            if write_scores:
                scores[r, j] = s
            probs[r, j] = s
        top = _row_max(probs, r, lowest)
        for j in range(n):
            probs[r, j] = _exp(probs[r, j] - top)
        total[r] = _row_sum(probs, r)  # rounded to the dtype on the store
        tot = total[r]
        for j in range(n):
            p = probs[r, j] / tot
            if has_mask and not mask[r, j]:
                p = zero
            probs[r, j] = p


@numba.njit(**_PARALLEL)
def _softmax_backward(dout, y, dx, dot):  # pragma: no cover - compiled
    # per row: dx = dout · y - y · Σ_j dout_j y_j; (rows, n), dot: (rows,)
    rows, n = y.shape
    for r in numba.prange(rows):
        dot[r] = _row_dot(dout, y, r)
        d = dot[r]
        for j in range(n):
            a = dout[r, j] * y[r, j]
            dx[r, j] = a - y[r, j] * d


# -- Adam / AdamW -----------------------------------------------------------------------------


@numba.njit(**_PARALLEL)
def _adam(theta, g, m, v, wd_mode, l2, decay, lerp_near, w, one_minus_w, beta2,
          one_minus_beta2, neg_step_size, bc2_sqrt, eps):  # pragma: no cover - compiled
    # the steps of nanotf.optim.adam.Adam._update, per element, in place; all (n,)
    for i in numba.prange(theta.size):
        gg = g[i]
        th = theta[i]
        if wd_mode == 2:
            th = th * decay
        elif wd_mode == 1:
            s0 = th * l2
            gg = gg + s0
        d = gg - m[i]
        if lerp_near:
            d = d * w
            mi = m[i] + d
        else:
            d = d * one_minus_w
            mi = gg - d
        m[i] = mi
        vi = v[i] * beta2
        s1 = gg * one_minus_beta2
        s1 = s1 * gg
        vi = vi + s1
        v[i] = vi
        den = math.sqrt(vi)
        den = den / bc2_sqrt
        den = den + eps
        step = mi * neg_step_size
        step = step / den
        theta[i] = th + step


@numba.njit(cache=True)
def _adam_many(thetas, gs, ms, vs, wd_mode, l2, decay, lerp_near, w, one_minus_w, beta2,
               one_minus_beta2, neg_step_size, bc2_sqrt, eps):  # pragma: no cover - compiled
    # _adam on each parameter in turn, in one call: thetas, gs, ms, vs typed lists of flat
    # arrays, element j of each the same parameter's
    for j in range(len(thetas)):
        _adam(thetas[j], gs[j], ms[j], vs[j], wd_mode, l2, decay, lerp_near, w, one_minus_w,
              beta2, one_minus_beta2, neg_step_size, bc2_sqrt, eps)
