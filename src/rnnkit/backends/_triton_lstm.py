"""Triton kernels of the LSTM's time step (see ``_triton_ops`` for the conventions).

Gate order i, f, g, o; ``acts`` is one step's (B, 4H) slice, the input share with both
biases in, the activations out. Layer norm on the recurrent product normalises each row
over its four gate tiles; the cell norm over one.
"""

import triton
import triton.language as tl

from rnnkit.backends._triton_ops import (
    accumulate,
    centred_sq,
    gain,
    gradient_in,
    ln_dx,
    ln_sums,
    load,
    normed,
    settle_weight,
    sigmoid,
    store,
    tanh,
)


@triton.jit
def lstm_forward(acts, prod, ln_hh, rmean, rrstd, hp, cp, h, c, tc, ln_c_w, ln_c_b,
                 cmean, crstd, drop, hm, wh, wh_s, wc, wc_s, ln_ih, bias, xmean, xrstd, eps, B,
                 H, LN_IH: tl.constexpr, BIAS: tl.constexpr,
                 LN_HH: tl.constexpr, LN_C: tl.constexpr, LN_C_BIAS: tl.constexpr,
                 SETTLE_H: tl.constexpr, COLS_H: tl.constexpr, SETTLE_C: tl.constexpr,
                 COLS_C: tl.constexpr, DROP: tl.constexpr, KEEP: tl.constexpr,
                 KEEP_ACTS: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr):
    """a = LN_ih(a) + b when ``LN_IH`` (``acts`` then holds x W_ih^T, read only, and the
    norm's statistics are kept); a += LN(p) (else the product is already in a);
    i, f, g, o; c' = f c + i g;
    h' = o tanh(LN_c(c')); h, c settled; h m for the next product. ``KEEP`` keeps the
    norms' statistics for backward; ``KEEP_ACTS`` the activations and tanh(c̃) too
    (without it, backward recomputes them: ``lstm_backward``'s ``RECOMPUTE``). c' is
    never kept apart from the settled c: backward recomputes it from f, c, i and g."""
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    cols = tl.arange(0, BLOCK_H)
    valid = rows < B
    mask = valid[:, None] & (cols < H)[None, :]
    offs = rows[:, None] * H + cols[None, :]  # a (B, H) tile
    g4 = rows[:, None] * (4 * H) + cols[None, :]  # gate i of a (B, 4H) row; + k H for gate k
    a_i, a_f = load(acts, g4, mask), load(acts, g4 + H, mask)
    a_g, a_o = load(acts, g4 + 2 * H, mask), load(acts, g4 + 3 * H, mask)
    if LN_IH:
        x_mean = (tl.sum(a_i, 1) + tl.sum(a_f, 1) + tl.sum(a_g, 1) + tl.sum(a_o, 1)) / (4 * H)
        x_var = (centred_sq(a_i, x_mean, mask) + centred_sq(a_f, x_mean, mask)
                 + centred_sq(a_g, x_mean, mask) + centred_sq(a_o, x_mean, mask)) / (4 * H)
        x_rstd = 1.0 / tl.sqrt(x_var + eps)
        a_i = gain(ln_ih, 0, H, cols) * normed(a_i, x_mean, x_rstd)
        a_f = gain(ln_ih, 1, H, cols) * normed(a_f, x_mean, x_rstd)
        a_g = gain(ln_ih, 2, H, cols) * normed(a_g, x_mean, x_rstd)
        a_o = gain(ln_ih, 3, H, cols) * normed(a_o, x_mean, x_rstd)
        if BIAS:
            a_i += gain(bias, 0, H, cols)
            a_f += gain(bias, 1, H, cols)
            a_g += gain(bias, 2, H, cols)
            a_o += gain(bias, 3, H, cols)
        if KEEP:
            tl.store(xmean + rows, x_mean.to(xmean.dtype.element_ty), mask=valid)
            tl.store(xrstd + rows, x_rstd.to(xrstd.dtype.element_ty), mask=valid)
    if LN_HH:
        p_i, p_f = load(prod, g4, mask), load(prod, g4 + H, mask)
        p_g, p_o = load(prod, g4 + 2 * H, mask), load(prod, g4 + 3 * H, mask)
        mean = (tl.sum(p_i, 1) + tl.sum(p_f, 1) + tl.sum(p_g, 1) + tl.sum(p_o, 1)) / (4 * H)
        var = (centred_sq(p_i, mean, mask) + centred_sq(p_f, mean, mask)
               + centred_sq(p_g, mean, mask) + centred_sq(p_o, mean, mask)) / (4 * H)
        rstd = 1.0 / tl.sqrt(var + eps)
        a_i += gain(ln_hh, 0, H, cols) * normed(p_i, mean, rstd)
        a_f += gain(ln_hh, 1, H, cols) * normed(p_f, mean, rstd)
        a_g += gain(ln_hh, 2, H, cols) * normed(p_g, mean, rstd)
        a_o += gain(ln_hh, 3, H, cols) * normed(p_o, mean, rstd)
        if KEEP:
            tl.store(rmean + rows, mean.to(rmean.dtype.element_ty), mask=valid)
            tl.store(rrstd + rows, rstd.to(rrstd.dtype.element_ty), mask=valid)
    in_gate, forget_gate = sigmoid(a_i), sigmoid(a_f)
    in_transform, out_gate = tanh(a_g), sigmoid(a_o)
    c_prev = load(cp, offs, mask)
    c_new = forget_gate * c_prev + in_gate * in_transform
    mean_c, rstd_c = 0.0, 0.0
    if LN_C:
        mean_c = tl.sum(c_new, 1) / H
        rstd_c = 1.0 / tl.sqrt(centred_sq(c_new, mean_c, mask) / H + eps)
    t_c = _cell_tanh(c_new, ln_c_w, ln_c_b, mean_c, rstd_c, cols, H, LN_C, LN_C_BIAS)
    h_new = out_gate * t_c
    if SETTLE_H:
        h_new += settle_weight(wh, wh_s, rows, cols, mask, H, SETTLE_H, COLS_H) * (
            load(hp, offs, mask) - h_new)
    store(h, offs, h_new, mask)
    if SETTLE_C:
        w_c = settle_weight(wc, wc_s, rows, cols, mask, H, SETTLE_C, COLS_C)
        store(c, offs, c_new + w_c * (c_prev - c_new), mask)
    else:
        store(c, offs, c_new, mask)
    if DROP:
        store(hm, offs, h_new * load(drop, offs, mask), mask)
    if KEEP and LN_C:  # what backward reads
        tl.store(cmean + rows, mean_c.to(cmean.dtype.element_ty), mask=valid)
        tl.store(crstd + rows, rstd_c.to(crstd.dtype.element_ty), mask=valid)
    if KEEP_ACTS:
        store(acts, g4, in_gate, mask)
        store(acts, g4 + H, forget_gate, mask)
        store(acts, g4 + 2 * H, in_transform, mask)
        store(acts, g4 + 3 * H, out_gate, mask)
        store(tc, offs, t_c, mask)


@triton.jit
def lstm_backward(acts, cp, tc, cn, ln_c_w, ln_c_b, cmean, crstd, q, carry, dy, dy_sb, dy_sh,
                  drop, wh, wh_s, wc, wc_s, dc, d, gw_c, gb_c, pre, ln_hh, rmean, rrstd, dpre,
                  gw_hh, xpre, ln_ih,
                  bias, xmean, xrstd, B, H,
                  LN_HH: tl.constexpr, LN_C: tl.constexpr, LN_C_BIAS: tl.constexpr,
                  SETTLE_H: tl.constexpr, COLS_H: tl.constexpr, SETTLE_C: tl.constexpr,
                  COLS_C: tl.constexpr, DROP: tl.constexpr, DY: tl.constexpr,
                  RECOMPUTE: tl.constexpr, BIAS: tl.constexpr,
                  BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr):
    """δo, δ(LN_c output), δc' through LN_c and the carried δc, δi, δf, δg, δc for step
    t-1; through LN_hh into ``dpre``. The norms' gain (and bias) gradients are summed
    over the steps row by row, float32, each program its own rows: the cell norm's in
    ``gw_c`` and ``gb_c`` (B, H), the recurrent norm's in ``gw_hh`` (B, 4H); the caller
    sums over the rows. So no (T, B, ·) buffer of their inputs' gradients is needed.

    ``RECOMPUTE`` (both gate norms on): the activations and tanh(c̃) were not kept; they
    are recomputed here, with c', from the two norms' inputs ``xpre`` and ``pre`` and
    their statistics, which backward keeps anyway: a (T, B, 4H) and a (T, B, H) buffer
    less in memory for a few more loads and exponentials. Without it c' is recomputed
    from the kept activations where zoneout on c made the kept state differ from it, and
    read from ``cn`` (the state) where it does not."""
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    cols = tl.arange(0, BLOCK_H)
    valid = rows < B
    mask = valid[:, None] & (cols < H)[None, :]
    offs = rows[:, None] * H + cols[None, :]
    g4 = rows[:, None] * (4 * H) + cols[None, :]
    gh, gp = gradient_in(q, carry, dy, dy_sb, dy_sh, drop, wh, wh_s, offs, rows, cols, mask, H,
                         DROP, DY, SETTLE_H, COLS_H)
    store(carry, offs, gp, mask)
    mean, rstd, mean_c, rstd_c = 0.0, 0.0, 0.0, 0.0
    if LN_HH:
        mean = tl.load(rmean + rows, mask=valid, other=0.0).to(tl.float32)
        rstd = tl.load(rrstd + rows, mask=valid, other=0.0).to(tl.float32)
    if LN_C:
        mean_c = tl.load(cmean + rows, mask=valid, other=0.0).to(tl.float32)
        rstd_c = tl.load(crstd + rows, mask=valid, other=0.0).to(tl.float32)
    if RECOMPUTE:
        i, f, g, o = _preactivations(xpre, ln_ih, bias, xmean, xrstd, pre, ln_hh, mean,
                                     rstd, rows, cols, valid, g4, mask, H, BIAS)
        i, f, g, o = sigmoid(i), sigmoid(f), tanh(g), sigmoid(o)
        c_new = f * load(cp, offs, mask) + i * g
        t_c = _cell_tanh(c_new, ln_c_w, ln_c_b, mean_c, rstd_c, cols, H, LN_C, LN_C_BIAS)
    else:
        i, f = load(acts, g4, mask), load(acts, g4 + H, mask)
        g, o = load(acts, g4 + 2 * H, mask), load(acts, g4 + 3 * H, mask)
        t_c = load(tc, offs, mask)
    d_o = gh * t_c * o * (1.0 - o)
    d_tc = gh * o * (1.0 - t_c * t_c)
    if LN_C:
        if not RECOMPUTE:  # (recomputed: c' as the forward had it, before any rounding)
            if SETTLE_C:  # the kept state is not c'
                c_new = f * load(cp, offs, mask) + i * g
            else:
                c_new = load(cn, offs, mask)
        gd, xhat, sa, sb = ln_sums(d_tc, c_new, gain(ln_c_w, 0, H, cols), mean_c, rstd_c)
        d_cn = ln_dx(gd, xhat, sa, sb, rstd_c, H)
        accumulate(gw_c, offs, d_tc * xhat, mask)
        if LN_C_BIAS:
            accumulate(gb_c, offs, d_tc, mask)
    else:
        d_cn = d_tc
    dc_next = load(dc, offs, mask)
    if SETTLE_C:
        w_c = settle_weight(wc, wc_s, rows, cols, mask, H, SETTLE_C, COLS_C)
        d_cn += dc_next * (1.0 - w_c)
        store(dc, offs, d_cn * f + dc_next * w_c, mask)
    else:
        d_cn += dc_next
        store(dc, offs, d_cn * f, mask)
    d_i = d_cn * g * i * (1.0 - i)
    d_f = d_cn * load(cp, offs, mask) * f * (1.0 - f)
    d_g = d_cn * i * (1.0 - g * g)
    store(d, g4, d_i, mask)
    store(d, g4 + H, d_f, mask)
    store(d, g4 + 2 * H, d_g, mask)
    store(d, g4 + 3 * H, d_o, mask)
    if LN_HH:
        gd_i, x_i, a_i, b_i = ln_sums(d_i, load(pre, g4, mask), gain(ln_hh, 0, H, cols),
                                      mean, rstd)
        gd_f, x_f, a_f, b_f = ln_sums(d_f, load(pre, g4 + H, mask), gain(ln_hh, 1, H, cols),
                                      mean, rstd)
        gd_g, x_g, a_g, b_g = ln_sums(d_g, load(pre, g4 + 2 * H, mask),
                                      gain(ln_hh, 2, H, cols), mean, rstd)
        gd_o, x_o, a_o, b_o = ln_sums(d_o, load(pre, g4 + 3 * H, mask),
                                      gain(ln_hh, 3, H, cols), mean, rstd)
        accumulate(gw_hh, g4, d_i * x_i, mask)
        accumulate(gw_hh, g4 + H, d_f * x_f, mask)
        accumulate(gw_hh, g4 + 2 * H, d_g * x_g, mask)
        accumulate(gw_hh, g4 + 3 * H, d_o * x_o, mask)
        sa, sb, n = a_i + a_f + a_g + a_o, b_i + b_f + b_g + b_o, 4 * H
        store(dpre, g4, ln_dx(gd_i, x_i, sa, sb, rstd, n), mask)
        store(dpre, g4 + H, ln_dx(gd_f, x_f, sa, sb, rstd, n), mask)
        store(dpre, g4 + 2 * H, ln_dx(gd_g, x_g, sa, sb, rstd, n), mask)
        store(dpre, g4 + 3 * H, ln_dx(gd_o, x_o, sa, sb, rstd, n), mask)



@triton.jit
def _cell_tanh(c_new, ln_c_w, ln_c_b, mean_c, rstd_c, cols, H, LN_C: tl.constexpr,
               LN_C_BIAS: tl.constexpr):
    """tanh(LN_c(c')) given the cell norm's statistics, or tanh(c') without the norm."""
    c_norm = c_new
    if LN_C:
        c_norm = gain(ln_c_w, 0, H, cols) * normed(c_new, mean_c, rstd_c)
        if LN_C_BIAS:
            c_norm += gain(ln_c_b, 0, H, cols)
    return tanh(c_norm)


@triton.jit
def _preactivations(xpre, ln_ih, bias, xmean, xrstd, pre, ln_hh, mean, rstd, rows, cols,
                    valid, g4, mask, H, BIAS: tl.constexpr):
    """The four gate pre-activations LN_ih(x W_ih^T) + b + LN_hh((h m) W_hh^T), as the
    forward formed them, from the two norms' inputs and statistics."""
    x_mean = tl.load(xmean + rows, mask=valid, other=0.0).to(tl.float32)
    x_rstd = tl.load(xrstd + rows, mask=valid, other=0.0).to(tl.float32)
    a_i = _preactivation(0, xpre, ln_ih, bias, x_mean, x_rstd, pre, ln_hh, mean, rstd,
                         cols, g4, mask, H, BIAS)
    a_f = _preactivation(1, xpre, ln_ih, bias, x_mean, x_rstd, pre, ln_hh, mean, rstd,
                         cols, g4, mask, H, BIAS)
    a_g = _preactivation(2, xpre, ln_ih, bias, x_mean, x_rstd, pre, ln_hh, mean, rstd,
                         cols, g4, mask, H, BIAS)
    a_o = _preactivation(3, xpre, ln_ih, bias, x_mean, x_rstd, pre, ln_hh, mean, rstd,
                         cols, g4, mask, H, BIAS)
    return a_i, a_f, a_g, a_o


@triton.jit
def _preactivation(k, xpre, ln_ih, bias, x_mean, x_rstd, pre, ln_hh, mean, rstd, cols, g4,
                   mask, H, BIAS: tl.constexpr):
    a = (gain(ln_ih, k, H, cols) * normed(load(xpre, g4 + k * H, mask), x_mean, x_rstd)
         + gain(ln_hh, k, H, cols) * normed(load(pre, g4 + k * H, mask), mean, rstd))
    if BIAS:
        a += gain(bias, k, H, cols)
    return a
