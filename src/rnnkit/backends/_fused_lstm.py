r"""The LSTM time loops of the fused backend: forward, then BPTT by hand.

``r`` is the run (see ``fused.py``). Forward turns ``r.acts`` (T, B, 4H), the input
gate pre-activations with both biases, in place into the activations i, f, g, o, and
writes the states into ``r.hbuf`` (T, B, P) and ``r.cbuf`` (T, B, H). Backward writes
∂L/∂(gate pre-activations) into a fresh (T, B, 4H) buffer, first filled with what each
gradient is multiplied by (computed for all steps at once), then scaled step by step:

.. math::
    \delta o = \delta h' \odot \tanh(\tilde c) \sigma'(o), \qquad
    \delta c' = \delta c_{carried} + \mathrm{LN_c}'^T(\delta h' \odot o \tanh'(\tilde c)) \\
    \delta i, \delta f, \delta g = \delta c' \odot (g \sigma'(i),\ c \sigma'(f),\ i \tanh'(g)),
    \qquad \delta c_{t-1} = \delta c' \odot f + \ldots

with :math:`\tilde c = \mathrm{LN_c}(c')` and δh' the gradient of the projected output.
"""

from __future__ import annotations

import torch

from rnnkit.backends import _fused_cpu, _fused_lstm_cpu, _fused_lstm_triton
from rnnkit.backends._fused_common import ln, ln_backward, steps


def forward(r) -> dict:
    """Run the LSTM forward; return the tensors backward needs."""
    if _fused_cpu.usable(r):
        return _fused_lstm_cpu.forward(r)
    if _fused_lstm_triton.usable(r):
        return _fused_lstm_triton.forward(r)
    acts, w = r.acts, r.w
    T, B, G = acts.shape
    H = G // 4
    r.hbuf = acts.new_empty(T, B, r.h0.shape[-1])
    r.cbuf = acts.new_empty(T, B, H)
    hv, cv = (r.h0, *r.hbuf.unbind(0)), (r.c0, *r.cbuf.unbind(0))
    if r.settle_c.w is None:  # c' is the stored state itself
        cnew, cnv = r.cbuf, cv[1:]
    elif w.ln_c_weight is not None:  # c' kept for the cell norm's backward
        cnew, cnv = steps(acts, T, (B, H), r.keep)
    else:
        cnew, cnv = None, [acts.new_empty(B, H)] * T
    tc, tcv = steps(acts, T, (B, H), r.keep)  # tanh(LN_c(c'))
    otc, otcv = steps(acts, T, (B, H), r.keep) if w.w_hr is not None else (None, None)
    c_mean, c_rstd = _loop(r, hv, cv, cnv, tcv, otcv)
    return {"acts": acts, "c0": r.c0, "cbuf": r.cbuf, "cnew": cnew, "tc": tc, "otc": otc,
            "c_mean": c_mean, "c_rstd": c_rstd}


def _loop(r, hv, cv, cnv, tcv, otcv):
    """The time loop: one recurrent product and ~12 small in-place ops per step."""
    acts, rec, settle_h, settle_c = r.acts, r.rec, r.settle_h, r.settle_c
    H = acts.shape[-1] // 4
    gain, bias = r.w.ln_c_weight, r.w.ln_c_bias
    w_hr_t = None if r.w.w_hr is None else r.w.w_hr.t().contiguous()
    av, if_s = acts.unbind(0), acts[..., : 2 * H].unbind(0)
    i_s, f_s, g_s, o_s = (acts[..., k * H : (k + 1) * H].unbind(0) for k in range(4))
    means, rstds = [], []
    for t in range(len(av)):
        h, c, cn, tc = hv[t], cv[t], cnv[t], tcv[t]
        rec.add_(av[t], h, t)  # the pre-activations: x side + LN(W_hh (h ⊙ m)) + b_hh
        if_s[t].sigmoid_()
        g_s[t].tanh_()
        o_s[t].sigmoid_()
        torch.mul(f_s[t], c, out=cn)
        cn.addcmul_(i_s[t], g_s[t])  # c' = f c + i g
        if gain is None:
            torch.tanh(cn, out=tc)
        else:
            out, mean, rstd = ln(cn, gain, bias)
            torch.tanh(out, out=tc)
            means.append(mean)
            rstds.append(rstd)
        if w_hr_t is None:
            torch.mul(o_s[t], tc, out=hv[t + 1])  # h' = o tanh(LN_c(c'))
        else:
            torch.mm(torch.mul(o_s[t], tc, out=otcv[t]), w_hr_t, out=hv[t + 1])
        settle_h.step_(hv[t + 1], h, t)
        if cn is not cv[t + 1]:
            settle_c.step_into(cv[t + 1], cn, c, t)
    return (torch.stack(means), torch.stack(rstds)) if means else (None, None)


def _factors(r):
    """What each gate's gradient is multiplied by, for all steps at once:
    D = (g σ'(i), c_{t-1} σ'(f), i tanh'(g), tanh(c̃) σ'(o)) (T, B, 4H), and the path
    from h' to the normalised cell, o tanh'(c̃) (T, B, H). The saved activations are
    left untouched, so a second backward (retain_graph=True) finds them intact."""
    si, sf, tg, so = r.acts.chunk(4, dim=-1)  # (T, B, H) each
    D = torch.empty_like(r.acts)
    d_i, d_f, d_g, d_o = D.chunk(4, dim=-1)
    torch.addcmul(si, si, si, value=-1, out=d_i).mul_(tg)
    torch.addcmul(sf, sf, sf, value=-1, out=d_f)
    d_f[0].mul_(r.c0)
    d_f[1:].mul_(r.cbuf[:-1])
    torch.mul(si, tg, out=d_g)
    torch.addcmul(si, d_g, tg, value=-1, out=d_g)
    torch.addcmul(so, so, so, value=-1, out=d_o).mul_(r.tc)
    ot = so * r.tc
    torch.addcmul(so, ot, r.tc, value=-1, out=ot)
    return D, ot


def backward(r, dy, dh, dc) -> None:
    """Set ``r.d_rec`` (T, B, 4H), ``r.dh0``, ``r.dc0`` and the projection and
    cell-norm gradients."""
    if not _fused_lstm_triton.usable(r):  # what the kernels' forward may not have kept
        _fused_lstm_triton.restore(r)
    if _fused_cpu.usable(r):
        return _fused_lstm_cpu.backward(r, dy, dh, dc)
    if _fused_lstm_triton.usable(r):
        return _fused_lstm_triton.backward(r, dy, dh, dc)
    D, ot = _factors(r)
    r.settle_h.prepare(dy)
    r.settle_c.prepare(None)
    dhp = None if r.w.w_hr is None else r.hbuf.new_empty(r.hbuf.shape)
    dh, dc = _backward_loop(r, D, ot, dhp, dh, dc)
    r.d_rec, r.dh0, r.dc0 = D, dh, dc.clone()  # dc may be a view into ``ot``
    w = r.w
    if w.ln_c_weight is not None:
        cnew = r.cbuf if r.cnew is None else r.cnew
        mask = (False, True, w.ln_c_bias is not None)
        _, r.d_ln_c_weight, r.d_ln_c_bias = ln_backward(ot, cnew, r.c_mean, r.c_rstd,
                                                        w.ln_c_weight, w.ln_c_bias, mask)
    if dhp is not None:  # δW_hr = Σ_t δh'_t^T (o tanh(c̃))_t
        P, H = w.w_hr.shape
        r.d_w_hr = dhp.view(-1, P).t() @ r.otc.view(-1, H)


def _backward_loop(r, D, ot, dhp, dh, dc):
    T, B, G = D.shape
    H = G // 4
    rec, settle_h, settle_c, w = r.rec, r.settle_h, r.settle_c, r.w
    gain, bias, w_hr = w.ln_c_weight, w.ln_c_bias, w.w_hr
    dv, d_ifg, d_o = D.unbind(0), D.view(T, B, 4, H)[:, :, :3].unbind(0), D[..., 3 * H :].unbind(0)
    otv, sf = ot.unbind(0), r.acts[..., H : 2 * H].unbind(0)
    dhpv = None if dhp is None else dhp.unbind(0)
    if gain is not None:
        cnv = (r.cbuf if r.cnew is None else r.cnew).unbind(0)
        c_means, c_rstds = r.c_mean.unbind(0), r.c_rstd.unbind(0)
    for t in range(T - 1, -1, -1):
        gh, gp = settle_h.split(dh, t)  # ∂L/∂h' and the zoneout/length share to h_{t-1}
        if dhpv is not None:
            dhpv[t].copy_(gh)
            gh = torch.mm(gh, w_hr)  # (B, H): ∂L/∂(o tanh(c̃))
        d_o[t].mul_(gh)
        dcn = otv[t].mul_(gh)  # ∂L/∂c̃
        if gain is not None:
            dcn = ln_backward(dcn, cnv[t], c_means[t], c_rstds[t], gain, bias)[0]
        dcn = settle_c.keep_new_(dcn, dc, t)  # ∂L/∂c'
        d_ifg[t].mul_(dcn.unsqueeze(1))  # δi, δf, δg
        dc = settle_c.carry(dcn, sf[t], dc, t)  # ∂L/∂c_{t-1}
        dh = rec.grad(dv[t], t, gp)  # ∂L/∂h_{t-1}
    return dh, dc


def input_side(r):
    """∂L/∂(input-side pre-activations): the same as the recurrent side's."""
    return r.d_rec
