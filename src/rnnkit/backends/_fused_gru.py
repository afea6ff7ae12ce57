r"""The GRU time loops of the fused backend: forward, then BPTT by hand.

``r.acts`` (T, B, 3H) holds the input share of the gates with ``b_ih`` and is turned in
place into r, z, n. The recurrent share (with ``b_hh``) stays apart, because its ``n``
part is multiplied by r; that part, h_n, is kept for backward. Backward, with δh' the
gradient reaching the new state:

.. math::
    \delta n = \delta h' (1 - z) \tanh'(n), \quad
    \delta z = \delta h' (h - n) \sigma'(z), \quad
    \delta r = \delta n \, h_n \sigma'(r), \quad
    \delta h_n = \delta n \, r, \quad
    \delta h_{t-1} = \delta h' z + \ldots

Every factor multiplying δh' is computed for all steps at once before the loop, which
then only scales them: the recurrent side (δr, δz, δh_n) in one (T, B, 3H) buffer, δn
in another (T, B, H).
"""

from __future__ import annotations

import torch

from rnnkit.backends import _fused_cpu, _fused_gru_triton
from rnnkit.backends._fused_common import steps


def forward(r) -> dict:
    """Run the GRU forward; return the tensors backward needs."""
    if _fused_cpu.usable(r):
        return _fused_cpu.gru_forward(r)
    if _fused_gru_triton.usable(r):
        return _fused_gru_triton.forward(r)
    acts, rec, settle = r.acts, r.rec, r.settle_h
    T, B, G = acts.shape
    H = G // 3
    r.hbuf = acts.new_empty(T, B, H)
    hv = (r.h0, *r.hbuf.unbind(0))
    hn, hnv = steps(acts, T, (B, H), r.keep)  # h_n: the n part of LN(W_hh (h ⊙ m)) + b_hh
    rz_s, r_s, z_s, n_s = (acts[..., a:b].unbind(0)
                           for a, b in ((0, 2 * H), (0, H), (H, 2 * H), (2 * H, G)))
    sizes = [2 * H, H]
    for t in range(T):
        h = hv[t]
        h_rz, h_n = rec.gates(h, t).split(sizes, dim=1)
        rz_s[t].add_(h_rz).sigmoid_()  # r, z
        hnv[t].copy_(h_n)
        n_s[t].addcmul_(r_s[t], h_n).tanh_()  # n = tanh(x_n + r h_n)
        torch.lerp(n_s[t], h, z_s[t], out=hv[t + 1])  # h' = (1 - z) n + z h
        settle.step_(hv[t + 1], h, t)
    return {"acts": acts, "hn": hn}


def _factors(r):
    """(δr, δz, δh_n) / δh' (T, B, 3H) and δn / δh' (T, B, H), for all steps."""
    s_r, s_z, n = r.acts.chunk(3, dim=-1)
    D = torch.empty_like(r.acts)
    d_r, d_z, d_hn = D.chunk(3, dim=-1)
    dn = 1 - s_z
    torch.mul(dn, n, out=d_hn)
    torch.addcmul(dn, d_hn, n, value=-1, out=dn)  # (1 - z) tanh'(n)
    torch.mul(dn, s_r, out=d_hn)
    torch.addcmul(s_r, s_r, s_r, value=-1, out=d_r).mul_(r.hn).mul_(dn)
    torch.sub(r.hprev, n, out=d_z).mul_(torch.addcmul(s_z, s_z, s_z, value=-1))
    return D, dn


def backward(r, dy, dh) -> None:
    """Set ``r.d_rec`` (recurrent side), ``r.dn`` (the input side's n part) and ``r.dh0``."""
    if _fused_cpu.usable(r):
        return _fused_cpu.gru_backward(r, dy, dh)
    if _fused_gru_triton.usable(r):
        return _fused_gru_triton.backward(r, dy, dh)
    D, dn = _factors(r)
    T, B, G = D.shape
    H = G // 3
    rec, settle = r.rec, r.settle_h
    settle.prepare(dy)
    dv, d3, dnv = D.unbind(0), D.view(T, B, 3, H).unbind(0), dn.unbind(0)
    z_s = r.acts[..., H : 2 * H].unbind(0)
    for t in range(T - 1, -1, -1):
        gh, gp = settle.split(dh, t)  # ∂L/∂h' and the zoneout/length share to h_{t-1}
        d3[t].mul_(gh.unsqueeze(1))  # δr, δz, δh_n
        dnv[t].mul_(gh)  # δn
        direct = torch.mul(gh, z_s[t]) if gp is None else gp.addcmul_(gh, z_s[t])
        dh = rec.grad(dv[t], t, direct)
    r.d_rec, r.dn, r.dh0 = D, dn, dh


def input_side(r):
    """∂L/∂(input-side pre-activations): the recurrent side with δn in place of δh_n
    (``r.d_rec`` is overwritten: call after the recurrent weights' gradients)."""
    H = r.dn.shape[-1]
    r.d_rec[..., 2 * H :].copy_(r.dn)
    return r.d_rec
