r"""The Elman RNN loops of the fused backend with Triton kernels (``_triton_rnn.py``).

The same computation as :mod:`rnnkit.backends._fused_rnn`, keeping the same tensors for
backward, so either loop can run the backward of either forward. Each step is one
recurrent product in torch and one kernel doing all the pointwise work:

- forward: ``a_t += (h_{t-1} m) W_hh^T`` (or ``pre_t = (h_{t-1} m) W_hh^T`` when the
  recurrent share is layer-normalised), then the kernel: LN, φ (tanh or ReLU), zoneout
  and length settling, and h_t m for the next product;
- backward: the kernel (δh_t from the last product, the carried share and the output's;
  δpre = δh' φ'; LN backward), then ``q = δpre_t W_hh``.
"""

from __future__ import annotations

import torch

from rnnkit.backends import _triton_common as common
from rnnkit.cells._common import LN_EPS


def usable(r) -> bool:
    return common.usable(r.x, r.h0, r.w.w_ih, r.w.w_hh)


def forward(r) -> dict:
    """Run the RNN forward; return the tensors backward needs (as ``_fused_rnn``)."""
    from rnnkit.backends._triton_rnn import rnn_forward

    acts, w, rec, keep = r.acts, r.w, r.rec, r.keep
    T, B, H = acts.shape
    ln_hh = w.ln_hh is not None
    settle = common.SettleArgs(r.settle_h, T)
    r.hbuf = acts if settle.mode == 0 else torch.empty_like(acts)  # φ is the state itself
    rmean, rrstd, (rmv, rrv) = common.stats(acts, T, B, keep, ln_hh)
    drop = None if r.drop is None else r.drop.contiguous()
    h0 = r.h0.contiguous()
    hm = None if drop is None else h0 * drop  # h_t m, the product's left operand
    av, hv = acts.unbind(0), (h0, *r.hbuf.unbind(0))
    for t in range(T):
        left = hv[t] if hm is None else hm
        p = rec.prod.into(left, rec.pres[t]) if ln_hh else rec.prod.add_to(av[t], left)
        common.launch(
            rnn_forward, B, H, av[t], p, w.ln_hh, rmv[t], rrv[t], hv[t], hv[t + 1], drop, hm,
            settle.views[t], settle.value, LN_EPS, LN_HH=ln_hh, RELU=r.mode == "RNN_RELU",
            SETTLE=settle.mode, COLS=settle.cols, DROP=drop is not None, KEEP=keep)
    if ln_hh and keep:
        rec.mean, rec.rstd = rmean, rrstd
    return {"acts": acts}


def backward(r, dy, dh) -> None:
    """Set ``r.d_rec`` (T, B, H) and ``r.dh0``, as :func:`rnnkit.backends._fused_rnn.backward`."""
    from rnnkit.backends._triton_rnn import rnn_backward

    acts, w, rec = r.acts, r.w, r.rec
    T, B, H = acts.shape
    ln_hh = w.ln_hh is not None
    settle = common.SettleArgs(r.settle_h, T)
    D = torch.empty_like(acts)
    carry = dh.contiguous().clone()  # the final state's gradient, then the settle share
    q = torch.zeros_like(carry)  # the last backward product: none yet
    drop = None if r.drop is None else r.drop.contiguous()
    dyv, dy_sb, dy_sh = common.output_grad(dy, T)
    av, Dv = acts.unbind(0), D.unbind(0)
    pre, rmv, rrv, dprev = ((rec.pres, rec.means, rec.rstds, rec.scratch_dpres(B)) if ln_hh
                            else ([None] * T,) * 4)
    product = rec.backward_product(B)
    for t in range(T - 1, -1, -1):
        common.launch(
            rnn_backward, B, H, av[t], q, carry, dyv[t], dy_sb, dy_sh, drop, settle.views[t],
            settle.value, Dv[t], pre[t], w.ln_hh, rmv[t], rrv[t], dprev[t], LN_HH=ln_hh,
            RELU=r.mode == "RNN_RELU", SETTLE=settle.mode, COLS=settle.cols,
            DROP=drop is not None, DY=dy is not None)
        q = product(dprev[t] if ln_hh else Dv[t])  # δh_{t-1} before the mask
    dh0 = q if drop is None else q.mul_(drop)
    r.d_rec, r.dh0 = D, dh0.add_(carry)
