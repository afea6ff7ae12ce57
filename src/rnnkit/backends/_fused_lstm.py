"""The LSTM time loops of the fused backend: forward, then BPTT by hand.

``p`` holds the inputs and buffers (see ``fused.py``): ``xg`` (T, B, 4H) the input gate
pre-activations with both biases, turned in place into the activations i, f, g, o;
``hs`` (T+1, B, P) and ``cs`` (T+1, B, H) the settled states.
"""

from __future__ import annotations

import torch

from rnnkit.backends._fused_common import at, ln_backward, ln_forward, settle, unsettle


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
        c_new = torch.addcmul(forget_gate * c, in_gate, cell_gate)  # (B, H)
        if p.ln_c_weight is None:
            torch.tanh(c_new, out=p.tc[t])
        else:
            p.cnew[t] = c_new
            cn, p.c_mean[t], p.c_rstd[t] = ln_forward(c_new, p.ln_c_weight, p.ln_c_bias)
            torch.tanh(cn, out=p.tc[t])
        h_new = out_gate * p.tc[t]
        if p.w_hr is not None:
            p.otc[t] = h_new
            h_new = h_new @ p.w_hr.t()  # (B, P)
        valid = None if p.valid is None else p.valid[t]
        p.hs[t + 1] = settle(h_new, h, at(p.keep_h, t), valid)
        p.cs[t + 1] = settle(c_new, c, at(p.keep_c, t), valid)


def backward(p, dy, dh, dc) -> None:
    """Fill ``p.dgates`` (T, B, 4H) with ∂L/∂(gate pre-activations); set ``p.dh0``,
    ``p.dc0`` and the cell-norm and projection gradients."""
    T, B, G = p.xg.shape
    H = G // 4
    p.dgates = p.xg.new_empty(T, B, G)
    if p.w_hr is not None:
        p.dh_proj = p.xg.new_empty(T, B, p.w_hr.shape[0])
    if p.ln_c_weight is not None:
        p.d_ln_c_weight = torch.zeros_like(p.ln_c_weight)
        p.d_ln_c_bias = torch.zeros_like(p.ln_c_bias)
    for t in range(T - 1, -1, -1):
        valid = None if p.valid is None else p.vf[t]
        dh_new, dh_prev = unsettle(dh + dy[t], at(p.keep_h, t), valid)
        dc_new, dc_prev = unsettle(dc, at(p.keep_c, t), valid)
        in_gate, forget_gate, cell_gate, out_gate = p.xg[t].split(H, dim=1)
        d_in, d_forget, d_cell, d_out = p.dgates[t].split(H, dim=1)
        if p.w_hr is not None:
            p.dh_proj[t] = dh_new
            dh_new = dh_new @ p.w_hr  # (B, H)
        tc = p.tc[t]
        torch.mul(dh_new, tc, out=d_out)
        d_out.mul_(out_gate - out_gate * out_gate)  # σ' = σ(1 - σ)
        d_cn = dh_new * out_gate * (1 - tc * tc)
        if p.ln_c_weight is not None:
            d_cn, dgain, dbias = ln_backward(d_cn, p.cnew[t], p.c_mean[t], p.c_rstd[t],
                                             p.ln_c_weight, p.ln_c_bias)
            p.d_ln_c_weight += dgain
            p.d_ln_c_bias += dbias
        dc_new = dc_new + d_cn
        torch.mul(dc_new, cell_gate, out=d_in)
        d_in.mul_(in_gate - in_gate * in_gate)
        torch.mul(dc_new, p.cs[t], out=d_forget)
        d_forget.mul_(forget_gate - forget_gate * forget_gate)
        torch.mul(dc_new, in_gate, out=d_cell)
        d_cell.mul_(1 - cell_gate * cell_gate)
        dc = dc_new * forget_gate
        if dc_prev is not None:
            dc = dc + dc_prev
        dh = p.recurrent_backward(p.dgates[t], t)  # ∂L/∂h_{t-1} through W_hh
        if dh_prev is not None:
            dh = dh + dh_prev
    p.dh0, p.dc0 = dh, dc
