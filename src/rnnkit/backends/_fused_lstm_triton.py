r"""The LSTM loops of the fused backend with Triton kernels (``_triton_lstm.py``).

The same computation as :mod:`rnnkit.backends._fused_lstm`, keeping the same tensors
for backward (so either loop can run the backward of either forward) but two: c' is
never kept apart from the zoned-out state (backward recomputes it), and with both gate
norms on the activations and tanh(c̃) are recomputed in backward from the norms' inputs
instead of kept (:func:`recomputes`). :func:`restore` rebuilds both for the torch loops
and the CPU kernels. Each step is one recurrent product in torch and one kernel doing
all the pointwise work:

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
from rnnkit.backends._fused_common import PIECES, input_bias, multiplied_states
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
    tcv = _views(tc, T)
    for t in range(T):
        left = hv[t] if hm is None else hm
        p = rec.prod.into(left, rec.pres[t]) if ln_hh else rec.prod.add_to(av[t], left)
        common.launch(
            lstm_forward, B, H, av[t], p, w.ln_hh, rmv[t], rrv[t], hv[t], cv[t], hv[t + 1],
            cv[t + 1], tcv[t], w.ln_c_weight, w.ln_c_bias, cmv[t], crv[t], drop, hm,
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
    return {"acts": None if recompute else acts, "c0": r.c0, "cbuf": r.cbuf, "cnew": None,
            "tc": tc, "otc": None,
            "c_mean": cmean if keep_c else None, "c_rstd": crstd if keep_c else None}


def normalises_input(r) -> bool:
    """Whether the forward kernel normalises the input share itself, step by step (and
    keeps its statistics), instead of reading LN_ih(x W_ih^T) + b formed for all steps
    at once: when backward :func:`recomputes`, which keeps x W_ih^T only, so the
    normalised (T, B, 4H) copy is never needed. Then forward keeps no recurrent
    products (h m) W_hh^T either: backward recomputes them (:class:`_RecurrentSteps`)."""
    return recomputes(r) and usable(r) and not _fused_cpu.usable(r)  # those come first


def recomputes(r) -> bool:
    """Whether backward recomputes the activations instead of keeping them: when both
    gate norms are on, their inputs (kept for their own backward, or in the kernels'
    case recomputed: :class:`_RecurrentSteps`) and statistics give the pre-activations
    back exactly, so the (T, B, 4H) activations need not be kept."""
    return r.w.ln_hh is not None and r.w.ln_ih is not None


def restore(r) -> None:
    """What the torch loops and the CPU kernels keep and these kernels' forward may not
    have kept: ``r.acts`` and ``r.tc`` where it :func:`recomputes` them (from the two
    gate norms' inputs and statistics, and the states), and c' in ``r.cnew`` where the
    cell norm needs it apart from the zoned-out state."""
    w = r.w
    need_cnew = r.cnew is None and w.ln_c_weight is not None and r.settle_c.w is not None
    if r.acts is not None:
        if need_cnew:
            r.cnew = _cell_input(r, *r.acts.chunk(4, dim=-1)[:3])
        return
    T, B = r.x.shape[:2]
    G = w.w_hh.shape[0]
    bias = _bias(w)
    if r.pre is None:  # nor the recurrent products: the torch loops read them too
        r.pre = r.rec.pre = multiplied_states(r, 0, T) @ w.w_hh.t()
        r.rec.start_backward(T)
    xpre = r.xpre.view(T, B, G)
    a = (xpre - r.x_mean.view(T, B, 1)) * r.x_rstd.view(T, B, 1) * w.ln_ih
    a += (r.pre - r.mean) * r.rstd * w.ln_hh
    if bias is not None:
        a += bias
    i, f, g, o = a.chunk(4, dim=-1)
    i.sigmoid_(), f.sigmoid_(), g.tanh_(), o.sigmoid_()
    c_new = _cell_input(r, i, f, g)
    if need_cnew:
        r.cnew = c_new.to(r.x.dtype)
    if w.ln_c_weight is not None:
        c_new = (c_new - r.c_mean) * r.c_rstd * w.ln_c_weight
        if w.ln_c_bias is not None:
            c_new += w.ln_c_bias
    r.acts, r.tc = a.to(r.x.dtype), c_new.tanh_().to(r.x.dtype)


def _cell_input(r, i, f, g):
    """(T, B, H): c' = f c_{t-1} + i g at every step, from the activations and the kept
    states (c_0 … c_{T-1})."""
    return f * torch.cat((r.c0.unsqueeze(0), r.cbuf[:-1])) + i * g


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


class _RecurrentSteps:
    """The recurrent norm's side of the backward loop, the sequence cut into :data:`PIECES`
    pieces of ⌈T / PIECES⌉ steps: each step's input ``pre_t = (h_{t-1} m) W_hh^T``,
    recomputed for the whole piece on entering it when forward did not keep it (one
    product over the piece's rows), the buffer the kernel writes ∂L/∂pre_t into, and
    δW_hh summed over each piece on leaving it. So backward holds two pieces of
    (T, B, 4H) instead of one or two whole buffers; the norm's gain gradient is summed
    by the kernel into :attr:`gain` (B, 4H), float32."""

    def __init__(self, r, T: int, B: int) -> None:
        G = r.w.w_hh.shape[0]
        self.r, self.size, self.t0 = r, -(-T // PIECES), T
        self.pres = r.rec.pres  # kept by forward, or None: recomputed here
        self.pre = None if self.pres is not None else r.x.new_empty(self.size, B, G)
        self.dpre = r.x.new_empty(self.size, B, G)
        self.d_w_hh = torch.zeros_like(r.w.w_hh)
        self.gain = torch.zeros(B, G, dtype=torch.float32, device=r.x.device)

    def at(self, t: int):
        """(pre_t, the buffer for ∂L/∂pre_t), for t from T-1 down to 0."""
        if t < self.t0:  # entering the piece that ends at t
            self.t0 = t - t % self.size
            self.hm = multiplied_states(self.r, self.t0, t + 1)
            if self.pres is None:
                n, P = self.hm.shape[0], self.hm.shape[-1]
                rows = self.pre[:n].view(-1, self.pre.shape[-1])
                torch.mm(self.hm.reshape(-1, P), self.r.w.w_hh.t(), out=rows)
        i = t - self.t0
        return (self.pre[i] if self.pres is None else self.pres[t]), self.dpre[i]

    def left(self, t: int) -> None:
        """After step t: δW_hh += Σ ∂L/∂pre^T (h m) over the piece when t was its first."""
        if t == self.t0:
            n, G, P = self.hm.shape[0], self.dpre.shape[-1], self.hm.shape[-1]
            self.d_w_hh.addmm_(self.dpre[:n].view(-1, G).t(), self.hm.reshape(-1, P))

    def finish(self, r) -> None:
        """``r.d_w_hh`` and ``r.d_ln_hh``: ``fused._recurrent_grads`` takes them as they are."""
        r.d_w_hh, r.d_ln_hh = self.d_w_hh, self.gain.sum(0).to(r.w.ln_hh.dtype)


def backward(r, dy, dh, dc) -> None:
    """Set ``r.d_rec`` (T, B, 4H), ``r.dh0``, ``r.dc0`` and the cell norm's gradients,
    as :func:`rnnkit.backends._fused_lstm.backward` does, and with the recurrent norm
    the recurrent weight's and gain's (:class:`_RecurrentSteps`)."""
    from rnnkit.backends._triton_lstm import lstm_backward

    acts, w, rec = r.acts, r.w, r.rec
    T, B = r.x.shape[:2]
    G = w.w_hh.shape[0]
    H = G // 4
    ln_hh, ln_c = w.ln_hh is not None, w.ln_c_weight is not None
    sh, sc = common.SettleArgs(r.settle_h, T), common.SettleArgs(r.settle_c, T)
    D = r.x.new_empty(T, B, G)
    # the cell norm's gain and bias gradients, summed over the steps row by row
    gw_c, gb_c = (D.new_zeros(B, H, dtype=torch.float32) if on else None
                  for on in (ln_c, ln_c and w.ln_c_bias is not None))
    recompute = acts is None  # the forward kept the norms' inputs only
    xv, xmv, xrv, bias = _recompute_args(r, T, B, G) if recompute else ([None] * T,) * 3 + (None,)
    carry = dh.contiguous().clone()  # the final state's gradient, then the settle share
    q = torch.zeros_like(carry)  # the last backward product: none yet
    dc = dc.contiguous().clone()
    drop = None if r.drop is None else r.drop.contiguous()
    dyv, dy_sb, dy_sh = common.output_grad(dy, T)
    cp = (r.c0.contiguous(), *r.cbuf.unbind(0))
    av, tcv, cnv, Dv = (_views(b, T) for b in (acts, r.tc, r.cbuf, D))  # c' = c unsettled
    cmv, crv = _views(r.c_mean, T), _views(r.c_rstd, T)
    rmv, rrv = (rec.means, rec.rstds) if ln_hh else ([None] * T,) * 2
    steps = _RecurrentSteps(r, T, B) if ln_hh else None
    pre = dpre = None
    gw_hh = None if steps is None else steps.gain
    product = rec.backward_product(B)
    for t in range(T - 1, -1, -1):
        if steps is not None:
            pre, dpre = steps.at(t)
        common.launch(
            lstm_backward, B, H, av[t], cp[t], tcv[t], cnv[t], w.ln_c_weight, w.ln_c_bias,
            cmv[t], crv[t], q, carry, dyv[t], dy_sb, dy_sh, drop, sh.views[t], sh.value,
            sc.views[t], sc.value, dc, Dv[t], gw_c, gb_c, pre, w.ln_hh, rmv[t], rrv[t], dpre,
            gw_hh, xv[t], w.ln_ih, bias, xmv[t], xrv[t],
            LN_HH=ln_hh, LN_C=ln_c, LN_C_BIAS=w.ln_c_bias is not None, SETTLE_H=sh.mode,
            COLS_H=sh.cols, SETTLE_C=sc.mode, COLS_C=sc.cols, DROP=drop is not None,
            DY=dy is not None, RECOMPUTE=recompute, BIAS=bias is not None)
        q = product(dpre if ln_hh else Dv[t])  # δh_{t-1} before the mask
        if steps is not None:
            steps.left(t)
    if steps is not None:
        steps.finish(r)
    dh0 = q if drop is None else q.mul_(drop)
    r.d_rec, r.dh0, r.dc0 = D, dh0.add_(carry), dc
    if ln_c:
        r.d_ln_c_weight = gw_c.sum(0).to(w.ln_c_weight.dtype)
        r.d_ln_c_bias = None if gb_c is None else gb_c.sum(0).to(w.ln_c_bias.dtype)
