"""The LSTM time loops of the fused backend: forward, then BPTT by hand.

``p`` holds the inputs and buffers (see ``fused.py``): ``xg`` (T, B, 4H) the input gate
pre-activations with both biases, turned in place into the activations i, f, g, o;
``hs`` (T+1, B, P) and ``cs`` (T+1, B, H) the settled states. Work that does not depend
on the carried gradient (activation derivatives, layer-norm gains) is done for all
steps at once outside the loop.
"""

from __future__ import annotations

import torch

from rnnkit.backends._fused_common import (at, ln_backward, ln_forward, ln_gain_grad,
                                           settle_, unsettle)


def forward(p) -> None:
    T, B, G = p.xg.shape
    H = G // 4
    p.cs = p.xg.new_empty(T + 1, B, H)
    p.cs[0] = p.c0
    p.tc = p.xg.new_empty(T, B, H)  # tanh(LN(c'))
    if p.w_hr is not None:
        p.otc = p.xg.new_empty(T, B, H)  # o * tanh(LN(c')), the projection's input
    if p.ln_c_weight is not None:
        p.cnew = p.xg.new_empty(T, B, H)
        p.c_mean, p.c_rstd = p.xg.new_empty(T, B, 1), p.xg.new_empty(T, B, 1)
    w_hh_t = p.w_hh.t()
    for t in range(T):
        h, c, a = p.hs[t], p.cs[t], p.xg[t]
        p.recurrent(a, h, w_hh_t, t)  # a += LN(W_hh (h * m))
        a[:, : 2 * H].sigmoid_()
        a[:, 2 * H : 3 * H].tanh_()
        a[:, 3 * H :].sigmoid_()
        in_gate, forget_gate, cell_gate, out_gate = a.split(H, dim=1)
        c_new = p.cnew[t] if p.ln_c_weight is not None else p.cs[t + 1]
        torch.mul(forget_gate, c, out=c_new)
        c_new.addcmul_(in_gate, cell_gate)  # c' = f c + i g
        if p.ln_c_weight is None:
            torch.tanh(c_new, out=p.tc[t])
        else:
            cn, p.c_mean[t], p.c_rstd[t] = ln_forward(c_new, p.ln_c_weight, p.ln_c_bias)
            torch.tanh(cn, out=p.tc[t])
            p.cs[t + 1] = c_new
        if p.w_hr is None:
            torch.mul(out_gate, p.tc[t], out=p.hs[t + 1])
        else:
            torch.mul(out_gate, p.tc[t], out=p.otc[t])
            torch.mm(p.otc[t], p.w_hr.t(), out=p.hs[t + 1])  # (B, P)
        valid = None if p.valid is None else p.valid[t]
        settle_(p.hs[t + 1], h, at(p.keep_h, t), valid)
        settle_(p.cs[t + 1], c, at(p.keep_c, t), valid)


def _derivatives(p, H: int):
    """σ' = σ(1-σ) for i, f, o and tanh' = 1 - g² for g, all steps at once; and
    ``o * tanh'(LN(c'))``, the path from h' to the (normalised) cell."""
    deriv = p.xg * (1 - p.xg)  # (T, B, 4H)
    g = p.xg[..., 2 * H : 3 * H]
    torch.mul(g, g, out=deriv[..., 2 * H : 3 * H]).neg_().add_(1)
    out_tc = p.xg[..., 3 * H :] * (1 - p.tc * p.tc)  # (T, B, H)
    return deriv, out_tc


def backward(p, dy, dh, dc) -> None:
    """Fill ``p.dgates`` (T, B, 4H) with ∂L/∂(gate pre-activations); set ``p.dh0``,
    ``p.dc0`` and the cell-norm and projection gradients."""
    T, B, G = p.xg.shape
    H = G // 4
    deriv, out_tc = _derivatives(p, H)
    p.dgates = p.xg.new_empty(T, B, G)
    d_cn_all = p.xg.new_empty(T, B, H)  # ∂L/∂LN(c'), for the cell-norm parameters
    if p.w_hr is not None:
        p.dh_proj = p.xg.new_empty(T, B, p.w_hr.shape[0])
    for t in range(T - 1, -1, -1):
        valid = None if p.valid is None else p.vf[t]
        dh_new, dh_prev = unsettle(dh + dy[t], at(p.keep_h, t), valid)
        dc_new, dc_prev = unsettle(dc, at(p.keep_c, t), valid)
        in_gate, forget_gate, cell_gate, _ = p.xg[t].split(H, dim=1)
        d_in, d_forget, d_cell, d_out = p.dgates[t].split(H, dim=1)
        if p.w_hr is not None:
            p.dh_proj[t] = dh_new
            dh_new = dh_new @ p.w_hr  # (B, H)
        torch.mul(dh_new, p.tc[t], out=d_out)
        d_cn = torch.mul(dh_new, out_tc[t], out=d_cn_all[t])
        if p.ln_c_weight is not None:
            d_cn = ln_backward(d_cn, p.cnew[t], p.c_mean[t], p.c_rstd[t], p.ln_c_weight,
                               p.ln_c_bias, params=False)
        dc_new = dc_new + d_cn
        torch.mul(dc_new, cell_gate, out=d_in)
        torch.mul(dc_new, p.cs[t], out=d_forget)
        torch.mul(dc_new, in_gate, out=d_cell)
        p.dgates[t].mul_(deriv[t])
        dc = dc_new.mul_(forget_gate)
        if dc_prev is not None:
            dc += dc_prev
        dh = p.recurrent_backward(p.dgates[t], t)  # ∂L/∂h_{t-1} through W_hh
        if dh_prev is not None:
            dh += dh_prev
    p.dh0, p.dc0 = dh, dc
    if p.ln_c_weight is not None:
        p.d_ln_c_weight = ln_gain_grad(d_cn_all, p.cnew, p.c_mean, p.c_rstd)
        p.d_ln_c_bias = d_cn_all.sum((0, 1))
