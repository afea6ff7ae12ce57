"""The LSTM time loops of the fused backend: forward, then BPTT by hand.

``p`` holds the inputs and buffers (see ``fused.py``): ``xg`` (T, B, 4H) the input gate
pre-activations with both biases, turned in place into the activations i, f, g, o;
``hs`` (T+1, B, P) and ``cs`` (T+1, B, H) the settled states. Work that does not depend
on the carried gradient (activation derivatives, layer-norm gains) is done for all
steps at once outside the loop.
"""

from __future__ import annotations

import torch

from rnnkit.backends._fused_common import (
    at,
    ln_backward,
    ln_forward,
    ln_gain_grad,
    settle_,
    unsettle,
)


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


def _gate_factors(p, H: int) -> None:
    """Turn the saved activations i, f, g, o into what each gate's gradient is
    multiplied by, for all steps at once and in place (no extra (T, B, 4H) buffer):

        i <- g·σ'(i),  f <- σ'(f),  g <- i·tanh'(g),  o <- tanh(LN(c'))·σ'(o)

    with σ' = σ(1 - σ), tanh' = 1 - tanh². Keeps σ(f) (for the cell's carried
    gradient) and o·tanh'(LN(c')) (the path from h' to the normalised cell). Done once
    per forward, so a second backward (retain_graph=True) finds the factors ready."""
    if getattr(p, "forget", None) is not None:
        return
    in_gate, forget_gate, cell_gate, out_gate = p.xg.split(H, dim=-1)  # (T, B, H) each
    p.forget = forget_gate.clone()
    p.out_tc = out_gate * (1 - p.tc * p.tc)
    in_factor = in_gate * (1 - in_gate) * cell_gate
    cell_gate.mul_(cell_gate).neg_().add_(1).mul_(in_gate)
    in_gate.copy_(in_factor)
    forget_gate.mul_(1 - forget_gate)
    out_gate.mul_(1 - out_gate).mul_(p.tc)


def backward(p, dy, dh, dc) -> None:
    """Fill ``p.dgates`` (T, B, 4H) with ∂L/∂(gate pre-activations); set ``p.dh0``,
    ``p.dc0`` and the cell-norm and projection gradients."""
    T, B, G = p.xg.shape
    H = G // 4
    _gate_factors(p, H)
    p.dgates = p.xg.new_empty(T, B, G)
    d_cn_all = p.xg.new_empty(T, B, H) if p.ln_c_weight is not None else None
    if p.w_hr is not None:
        p.dh_proj = p.xg.new_empty(T, B, p.w_hr.shape[0])
    for t in range(T - 1, -1, -1):
        valid = None if p.valid is None else p.vf[t]
        dh_new, dh_prev = unsettle(dh + dy[t], at(p.keep_h, t), valid)
        dc_new, dc_prev = unsettle(dc, at(p.keep_c, t), valid)
        if p.w_hr is not None:
            p.dh_proj[t] = dh_new
            dh_new = dh_new @ p.w_hr  # (B, H)
        f_in, f_forget, f_cell, f_out = p.xg[t].split(H, dim=1)  # the factors
        d_in, d_forget, d_cell, d_out = p.dgates[t].split(H, dim=1)
        torch.mul(f_out, dh_new, out=d_out)
        if p.ln_c_weight is None:
            dc_new = dc_new + dh_new * p.out_tc[t]
        else:
            d_cn = torch.mul(dh_new, p.out_tc[t], out=d_cn_all[t])
            dc_new = dc_new + ln_backward(d_cn, p.cnew[t], p.c_mean[t], p.c_rstd[t],
                                          p.ln_c_weight, p.ln_c_bias, params=False)
        torch.mul(f_in, dc_new, out=d_in)
        torch.mul(f_forget, dc_new, out=d_forget).mul_(p.cs[t])
        torch.mul(f_cell, dc_new, out=d_cell)
        dc = dc_new.mul_(p.forget[t])
        if dc_prev is not None:
            dc += dc_prev
        dh = p.recurrent_backward(p.dgates[t], t)  # ∂L/∂h_{t-1} through W_hh
        if dh_prev is not None:
            dh += dh_prev
    p.dh0, p.dc0 = dh, dc
    if p.ln_c_weight is not None:
        p.d_ln_c_weight = ln_gain_grad(d_cn_all, p.cnew, p.c_mean, p.c_rstd)
        p.d_ln_c_bias = d_cn_all.sum((0, 1))
