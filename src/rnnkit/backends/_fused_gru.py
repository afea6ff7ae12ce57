"""The GRU and Elman RNN time loops of the fused backend: forward, then BPTT by hand.

GRU: ``xg`` (T, B, 3H) holds the input gate pre-activations with ``b_ih`` and is
turned in place into r, z, n; the recurrent part (with ``b_hh``) is kept apart because
its ``n`` share is multiplied by r. RNN: ``xg`` (T, B, H) holds both biases and is
turned in place into the new hidden state before settling.
"""

from __future__ import annotations

import torch

from rnnkit.backends._fused_common import at, settle, unsettle


def gru_forward(p) -> None:
    T, B, G = p.xg.shape
    H = G // 3
    p.hn = p.xg.new_empty(T, B, H)  # h_n = the n share of LN(W_hh h) + b_hn
    for t in range(T):
        h, a = p.hs[t], p.xg[t]
        hg = p.recurrent_gates(h, t)  # (B, 3H)
        a[:, : 2 * H].add_(hg[:, : 2 * H]).sigmoid_()
        reset_gate, update_gate, new_gate = a.split(H, dim=1)
        p.hn[t] = hg[:, 2 * H :]
        new_gate.addcmul_(reset_gate, p.hn[t]).tanh_()
        h_new = torch.lerp(new_gate, h, update_gate)  # (1 - z) n + z h
        valid = None if p.valid is None else p.valid[t]
        p.hs[t + 1] = settle(h_new, h, at(p.keep_h, t), valid)


def gru_backward(p, dy, dh) -> None:
    """Fill ``p.dgates`` (input side) and ``p.dhh`` (recurrent side), set ``p.dh0``."""
    T, B, G = p.xg.shape
    H = G // 3
    p.dgates = p.xg.new_empty(T, B, G)
    p.dhh = p.xg.new_empty(T, B, G)
    for t in range(T - 1, -1, -1):
        valid = None if p.valid is None else p.vf[t]
        dh_new, dh_prev = unsettle(dh + dy[t], at(p.keep_h, t), valid)
        reset_gate, update_gate, new_gate = p.xg[t].split(H, dim=1)
        dx_r, dx_z, dx_n = p.dgates[t].split(H, dim=1)
        dh_r, dh_z, dh_n = p.dhh[t].split(H, dim=1)
        h = p.hs[t]
        torch.mul(dh_new, h - new_gate, out=dx_z)
        dx_z.mul_(update_gate - update_gate * update_gate)
        torch.mul(dh_new, 1 - update_gate, out=dx_n)
        dx_n.mul_(1 - new_gate * new_gate)
        torch.mul(dx_n, p.hn[t], out=dx_r)
        dx_r.mul_(reset_gate - reset_gate * reset_gate)
        dh_r.copy_(dx_r)
        dh_z.copy_(dx_z)
        torch.mul(dx_n, reset_gate, out=dh_n)
        dh = p.recurrent_backward(p.dhh[t], t) + dh_new * update_gate
        if dh_prev is not None:
            dh = dh + dh_prev
    p.dh0 = dh


def rnn_forward(p) -> None:
    T = p.xg.shape[0]
    w_hh_t = p.w_hh.t()
    for t in range(T):
        h, a = p.hs[t], p.xg[t]
        p.recurrent(a, h, w_hh_t, t)
        a.tanh_() if p.mode == "RNN_TANH" else a.relu_()
        valid = None if p.valid is None else p.valid[t]
        p.hs[t + 1] = settle(a, h, at(p.keep_h, t), valid)


def rnn_backward(p, dy, dh) -> None:
    T = p.xg.shape[0]
    p.dgates = p.xg.new_empty(p.xg.shape)
    for t in range(T - 1, -1, -1):
        valid = None if p.valid is None else p.vf[t]
        dh_new, dh_prev = unsettle(dh + dy[t], at(p.keep_h, t), valid)
        act, da = p.xg[t], p.dgates[t]
        if p.mode == "RNN_TANH":
            torch.mul(dh_new, 1 - act * act, out=da)
        else:
            torch.mul(dh_new, act > 0, out=da)
        dh = p.recurrent_backward(da, t)
        if dh_prev is not None:
            dh = dh + dh_prev
    p.dh0 = dh
