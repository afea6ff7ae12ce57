"""The fused backend: backpropagation through time written out by hand.

One ``torch.autograd.Function`` per layer and direction. Forward computes the input
projection of all T steps as one matrix product, then loops only the recurrent product
and the gate arithmetic, keeping what backward needs (gate activations, states,
layer-norm statistics). Backward walks time in reverse, computing the gate, hidden and
cell gradients step by step into one (T, B, G*H) buffer, then the weight gradients as
single matrix products over all steps. It works in eval mode and under any dtype or
device torch supports; ``docs/engine.md`` derives the equations.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Optional

import torch
from torch import Tensor

from rnnkit.backends import _fused_gru, _fused_lstm
from rnnkit.backends._fused_common import ln_backward, ln_forward, ln_gain_grad
from rnnkit.backends.spec import Masks, State
from rnnkit.cells import Weights

_LOOPS = {
    "LSTM": (_fused_lstm.forward, _fused_lstm.backward),
    "GRU": (_fused_gru.gru_forward, _fused_gru.gru_backward),
    "RNN_TANH": (_fused_gru.rnn_forward, _fused_gru.rnn_backward),
    "RNN_RELU": (_fused_gru.rnn_forward, _fused_gru.rnn_backward),
}


class _Run(SimpleNamespace):
    """Inputs and buffers of one call, with the recurrent product and its gradient."""

    def _masked(self, h: Tensor) -> Tensor:
        return h if self.drop is None else h * self.drop

    def recurrent(self, a: Tensor, h: Tensor, w_hh_t: Tensor, t: int) -> None:
        """``a += LN(W_hh (h * m))`` in place (LSTM and RNN; biases are already in ``a``)."""
        if self.ln_hh is None:
            a.addmm_(self._masked(h), w_hh_t)
            return
        torch.mm(self._masked(h), w_hh_t, out=self.hpre[t])
        out, self.h_mean[t], self.h_rstd[t] = ln_forward(self.hpre[t], self.ln_hh)
        a.add_(out)

    def recurrent_gates(self, h: Tensor, t: int) -> Tensor:
        """``LN(W_hh (h * m)) + b_hh`` as a new (B, G*H) tensor (GRU)."""
        if self.ln_hh is None:
            g = self._masked(h) @ self.w_hh.t()
        else:
            torch.mm(self._masked(h), self.w_hh.t(), out=self.hpre[t])
            g, self.h_mean[t], self.h_rstd[t] = ln_forward(self.hpre[t], self.ln_hh)
        return g if self.b_hh is None else g.add_(self.b_hh)

    def recurrent_backward(self, dg: Tensor, t: int) -> Tensor:
        """∂L/∂h_{t-1} through the recurrent product, given ∂L/∂(its LN output)."""
        if self.ln_hh is not None:
            dg = ln_backward(dg, self.hpre[t], self.h_mean[t], self.h_rstd[t], self.ln_hh,
                             params=False)
            self.dhpre[t] = dg
        dh = dg @ self.w_hh
        return dh if self.drop is None else dh.mul_(self.drop)


class _FusedDirection(torch.autograd.Function):
    @staticmethod
    def forward(ctx, mode, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, ln_ih, ln_hh,
                ln_c_weight, ln_c_bias, drop, keep_h, keep_c, valid):
        p = _Run(mode=mode, x=x, w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh, w_hr=w_hr,
                 ln_ih=ln_ih, ln_hh=ln_hh, ln_c_weight=ln_c_weight, ln_c_bias=ln_c_bias,
                 drop=drop, keep_h=keep_h, keep_c=keep_c, valid=valid, c0=c0)
        T, B, I = x.shape
        G = w_ih.shape[0]
        xg = torch.mm(x.reshape(T * B, I), w_ih.t()).view(T, B, G)  # all steps at once
        if ln_ih is not None:
            p.xpre = xg
            xg, p.x_mean, p.x_rstd = ln_forward(xg, ln_ih)
        if b_ih is not None:
            xg += b_ih
        if b_hh is not None and mode != "GRU":
            xg += b_hh
        p.xg = xg
        p.hs = xg.new_empty(T + 1, B, h0.shape[-1])
        p.hs[0] = h0
        if ln_hh is not None:
            p.hpre = xg.new_empty(T, B, G)
            p.h_mean, p.h_rstd = xg.new_empty(T, B, 1), xg.new_empty(T, B, 1)
        if valid is not None:
            p.vf = valid.to(x.dtype)
        _LOOPS[mode][0](p)
        ctx.p = p
        y = p.hs[1:] * p.vf if valid is not None else p.hs[1:].clone()
        if mode == "LSTM":
            return y, p.hs[T].clone(), p.cs[T].clone()
        return y, p.hs[T].clone()

    @staticmethod
    def backward(ctx, dy, dh, dc=None):
        p = ctx.p
        T, B, I = p.x.shape
        G = p.w_ih.shape[0]
        dy = torch.zeros_like(p.hs[1:]) if dy is None else dy
        if p.valid is not None:
            dy = dy * p.vf  # outputs past the end were zeroed
        dh = torch.zeros_like(p.hs[0]) if dh is None else dh
        if p.ln_hh is not None:
            p.dhpre = p.xg.new_empty(T, B, G)
        if p.mode == "LSTM":
            dc = torch.zeros_like(p.cs[0]) if dc is None else dc
            _fused_lstm.backward(p, dy, dh, dc)
        else:
            _LOOPS[p.mode][1](p, dy, dh)
        if p.ln_hh is not None:  # the recurrent layer norm's gain, for all steps at once
            dhh = getattr(p, "dhh", p.dgates)
            p.d_ln_hh = ln_gain_grad(dhh, p.hpre, p.h_mean, p.h_rstd)
        return (None,) + _weight_grads(ctx, p, T, B, I, G) + (None,) * 4


def _weight_grads(ctx, p, T: int, B: int, I: int, G: int) -> tuple:
    """Gradients of x, h0, c0 and every weight, as matrix products over all steps."""
    need = ctx.needs_input_grad  # (mode, x, h0, c0, w_ih, w_hh, ...)
    dgates = p.dgates  # (T, B, G): ∂L/∂(input-side gate pre-activations)
    dhh = getattr(p, "dhh", dgates)  # ∂L/∂(recurrent-side pre-activations, after LN)
    d_ln_ih = None
    if p.ln_ih is not None:
        dgates, d_ln_ih, _ = ln_backward(dgates, p.xpre, p.x_mean, p.x_rstd, p.ln_ih)
    dgates2 = dgates.reshape(T * B, G)
    dx = (dgates2 @ p.w_ih).view(T, B, I) if need[1] else None
    dw_ih = dgates2.t() @ p.x.reshape(T * B, I)
    h_prev = p._masked(p.hs[:-1])  # (T, B, P): what W_hh multiplied
    dpre = p.dhpre if p.ln_hh is not None else dhh
    dw_hh = dpre.reshape(T * B, G).t() @ h_prev.reshape(T * B, -1)
    db_ih = p.dgates.sum((0, 1)) if p.b_ih is not None else None
    db_hh = dhh.sum((0, 1)) if p.b_hh is not None else None
    dw_hr = None
    if p.w_hr is not None:
        dw_hr = p.dh_proj.reshape(T * B, -1).t() @ p.otc.reshape(T * B, -1)
    return (dx, p.dh0, getattr(p, "dc0", None), dw_ih, dw_hh, db_ih, db_hh, dw_hr, d_ln_ih,
            getattr(p, "d_ln_hh", None), getattr(p, "d_ln_c_weight", None),
            getattr(p, "d_ln_c_bias", None))


def run_direction(
    x: Tensor,
    state: State,
    w: Weights,
    mode: str,
    masks: Masks,
    valid: Optional[Tensor],
    state_hook=None,
) -> tuple[Tensor, State]:
    """Same contract as :func:`rnnkit.backends.reference.run_direction`."""
    if state_hook is not None:
        raise ValueError("the fused backend cannot call a state hook; use backend='reference'")
    c0 = state[1] if mode == "LSTM" else None
    out = _FusedDirection.apply(mode, x, state[0], c0, *w, masks.drop, masks.keep_h,
                                masks.keep_c, valid)
    return out[0], tuple(out[1:])
