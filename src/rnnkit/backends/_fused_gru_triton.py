r"""The GRU loops of the fused backend with Triton kernels (``_triton_gru.py``).

The same computation as :mod:`rnnkit.backends._fused_gru`, keeping the same tensors for
backward, so either loop can run the backward of either forward. Each step is one
recurrent product in torch and one kernel doing all the pointwise work:

- forward: ``p_t = (h_{t-1} m) W_hh^T``, then the kernel: LN(p) + b_hh, r, z, n, h',
  zoneout and length settling, and h_t m for the next product;
- backward: the kernel (δh_t from the last product, the carried share and the output's;
  δr, δz, δh_n and δn; LN backward), then ``q = δG_t W_hh``.
"""

from __future__ import annotations

import torch

from rnnkit.backends import _triton_common as common
from rnnkit.cells._common import LN_EPS


def usable(r) -> bool:
    return common.usable(r.x, r.h0, r.w.w_ih, r.w.w_hh)


def forward(r) -> dict:
    """Run the GRU forward; return the tensors backward needs (as ``_fused_gru``)."""
    from rnnkit.backends._triton_gru import gru_forward

    acts, w, rec, keep = r.acts, r.w, r.rec, r.keep
    T, B, G = acts.shape
    H = G // 3
    r.hbuf = acts.new_empty(T, B, H)
    ln_hh = w.ln_hh is not None
    settle = common.SettleArgs(r.settle_h, T)
    hn = acts.new_empty(T, B, H) if keep else None  # h_n, the n part of LN(p) + b_hh
    hnv = [None] * T if hn is None else hn.unbind(0)
    rmean, rrstd, (rmv, rrv) = common.stats(acts, T, B, keep, ln_hh)
    drop = None if r.drop is None else r.drop.contiguous()
    h0 = r.h0.contiguous()
    hm = None if drop is None else h0 * drop  # h_t m, the product's left operand
    prods = rec.pres if ln_hh else [acts.new_empty(B, G)] * T
    av, hv = acts.unbind(0), (h0, *r.hbuf.unbind(0))
    for t in range(T):
        p = rec.prod.into(hv[t] if hm is None else hm, prods[t])
        common.launch(
            gru_forward, B, H, av[t], p, w.b_hh, w.ln_hh, rmv[t], rrv[t], hv[t], hv[t + 1],
            hnv[t], drop, hm, settle.views[t], settle.value, LN_EPS,
            LN_HH=ln_hh, BIAS=w.b_hh is not None, SETTLE=settle.mode, COLS=settle.cols,
            DROP=drop is not None, KEEP=keep)
    if ln_hh and keep:
        rec.mean, rec.rstd = rmean, rrstd
    return {"acts": acts, "hn": hn}


def backward(r, dy, dh) -> None:
    """Set ``r.d_rec`` (recurrent side), ``r.dn`` (the input side's n part) and ``r.dh0``,
    as :func:`rnnkit.backends._fused_gru.backward` does."""
    from rnnkit.backends._triton_gru import gru_backward

    acts, w, rec = r.acts, r.w, r.rec
    T, B, G = acts.shape
    H = G // 3
    ln_hh = w.ln_hh is not None
    settle = common.SettleArgs(r.settle_h, T)
    D, dn = torch.empty_like(acts), acts.new_empty(T, B, H)
    carry = dh.contiguous().clone()  # the final state's gradient, then δh' z + settle share
    q = torch.zeros_like(carry)  # the last backward product: none yet
    drop = None if r.drop is None else r.drop.contiguous()
    dyv, dy_sb, dy_sh = common.output_grad(dy, T)
    av, hnv, Dv, dnv = (b.unbind(0) for b in (acts, r.hn, D, dn))
    hv = (r.h0.contiguous(), *r.hbuf.unbind(0))
    pre, rmv, rrv, dprev = ((rec.pres, rec.means, rec.rstds, rec.scratch_dpres(B)) if ln_hh
                            else ([None] * T,) * 4)
    product = rec.backward_product(B)
    for t in range(T - 1, -1, -1):
        common.launch(
            gru_backward, B, H, av[t], hnv[t], hv[t], q, carry, dyv[t], dy_sb, dy_sh, drop,
            settle.views[t], settle.value, Dv[t], dnv[t], pre[t], w.ln_hh, rmv[t], rrv[t], dprev[t],
            LN_HH=ln_hh, SETTLE=settle.mode, COLS=settle.cols, DROP=drop is not None,
            DY=dy is not None)
        q = product(dprev[t] if ln_hh else Dv[t])  # δh_{t-1} before the mask
    dh0 = q if drop is None else q.mul_(drop)
    r.d_rec, r.dn, r.dh0 = D, dn, dh0.add_(carry)
