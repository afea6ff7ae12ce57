"""Triton kernels of the GRU's time step (see ``_triton_ops`` for the conventions).

Gate order r, z, n; ``acts`` is one step's (B, 3H) slice, the input share with ``b_ih``
in, the activations out. The recurrent share LN(p) + b_hh is kept apart, because its n
part h_n is multiplied by r.
"""

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
    sigmoid,
    store,
    tanh,
)


@triton.jit
def gru_forward(acts, prod, b_hh, ln_hh, rmean, rrstd, hp, h, hn, drop, hm, wh, wh_s, eps,
                B, H, LN_HH: tl.constexpr, BIAS: tl.constexpr, SETTLE: tl.constexpr,
                COLS: tl.constexpr, DROP: tl.constexpr, KEEP: tl.constexpr,
                BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr):
    """r, z = σ(x_rz + h_rz); n = tanh(x_n + r h_n); h' = (1 - z) n + z h; settled."""
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    cols = tl.arange(0, BLOCK_H)
    valid = rows < B
    mask = valid[:, None] & (cols < H)[None, :]
    offs = rows[:, None] * H + cols[None, :]
    g3 = rows[:, None] * (3 * H) + cols[None, :]  # gate r of a (B, 3H) row; + k H for gate k
    p_r, p_z, p_n = load(prod, g3, mask), load(prod, g3 + H, mask), load(prod, g3 + 2 * H, mask)
    if LN_HH:
        mean = (tl.sum(p_r, 1) + tl.sum(p_z, 1) + tl.sum(p_n, 1)) / (3 * H)
        var = (centred_sq(p_r, mean, mask) + centred_sq(p_z, mean, mask)
               + centred_sq(p_n, mean, mask)) / (3 * H)
        rstd = 1.0 / tl.sqrt(var + eps)
        p_r = gain(ln_hh, 0, H, cols) * normed(p_r, mean, rstd)
        p_z = gain(ln_hh, 1, H, cols) * normed(p_z, mean, rstd)
        p_n = gain(ln_hh, 2, H, cols) * normed(p_n, mean, rstd)
        if KEEP:
            tl.store(rmean + rows, mean.to(rmean.dtype.element_ty), mask=valid)
            tl.store(rrstd + rows, rstd.to(rrstd.dtype.element_ty), mask=valid)
    if BIAS:
        p_r += gain(b_hh, 0, H, cols)
        p_z += gain(b_hh, 1, H, cols)
        p_n += gain(b_hh, 2, H, cols)
    reset_gate = sigmoid(load(acts, g3, mask) + p_r)
    update_gate = sigmoid(load(acts, g3 + H, mask) + p_z)
    new_gate = tanh(load(acts, g3 + 2 * H, mask) + reset_gate * p_n)
    h_prev = load(hp, offs, mask)
    h_new = new_gate + update_gate * (h_prev - new_gate)
    if SETTLE:
        h_new += settle_weight(wh, wh_s, rows, cols, mask, H, SETTLE, COLS) * (h_prev - h_new)
    store(h, offs, h_new, mask)
    if DROP:
        store(hm, offs, h_new * load(drop, offs, mask), mask)
    if KEEP:  # what backward reads
        store(acts, g3, reset_gate, mask)
        store(acts, g3 + H, update_gate, mask)
        store(acts, g3 + 2 * H, new_gate, mask)
        store(hn, offs, p_n, mask)


@triton.jit
def gru_backward(acts, hn, hp, q, carry, dy, dy_sb, dy_sh, drop, wh, wh_s, d, dn, pre, ln_hh,
                 rmean, rrstd, dpre, B, H, LN_HH: tl.constexpr, SETTLE: tl.constexpr,
                 COLS: tl.constexpr, DROP: tl.constexpr, DY: tl.constexpr,
                 BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr):
    """δn = δh' (1 - z) tanh'(n) (the input side's n part, into ``dn``); δr, δz, δh_n
    (the recurrent side, into ``d``); the carry δh' z + the settle share."""
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    cols = tl.arange(0, BLOCK_H)
    valid = rows < B
    mask = valid[:, None] & (cols < H)[None, :]
    offs = rows[:, None] * H + cols[None, :]
    g3 = rows[:, None] * (3 * H) + cols[None, :]
    gh, gp = gradient_in(q, carry, dy, dy_sb, dy_sh, drop, wh, wh_s, offs, rows, cols, mask, H,
                         DROP, DY, SETTLE, COLS)
    r, z, n = load(acts, g3, mask), load(acts, g3 + H, mask), load(acts, g3 + 2 * H, mask)
    store(carry, offs, gp + gh * z, mask)
    d_n = gh * (1.0 - z) * (1.0 - n * n)
    d_hn = d_n * r
    d_r = d_n * load(hn, offs, mask) * r * (1.0 - r)
    d_z = gh * (load(hp, offs, mask) - n) * z * (1.0 - z)
    store(dn, offs, d_n, mask)
    store(d, g3, d_r, mask)
    store(d, g3 + H, d_z, mask)
    store(d, g3 + 2 * H, d_hn, mask)
    if LN_HH:
        mean = tl.load(rmean + rows, mask=valid, other=0.0).to(tl.float32)
        rstd = tl.load(rrstd + rows, mask=valid, other=0.0).to(tl.float32)
        gd_r, x_r, a_r, b_r = ln_sums(d_r, load(pre, g3, mask), gain(ln_hh, 0, H, cols),
                                      mean, rstd)
        gd_z, x_z, a_z, b_z = ln_sums(d_z, load(pre, g3 + H, mask), gain(ln_hh, 1, H, cols),
                                      mean, rstd)
        gd_n, x_n, a_n, b_n = ln_sums(d_hn, load(pre, g3 + 2 * H, mask),
                                      gain(ln_hh, 2, H, cols), mean, rstd)
        sa, sb, n3 = a_r + a_z + a_n, b_r + b_z + b_n, 3 * H
        store(dpre, g3, ln_dx(gd_r, x_r, sa, sb, rstd, n3), mask)
        store(dpre, g3 + H, ln_dx(gd_z, x_z, sa, sb, rstd, n3), mask)
        store(dpre, g3 + 2 * H, ln_dx(gd_n, x_n, sa, sb, rstd, n3), mask)
