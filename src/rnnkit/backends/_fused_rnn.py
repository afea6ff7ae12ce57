r"""The Elman RNN time loops of the fused backend: forward, then BPTT by hand.

``r.acts`` (T, B, H) holds the input share with both biases and is turned in place into
φ(pre-activation); without zoneout or lengths it is the state buffer itself. Backward:
δpre = δh' φ'(pre), with φ' = 1 - h'² (tanh) or [h' > 0] (ReLU) computed for all
steps before the loop.
"""

from __future__ import annotations

import torch

from rnnkit.backends import _fused_cpu, _fused_rnn_triton


def forward(r) -> dict:
    """Run the RNN forward; return the tensors backward needs."""
    if _fused_cpu.usable(r):
        return _fused_cpu.rnn_forward(r)
    if _fused_rnn_triton.usable(r):
        return _fused_rnn_triton.forward(r)
    acts, rec, settle = r.acts, r.rec, r.settle_h
    T = acts.shape[0]
    r.hbuf = acts if settle.w is None else torch.empty_like(acts)
    hv, av = (r.h0, *r.hbuf.unbind(0)), acts.unbind(0)
    relu = r.mode == "RNN_RELU"
    for t in range(T):
        a = av[t]
        rec.add_(a, hv[t], t)
        a.relu_() if relu else a.tanh_()
        if settle.w is not None:
            settle.step_into(hv[t + 1], a, hv[t], t)
    return {"acts": acts}


def backward(r, dy, dh) -> None:
    """Set ``r.d_rec`` (T, B, H) and ``r.dh0``."""
    if _fused_cpu.usable(r):
        return _fused_cpu.rnn_backward(r, dy, dh)
    if _fused_rnn_triton.usable(r):
        return _fused_rnn_triton.backward(r, dy, dh)
    a = r.acts
    D = (a > 0).to(a.dtype) if r.mode == "RNN_RELU" else torch.addcmul(torch.ones_like(a), a, a,
                                                                         value=-1)
    rec, settle = r.rec, r.settle_h
    settle.prepare(dy)
    dv = D.unbind(0)
    for t in range(a.shape[0] - 1, -1, -1):
        gh, gp = settle.split(dh, t)
        dh = rec.grad(dv[t].mul_(gh), t, gp)
    r.d_rec, r.dh0 = D, dh


def input_side(r):
    return r.d_rec
