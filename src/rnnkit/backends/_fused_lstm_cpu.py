"""The LSTM loops of the fused backend with the compiled CPU kernel (``csrc/lstm.c``):
its buffers, and the loops of :mod:`rnnkit.backends._fused_cpu`.

Keeps the tensors :mod:`rnnkit.backends._fused_lstm` keeps: the activations i, f, g, o
in ``acts``, the states, tanh(LN_c(c')) in ``tc``, c' in ``cnew`` where it differs from
the state and the cell norm needs it, and the layer norms' statistics.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnkit.backends._fused_common import ln_backward
from rnnkit.backends._fused_cpu import backward_loop, forward_loop, masked_h0, run, running_rows


def forward(r) -> dict:
    """Run the LSTM forward; return the tensors backward needs (as ``_fused_lstm``)."""
    acts, w, rec, keep = r.acts, r.w, r.rec, r.keep
    T, B, G = acts.shape
    H = G // 4
    r.hbuf, r.cbuf = acts.new_empty(T, B, H), acts.new_empty(T, B, H)
    ln_hh, ln_c = w.ln_hh is not None, w.ln_c_weight is not None
    kept = (lambda *shape: acts.new_empty(T, *shape)) if keep else acts.new_empty
    cnew = None  # c' apart from the state: kept for the cell norm, else one scratch
    if r.settle_c.w is not None:
        cnew = kept(B, H) if ln_c else acts.new_empty(B, H)
    tc = kept(B, H)
    rmean, rrstd = (kept(B, 1), kept(B, 1)) if ln_hh else (None, None)
    cmean, crstd = (kept(B, 1), kept(B, 1)) if ln_c else (None, None)
    drop, hm, h0 = masked_h0(r)
    fwd, _, s = run(
        r, H, acts=acts, pre=rec.pre if keep and ln_hh else None, ln_hh=w.ln_hh, rmean=rmean,
        rrstd=rrstd, h0=h0, c0=r.c0.contiguous(), hbuf=r.hbuf, cbuf=r.cbuf, cnew=cnew, tc=tc,
        ln_c_w=w.ln_c_weight, ln_c_b=w.ln_c_bias, cmean=cmean, crstd=crstd, drop=drop, hm=hm,
        st_cn=B * H if cnew is not None and cnew.dim() == 3 else 0,
        st_tc=B * H * keep, st_pre=B * G * keep, st_stat=B * keep)
    forward_loop(fwd, s, w.w_hh, acts, running_rows(r))
    if ln_hh and keep:
        rec.mean, rec.rstd = rmean, rrstd
    return {"acts": acts, "c0": r.c0, "cbuf": r.cbuf, "cnew": cnew if keep and ln_c else None,
            "tc": tc if keep else None, "otc": None, "c_mean": cmean, "c_rstd": crstd}


def backward(r, dy: Tensor, dh: Tensor, dc: Tensor) -> None:
    """Set ``r.d_rec`` (T, B, 4H), ``r.dh0``, ``r.dc0`` and the cell norm's gradients,
    as :func:`rnnkit.backends._fused_lstm.backward` does."""
    acts, w, rec = r.acts, r.w, r.rec
    T, B, G = acts.shape
    H = G // 4
    ln_c = w.ln_c_weight is not None  # its gain's gradient needs δ(LN_c output) at every step
    D, dtc = torch.empty_like(acts), acts.new_empty((T, B, H) if ln_c else (B, H))
    dc = dc.contiguous().clone()  # carried in place
    drop = masked_h0(r)[0]
    gp = torch.zeros_like(dc)
    ln_hh = w.ln_hh is not None
    _, bwd, s = run(
        r, H, acts=acts, pre=rec.pre, ln_hh=w.ln_hh, rmean=rec.mean, rrstd=rec.rstd,
        c0=r.c0.contiguous(), hbuf=r.hbuf, cbuf=r.cbuf, cnew=r.cnew, tc=r.tc,
        ln_c_w=w.ln_c_weight, ln_c_b=w.ln_c_bias, cmean=r.c_mean, crstd=r.c_rstd, drop=drop,
        dy=dy.contiguous(), dgates=D, dtc=dtc, dpre=rec.keep_dpre() if ln_hh else None, gp=gp,
        dc=dc,
        st_cn=B * H, st_tc=B * H, st_pre=B * G, st_stat=B, st_dtc=B * H * ln_c)
    dg = rec.dpre if ln_hh else D
    settle = r.settle_h.w is not None
    r.dh0 = backward_loop(bwd, s, w.w_hh, dh, dg, drop, gp if settle else None,
                          running_rows(r))
    r.d_rec, r.dc0 = D, dc
    if ln_c:
        cn = r.cbuf if r.cnew is None else r.cnew
        mask = (False, True, w.ln_c_bias is not None)
        _, r.d_ln_c_weight, r.d_ln_c_bias = ln_backward(dtc, cn, r.c_mean, r.c_rstd,
                                                        w.ln_c_weight, w.ln_c_bias, mask)
