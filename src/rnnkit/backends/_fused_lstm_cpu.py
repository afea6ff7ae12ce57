"""The LSTM loops of the fused backend with the compiled CPU kernel (``csrc/lstm.c``):
its buffers, and the loops of :mod:`rnnkit.backends._fused_cpu`.

Keeps the tensors :mod:`rnnkit.backends._fused_lstm` keeps: the activations i, f, g, o
in ``acts``, the states, tanh(LN_c(c')) in ``tc``, c' in ``cnew`` where it differs from
the state and the cell norm needs it, and the layer norms' statistics.

The kernel also normalises the input share itself, step by step, where the input norm
is on (:func:`normalises_input`): ``acts`` is then a fresh buffer and x W_ih^T is read
from ``r.xpre``, so no normalised (T, B, 4H) copy is formed apart. Backward sums, row by
row over the steps, the gradients of the bias and of every norm's gain and bias; with
both gate norms on, ∂L/∂(gate pre-activations) is then read by nothing after the loop
and is one (B, 4H) scratch instead of a (T, B, 4H) buffer.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnkit.backends._fused_common import input_bias
from rnnkit.backends._fused_cpu import (
    backward_loop,
    forward_loop,
    masked_h0,
    run,
    running_rows,
    usable,
)


def normalises_input(r) -> bool:
    """Whether the kernel applies the input norm (then ``r.acts`` is a fresh buffer)."""
    return r.w.ln_ih is not None and usable(r)


def forward(r) -> dict:
    """Run the LSTM forward; return the tensors backward needs (as ``_fused_lstm``)."""
    acts, w, rec, keep = r.acts, r.w, r.rec, r.keep
    T, B, G = acts.shape
    H = G // 4
    r.hbuf, r.cbuf = acts.new_empty(T, B, H), acts.new_empty(T, B, H)
    ln_hh, ln_c = w.ln_hh is not None, w.ln_c_weight is not None
    ln_ih = r.xpre is not None and r.x_mean is None  # x W_ih^T, normalised here
    kept = (lambda *shape: acts.new_empty(T, *shape)) if keep else acts.new_empty
    cnew = None  # c' apart from the state: kept for the cell norm, else one scratch
    if r.settle_c.w is not None:
        cnew = kept(B, H) if ln_c else acts.new_empty(B, H)
    tc = kept(B, H)
    rmean, rrstd = (kept(B, 1), kept(B, 1)) if ln_hh else (None, None)
    cmean, crstd = (kept(B, 1), kept(B, 1)) if ln_c else (None, None)
    xmean, xrstd = (kept(B, 1), kept(B, 1)) if ln_ih else (None, None)
    drop, hm, h0 = masked_h0(r)
    fwd, _, s = run(
        r, H, acts=acts, pre=rec.pre if keep and ln_hh else None, ln_hh=w.ln_hh, rmean=rmean,
        rrstd=rrstd, h0=h0, c0=r.c0.contiguous(), hbuf=r.hbuf, cbuf=r.cbuf, cnew=cnew, tc=tc,
        ln_c_w=w.ln_c_weight, ln_c_b=w.ln_c_bias, cmean=cmean, crstd=crstd, drop=drop, hm=hm,
        xpre=r.xpre if ln_ih else None, ln_ih=w.ln_ih if ln_ih else None,
        bias=_bias(w) if ln_ih else None, xmean=xmean, xrstd=xrstd,
        st_cn=B * H if cnew is not None and cnew.dim() == 3 else 0,
        st_tc=B * H * keep, st_pre=B * G * keep, st_stat=B * keep)
    forward_loop(fwd, s, w.w_hh, acts, running_rows(r))
    if ln_hh and keep:
        rec.mean, rec.rstd = rmean, rrstd
    if ln_ih and keep:
        r.x_mean, r.x_rstd = xmean.view(T * B, 1), xrstd.view(T * B, 1)
    return {"acts": acts, "c0": r.c0, "cbuf": r.cbuf, "cnew": cnew if keep and ln_c else None,
            "tc": tc if keep else None, "otc": None, "c_mean": cmean, "c_rstd": crstd}


def _bias(w):
    bias = input_bias(w, "LSTM")
    return None if bias is None else bias.contiguous()


def backward(r, dy: Tensor, dh: Tensor, dc: Tensor) -> None:
    """Set ``r.dh0``, ``r.dc0``, the bias's and the norms' gradients (``r.d_bias``,
    ``r.d_ln_hh``, ``r.d_ln_ih``, ``r.d_ln_c_weight``, ``r.d_ln_c_bias``), ∂L/∂(x W_ih^T)
    through the input norm in ``r.d_input`` where it is on, and ``r.d_rec`` (T, B, 4H)
    unless both gate norms are on (then nothing after the loop reads it)."""
    acts, w, rec = r.acts, r.w, r.rec
    T, B, G = acts.shape
    H = G // 4
    ln_hh, ln_c, ln_ih = (t is not None for t in (w.ln_hh, w.ln_c_weight, w.ln_ih))
    through = ln_hh and ln_ih  # every use of δG is in the loop
    D, dtc = acts.new_empty((B, G) if through else (T, B, G)), acts.new_empty(B, H)
    sums = {name: acts.new_zeros(B, n) for name, n, on in (
        ("sum_b", G, w.b_ih is not None or w.b_hh is not None), ("sum_hh", G, ln_hh),
        ("sum_ih", G, ln_ih), ("sum_cw", H, ln_c), ("sum_cb", H, w.ln_c_bias is not None))
        if on}
    dxpre = acts.new_empty(T * B, G) if ln_ih else None
    dc = dc.contiguous().clone()  # carried in place
    drop = masked_h0(r)[0]
    gp = torch.zeros_like(dc)
    _, bwd, s = run(
        r, H, acts=acts, pre=rec.pre, ln_hh=w.ln_hh, rmean=rec.mean, rrstd=rec.rstd,
        c0=r.c0.contiguous(), hbuf=r.hbuf, cbuf=r.cbuf, cnew=r.cnew, tc=r.tc,
        ln_c_w=w.ln_c_weight, ln_c_b=w.ln_c_bias, cmean=r.c_mean, crstd=r.c_rstd, drop=drop,
        dy=dy.contiguous(), dgates=D, dtc=dtc, dpre=rec.keep_dpre() if ln_hh else None, gp=gp,
        dc=dc, xpre=r.xpre, ln_ih=w.ln_ih, xmean=r.x_mean, xrstd=r.x_rstd, dxpre=dxpre,
        **sums, st_cn=B * H, st_tc=B * H, st_pre=B * G, st_stat=B, st_d=0 if through else B * G)
    dg = rec.dpre if ln_hh else D
    settle = r.settle_h.w is not None
    r.dh0 = backward_loop(bwd, s, w.w_hh, dh, dg, drop, gp if settle else None,
                          running_rows(r))
    r.d_rec, r.dc0, r.d_input = None if through else D, dc, dxpre
    total = {name: t.sum(0) for name, t in sums.items()}
    r.d_bias, r.d_ln_hh, r.d_ln_ih, r.d_ln_c_weight, r.d_ln_c_bias = (
        total.get(k) for k in ("sum_b", "sum_hh", "sum_ih", "sum_cw", "sum_cb"))
