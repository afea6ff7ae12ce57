r"""The LSTM loops of the fused backend with the compiled CPU kernel (``csrc/lstm.c``).

The same computation as :mod:`rnnkit.backends._fused_lstm`, keeping the same tensors
for backward, so either loop can run the backward of either forward. Each step is one
matrix product in torch and one kernel call doing all the pointwise work:

- forward: ``a_t += (h_{t-1} m) W_hh^T`` (or ``pre_t = (h_{t-1} m) W_hh^T`` when the
  recurrent share is layer-normalised), then the kernel: LN, i, f, g, o, c', LN_c,
  tanh, h', zoneout and length settling, and h_t m for the next product;
- backward: the kernel (gate gradients δG_t, the carried δc, LN backward), then
  ``q = δG_t W_hh``, the next step's δh before its mask.
"""

from __future__ import annotations

import ctypes

import torch

from rnnkit.backends import _cpu_kernels as kernels
from rnnkit.backends._fused_common import ln_backward
from rnnkit.cells._common import LN_EPS

_POINTERS = ("acts", "pre", "ln_hh", "rmean", "rrstd", "h0", "c0", "hbuf", "cbuf", "cnew", "tc",
             "ln_c_w", "ln_c_b", "cmean", "crstd", "wh", "wc", "drop", "hm", "dy", "dgates",
             "dtc", "dpre", "gp", "dc")
_INTS = ("T", "B", "H", "wh_cols", "wc_cols", "st_cn", "st_tc", "st_pre", "st_stat", "threads")
_FLOATS = ("wh_s", "wc_s", "eps")


def usable(r) -> bool:
    """The kernel takes every LSTM option but the projection, on CPU in float32/64."""
    w = r.w
    return w.w_hr is None and kernels.usable(r.x, r.h0, r.c0, w.w_ih, w.w_hh)


def _settle(settle) -> tuple:
    """(tensor or None, columns, scalar) of a settle weight, for the kernel."""
    w = settle.w if settle is not None else None
    if isinstance(w, torch.Tensor):
        w = w.contiguous()
        return w, w.shape[-1], 0.0
    return None, 0, 0.0 if w is None else float(w)


def _run(r, **tensors):
    """The kernel's view of one run: a ctypes Structure of pointers and sizes."""
    lib = kernels.library(r.acts.dtype)
    cls = kernels.struct_for(_POINTERS, _INTS, _FLOATS, r.acts.dtype)
    ptr_type = dict(cls._fields_)["acts"]
    T, B, G = r.acts.shape
    wh, wh_cols, wh_s = _settle(r.settle_h)
    wc, wc_cols, wc_s = _settle(r.settle_c)
    tensors.update(wh=wh, wc=wc)
    values = {k: kernels.pointer(tensors.get(k), ptr_type) for k in _POINTERS}
    sizes = dict(T=T, B=B, H=G // 4, wh_cols=wh_cols, wc_cols=wc_cols,
                 threads=torch.get_num_threads())
    sizes.update({k: tensors.get(k, 0) for k in ("st_cn", "st_tc", "st_pre", "st_stat")})
    run = cls(**values, **sizes, wh_s=wh_s, wc_s=wc_s, eps=LN_EPS)
    run.keep_alive = tensors  # the Structure holds raw pointers only
    return lib, run


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
    pre = rec.pre if keep and ln_hh else None  # the product, kept for LN_hh's backward
    rmean, rrstd = (kept(B, 1), kept(B, 1)) if ln_hh else (None, None)
    cmean, crstd = (kept(B, 1), kept(B, 1)) if ln_c else (None, None)
    drop = None if r.drop is None else r.drop.contiguous()
    h0, c0 = r.h0.contiguous(), r.c0.contiguous()
    hm = None if drop is None else h0 * drop  # h_t m, the product's left operand
    lib, run = _run(
        r, acts=acts, pre=pre, ln_hh=w.ln_hh, rmean=rmean, rrstd=rrstd, h0=h0, c0=c0,
        hbuf=r.hbuf, cbuf=r.cbuf, cnew=cnew, tc=tc, ln_c_w=w.ln_c_weight, ln_c_b=w.ln_c_bias,
        cmean=cmean, crstd=crstd, drop=drop, hm=hm,
        st_cn=B * H if cnew is not None and cnew.dim() == 3 else 0,
        st_tc=B * H * keep, st_pre=B * G * keep, st_stat=B * keep)
    step, ref, product = lib.lstm_forward_step, ctypes.addressof(run), rec.prod
    hv = (h0, *r.hbuf.unbind(0))
    for t in range(T):
        p = product(hv[t] if hm is None else hm)  # (B, 4H)
        step(ref, t, p.data_ptr())
    if ln_hh and keep:
        rec.mean, rec.rstd = rmean, rrstd
    return {"acts": acts, "c0": r.c0, "cbuf": r.cbuf, "cnew": cnew if keep and ln_c else None,
            "tc": tc if keep else None, "otc": None, "c_mean": cmean, "c_rstd": crstd}


def backward(r, dy, dh, dc) -> None:
    """Set ``r.d_rec`` (T, B, 4H), ``r.dh0``, ``r.dc0`` and the cell norm's gradients,
    as :func:`rnnkit.backends._fused_lstm.backward` does."""
    acts, w, rec = r.acts, r.w, r.rec
    T, B, G = acts.shape
    H = G // 4
    D = torch.empty_like(acts)
    dtc = acts.new_empty(T, B, H)
    q = dh.contiguous().clone()  # at the last step, the gradient of the final state
    dc = dc.contiguous().clone()
    drop = None if r.drop is None else r.drop.contiguous()
    gp = torch.zeros_like(q)
    ln_hh = w.ln_hh is not None
    lib, run = _run(
        r, acts=acts, pre=rec.pre, ln_hh=w.ln_hh, rmean=rec.mean, rrstd=rec.rstd,
        h0=r.h0, c0=r.c0.contiguous(), hbuf=r.hbuf, cbuf=r.cbuf, cnew=r.cnew, tc=r.tc,
        ln_c_w=w.ln_c_weight, ln_c_b=w.ln_c_bias, cmean=r.c_mean, crstd=r.c_rstd, drop=drop,
        dy=None if dy is None else dy.contiguous(), dgates=D, dtc=dtc,
        dpre=rec.dpre if ln_hh else None, gp=gp, dc=dc,
        st_cn=B * H, st_tc=B * H, st_pre=B * G, st_stat=B)
    step, ref, product = lib.lstm_backward_step, ctypes.addressof(run), rec.backward_product(B)
    dg = (rec.dpre if ln_hh else D).unbind(0)
    for t in range(T - 1, -1, -1):
        step(ref, t, int(t == T - 1), q.data_ptr())
        q = product(dg[t])  # δh_{t-1} before the mask
    dh0 = q if drop is None else q.mul_(drop)
    if r.settle_h.w is not None:
        dh0 = dh0.add_(gp)
    r.d_rec, r.dh0, r.dc0 = D, dh0, dc
    if w.ln_c_weight is not None:
        cn = r.cbuf if r.cnew is None else r.cnew
        mask = (False, True, w.ln_c_bias is not None)
        _, r.d_ln_c_weight, r.d_ln_c_bias = ln_backward(dtc, cn, r.c_mean, r.c_rstd,
                                                        w.ln_c_weight, w.ln_c_bias, mask)
