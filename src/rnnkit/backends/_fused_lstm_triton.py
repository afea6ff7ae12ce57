r"""The LSTM loops of the fused backend with Triton kernels (``_triton_lstm.py``).

The same computation as :mod:`rnnkit.backends._fused_lstm`, keeping the same tensors
for backward (so either loop can run the backward of either forward), except that with
both gate norms on the activations and tanh(c̃) are recomputed in backward from the
norms' inputs instead of kept (:func:`recomputes`; :func:`restore` rebuilds them for the
torch loops). Each step is one recurrent product in torch and one kernel doing all the
pointwise work:

- forward: ``a_t += (h_{t-1} m) W_hh^T`` (or ``pre_t = (h_{t-1} m) W_hh^T`` when the
  recurrent share is layer-normalised), then the kernel: LN, i, f, g, o, c', LN_c,
  tanh, h', zoneout and length settling, and h_t m for the next product;
- backward: the kernel (δh_t from the last product, the carried share and the output's;
  the gate gradients δG_t; the carried δc; LN backward), then ``q = δG_t W_hh``.

The projection (``proj_size``) is left to the torch loops: it is a product inside a step.
"""

from __future__ import annotations

import torch

from rnnkit.backends import _fused_cpu
from rnnkit.backends import _triton_common as common
from rnnkit.backends._fused_common import input_bias, ln_backward
from rnnkit.cells._common import LN_EPS


def usable(r) -> bool:
    w = r.w
    return w.w_hr is None and common.usable(r.x, r.h0, r.c0, w.w_ih, w.w_hh)


def forward(r) -> dict:
    """Run the LSTM forward; return the tensors backward needs (as ``_fused_lstm``)."""
    from rnnkit.backends._triton_lstm import lstm_forward

    acts, w, rec, keep = r.acts, r.w, r.rec, r.keep
    T, B, G = acts.shape
    H = G // 4
    r.hbuf, r.cbuf = acts.new_empty(T, B, H), acts.new_empty(T, B, H)
    ln_hh, ln_c = w.ln_hh is not None, w.ln_c_weight is not None
    sh, sc = common.SettleArgs(r.settle_h, T), common.SettleArgs(r.settle_c, T)
    cnew = acts.new_empty(T, B, H) if keep and ln_c and sc.mode else None  # c' apart
    recompute = keep and recomputes(r)
    tc = acts.new_empty(T, B, H) if keep and not recompute else None
    rmean, rrstd, (rmv, rrv) = common.stats(acts, T, B, keep, ln_hh)
    cmean, crstd, (cmv, crv) = common.stats(acts, T, B, keep, ln_c)
    ln_ih = r.xpre is not None and r.x_mean is None  # acts is x W_ih^T: normalised here
    xmean, xrstd, (xmv, xrv) = common.stats(acts, T, B, keep, ln_ih)
    bias = _bias(w) if ln_ih else None
    drop = None if r.drop is None else r.drop.contiguous()
    h0, c0 = r.h0.contiguous(), r.c0.contiguous()
    hm = None if drop is None else h0 * drop  # h_t m, the product's left operand
    av, hv, cv = acts.unbind(0), (h0, *r.hbuf.unbind(0)), (c0, *r.cbuf.unbind(0))
    cnv, tcv = _views(cnew, T), _views(tc, T)
    for t in range(T):
        left = hv[t] if hm is None else hm
        p = rec.prod.into(left, rec.pres[t]) if ln_hh else rec.prod.add_to(av[t], left)
        common.launch(
            lstm_forward, B, H, av[t], p, w.ln_hh, rmv[t], rrv[t], hv[t], cv[t], hv[t + 1],
            cv[t + 1], cnv[t], tcv[t], w.ln_c_weight, w.ln_c_bias, cmv[t], crv[t], drop, hm,
            sh.views[t], sh.value, sc.views[t], sc.value, w.ln_ih, bias, xmv[t], xrv[t],
            LN_EPS, LN_IH=ln_ih, BIAS=bias is not None, LN_HH=ln_hh, LN_C=ln_c,
            LN_C_BIAS=w.ln_c_bias is not None, SETTLE_H=sh.mode, COLS_H=sh.cols,
            SETTLE_C=sc.mode, COLS_C=sc.cols, DROP=drop is not None, KEEP=keep,
            KEEP_ACTS=keep and not recompute)
    if ln_hh and keep:
        rec.mean, rec.rstd = rmean, rrstd
    if ln_ih and keep:
        r.x_mean, r.x_rstd = xmean.view(T * B, 1), xrstd.view(T * B, 1)
    keep_c = keep and ln_c
    return {"acts": None if recompute else acts, "c0": r.c0, "cbuf": r.cbuf, "cnew": cnew,
            "tc": tc, "otc": None,
            "c_mean": cmean if keep_c else None, "c_rstd": crstd if keep_c else None}


def normalises_input(r) -> bool:
    """Whether the forward kernel normalises the input share itself, step by step (and
    keeps its statistics), instead of reading LN_ih(x W_ih^T) + b formed for all steps
    at once: when backward :func:`recomputes`, which keeps x W_ih^T only, so the
    normalised (T, B, 4H) copy is never needed."""
    return recomputes(r) and usable(r) and not _fused_cpu.usable(r)  # those come first


def recomputes(r) -> bool:
    """Whether backward recomputes the activations instead of keeping them: when both
    gate norms are on, their inputs (kept for their own backward) and statistics give
    the pre-activations back exactly, so the (T, B, 4H) activations need not be kept."""
    return r.w.ln_hh is not None and r.w.ln_ih is not None


def restore(r) -> None:
    """``r.acts`` and ``r.tc`` as the torch loops keep them, from what a forward that
    :func:`recomputes` kept: the two gate norms' inputs and statistics, and the states."""
    w = r.w
    T, B = r.x.shape[:2]
    G = w.w_hh.shape[0]
    bias = _bias(w)
    xpre = r.xpre.view(T, B, G)
    a = (xpre - r.x_mean.view(T, B, 1)) * r.x_rstd.view(T, B, 1) * w.ln_ih
    a += (r.pre - r.mean) * r.rstd * w.ln_hh
    if bias is not None:
        a += bias
    i, f, g, o = a.chunk(4, dim=-1)
    i.sigmoid_(), f.sigmoid_(), g.tanh_(), o.sigmoid_()
    c_prev = torch.cat((r.c0.unsqueeze(0), r.cbuf[:-1]))
    c_new = f * c_prev + i * g
    if w.ln_c_weight is not None:
        c_new = (c_new - r.c_mean) * r.c_rstd * w.ln_c_weight
        if w.ln_c_bias is not None:
            c_new += w.ln_c_bias
    r.acts, r.tc = a.to(r.x.dtype), c_new.tanh_().to(r.x.dtype)


def _recompute_args(r, T: int, B: int, G: int):
    """Per-step views of the input norm's input and statistics, and the summed bias:
    what the backward kernel recomputes the pre-activations from."""
    return (r.xpre.view(T, B, G).unbind(0), r.x_mean.view(T, B).unbind(0),
            r.x_rstd.view(T, B).unbind(0), _bias(r.w))


def _bias(w):
    """The input share's bias, as one contiguous vector for the kernels."""
    bias = input_bias(w, "LSTM")
    return None if bias is None else bias.contiguous()


def _views(buf, T: int) -> list:
    return [None] * T if buf is None else buf.unbind(0)


def backward(r, dy, dh, dc) -> None:
    """Set ``r.d_rec`` (T, B, 4H), ``r.dh0``, ``r.dc0`` and the cell norm's gradients,
    as :func:`rnnkit.backends._fused_lstm.backward` does."""
    from rnnkit.backends._triton_lstm import lstm_backward

    acts, w, rec = r.acts, r.w, r.rec
    T, B = r.x.shape[:2]
    G = w.w_hh.shape[0]
    H = G // 4
    ln_hh, ln_c = w.ln_hh is not None, w.ln_c_weight is not None
    sh, sc = common.SettleArgs(r.settle_h, T), common.SettleArgs(r.settle_c, T)
    D = r.x.new_empty(T, B, G)
    dtc = D.new_empty(T, B, H) if ln_c else None
    recompute = acts is None  # the forward kept the norms' inputs only
    xv, xmv, xrv, bias = _recompute_args(r, T, B, G) if recompute else ([None] * T,) * 3 + (None,)
    carry = dh.contiguous().clone()  # the final state's gradient, then the settle share
    q = torch.zeros_like(carry)  # the last backward product: none yet
    dc = dc.contiguous().clone()
    drop = None if r.drop is None else r.drop.contiguous()
    dyv = _views(None if dy is None else dy.contiguous(), T)
    cn = r.cbuf if r.cnew is None else r.cnew
    cp = (r.c0.contiguous(), *r.cbuf.unbind(0))
    av, tcv, cnv, Dv, dtcv = (*(_views(b, T) for b in (acts, r.tc, cn, D)), _views(dtc, T))
    cmv, crv = _views(r.c_mean, T), _views(r.c_rstd, T)
    pre, rmv, rrv, dprev = ((rec.pres, rec.means, rec.rstds, rec.scratch_dpres(B)) if ln_hh
                            else ([None] * T,) * 4)
    product = rec.backward_product(B)
    for t in range(T - 1, -1, -1):
        common.launch(
            lstm_backward, B, H, av[t], cp[t], tcv[t], cnv[t], w.ln_c_weight, w.ln_c_bias,
            cmv[t], crv[t], q, carry, dyv[t], drop, sh.views[t], sh.value, sc.views[t],
            sc.value, dc, Dv[t], dtcv[t], pre[t], w.ln_hh, rmv[t], rrv[t], dprev[t], xv[t],
            w.ln_ih, bias, xmv[t], xrv[t],
            LN_HH=ln_hh, LN_C=ln_c, LN_C_BIAS=w.ln_c_bias is not None, SETTLE_H=sh.mode,
            COLS_H=sh.cols, SETTLE_C=sc.mode, COLS_C=sc.cols, DROP=drop is not None,
            DY=dy is not None, RECOMPUTE=recompute, BIAS=bias is not None)
        q = product(dprev[t] if ln_hh else Dv[t])  # δh_{t-1} before the mask
    dh0 = q if drop is None else q.mul_(drop)
    r.d_rec, r.dh0, r.dc0 = D, dh0.add_(carry), dc
    if ln_c:
        mask = (False, True, w.ln_c_bias is not None)
        _, r.d_ln_c_weight, r.d_ln_c_bias = ln_backward(dtc, cn, r.c_mean, r.c_rstd,
                                                        w.ln_c_weight, w.ln_c_bias, mask)
