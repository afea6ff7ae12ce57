"""Triton kernels of the Elman RNN's time step (see ``_triton_ops`` for the conventions)."""

import triton
import triton.language as tl

from rnnkit.backends._triton_ops import (
    centred_sq,
    gain,
    gradient_in,
    ln_dx,
    ln_sums,
    load,
    normed,
    settle_weight,
    store,
    tanh,
)


@triton.jit
def rnn_forward(acts, prod, ln_hh, rmean, rrstd, hp, h, drop, hm, wh, wh_s, eps, B, H,
                LN_HH: tl.constexpr, RELU: tl.constexpr, SETTLE: tl.constexpr,
                COLS: tl.constexpr, DROP: tl.constexpr, KEEP: tl.constexpr,
                BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr):
    """h' = φ(a + LN(p)) (or a with the product already added), settled into h."""
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    cols = tl.arange(0, BLOCK_H)
    mask = (rows < B)[:, None] & (cols < H)[None, :]
    offs = rows[:, None] * H + cols[None, :]
    a = load(acts, offs, mask)
    if LN_HH:
        p = load(prod, offs, mask)
        mean = tl.sum(p, 1) / H
        rstd = 1.0 / tl.sqrt(centred_sq(p, mean, mask) / H + eps)
        a += gain(ln_hh, 0, H, cols) * normed(p, mean, rstd)
        if KEEP:
            tl.store(rmean + rows, mean.to(rmean.dtype.element_ty), mask=rows < B)
            tl.store(rrstd + rows, rstd.to(rrstd.dtype.element_ty), mask=rows < B)
    if RELU:
        y = tl.maximum(a, 0.0, propagate_nan=tl.PropagateNan.ALL)  # NaN stays NaN
    else:
        y = tanh(a)
    store(acts, offs, y, mask)  # φ, and the state itself when nothing settles
    if SETTLE:
        y += settle_weight(wh, wh_s, rows, cols, mask, H, SETTLE, COLS) * (
            load(hp, offs, mask) - y)
        store(h, offs, y, mask)
    if DROP:
        store(hm, offs, y * load(drop, offs, mask), mask)


@triton.jit
def rnn_backward(acts, q, carry, dy, dy_sb, dy_sh, drop, wh, wh_s, d, pre, ln_hh, rmean, rrstd,
                 dpre, B, H, LN_HH: tl.constexpr, RELU: tl.constexpr, SETTLE: tl.constexpr,
                 COLS: tl.constexpr, DROP: tl.constexpr, DY: tl.constexpr,
                 BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr):
    """δ(pre-activation) = δh' φ'; through LN_hh into ``dpre`` for the product."""
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    cols = tl.arange(0, BLOCK_H)
    mask = (rows < B)[:, None] & (cols < H)[None, :]
    offs = rows[:, None] * H + cols[None, :]
    gh, gp = gradient_in(q, carry, dy, dy_sb, dy_sh, drop, wh, wh_s, offs, rows, cols, mask, H,
                         DROP, DY, SETTLE, COLS)
    store(carry, offs, gp, mask)
    y = load(acts, offs, mask)
    if RELU:
        da = tl.where(y > 0, gh, 0.0)
    else:
        da = gh * (1.0 - y * y)
    store(d, offs, da, mask)
    if LN_HH:
        mean = tl.load(rmean + rows, mask=rows < B, other=0.0).to(tl.float32)
        rstd = tl.load(rrstd + rows, mask=rows < B, other=0.0).to(tl.float32)
        gd, xhat, a, b = ln_sums(da, load(pre, offs, mask), gain(ln_hh, 0, H, cols), mean, rstd)
        store(dpre, offs, ln_dx(gd, xhat, a, b, rstd, H), mask)
