r"""The fused backend: backpropagation through time written out by hand.

One ``torch.autograd.Function`` per layer and direction, computing exactly what
:func:`rnnkit.backends.reference.run_direction` computes.

Forward:

1) the input share of the gates for all T steps as one matrix product,
   :math:`\mathrm{LN}(X W_{ih}^T) + b` (T·B, G), normalised once for all steps (or,
   by the LSTM's CPU and Triton kernels, step by step inside the loop);
2) a time loop doing only what must be sequential: the recurrent product
   :math:`(h \odot m) W_{hh}^T` and the gate arithmetic, in place in preallocated
   buffers, keeping the activations, states and layer-norm statistics backward needs.

Backward walks time in reverse with the carried gradients δh (and δc), writing
∂L/∂(gate pre-activations) δG into a (T, B, G) buffer, then computes the rest as
single products and sums over all steps:

.. math::
    \delta W_{ih} = \delta G^T X, \quad \delta X = \delta G\, W_{ih}, \quad
    \delta W_{hh} = \delta G_{hh}^T (H_{prev} \odot m), \quad \delta b = \textstyle\sum \delta G

(through the layer norms' backward where they are on). The tensors kept for backward
go through ``ctx.save_for_backward``, so autograd frees them as soon as this direction's
backward has run; nothing saved is modified, so ``retain_graph=True`` works. Pure torch
operations: any device, float32 or float64, eval mode and ``torch.no_grad`` included.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Optional

import torch
from torch import Tensor

from rnnkit.backends import (
    _fused_gru,
    _fused_lstm,
    _fused_lstm_cpu,
    _fused_lstm_triton,
    _fused_rnn,
    _triton_common,
)
from rnnkit.backends._fused_common import (
    PIECES,
    Recurrent,
    Settle,
    input_bias,
    ln,
    ln_backward,
    multiplied_states,
    step_sum,
)
from rnnkit.backends._rows import AllRows, ValidRows
from rnnkit.backends.spec import Masks, State
from rnnkit.cells import Weights

_CELLS = {"LSTM": _fused_lstm, "GRU": _fused_gru, "RNN_TANH": _fused_rnn, "RNN_RELU": _fused_rnn}
#: The arguments of ``_FusedDirection.forward`` after ``ctx``, in order.
_ARGS = ("mode", "keep", "x", "h0", "c0", *Weights._fields, "drop", "keep_h", "keep_c", "valid")
_SETTLES = ("settle_h", "settle_c")


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
    if mode not in _CELLS:
        raise ValueError(f"mode must be one of {tuple(_CELLS)}, got {mode!r}")
    c0 = state[1] if mode == "LSTM" else None
    keep = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (x, *state, *w))
    y, *finals = _FusedDirection.apply(mode, keep, x, state[0], c0, *w, masks.drop,
                                       masks.keep_h, masks.keep_c, valid)
    return y, tuple(finals)


def _sorts_on(x: Tensor) -> bool:
    """Where each direction would sort its batch longest-first (see :func:`_longest_first`):
    :func:`rnnkit.layers.run.run_stack` then sorts it once for the whole stack."""
    return x.device.type == "cpu"


run_direction.longest_first = _sorts_on


def _rows(t, order: Tensor, dim: int = 0):
    """``t`` with its batch rows (along ``dim``) in ``order``; None and floats as they are."""
    return t.index_select(dim, order) if isinstance(t, Tensor) else t


def _longest_first(valid: Optional[Tensor]) -> Optional[Tensor]:
    """The batch order putting longer sequences first (stable), where the CPU kernels
    skip the rows past their end; None when not needed or already so."""
    if valid is None or valid.device.type != "cpu":
        return None
    lengths = valid[..., 0].sum(0)  # (B,)
    if bool((lengths[:-1] >= lengths[1:]).all()):
        return None
    return torch.argsort(lengths, descending=True, stable=True)


class _FusedDirection(torch.autograd.Function):
    @staticmethod
    def forward(ctx, mode, keep, x, h0, c0, *rest):
        *weights, drop, keep_h, keep_c, valid = rest
        ctx.order = order = _longest_first(valid)
        if order is not None:  # the rows still running at each step are then a prefix
            x, keep_h, keep_c, valid = (_rows(t, order, 1) for t in (x, keep_h, keep_c, valid))
            h0, c0, drop = _rows(h0, order), _rows(c0, order), _rows(drop, order)
        w = Weights(*weights)
        r = SimpleNamespace(mode=mode, keep=keep, x=x, h0=h0, c0=c0, w=w, drop=drop,
                            valid=valid, rec=Recurrent(w.w_hh, w.ln_hh, drop))
        r.settle_h = Settle.of(keep_h, valid, x)
        r.settle_c = Settle.of(keep_c, valid, x) if mode == "LSTM" else None
        ctx.rows = r.rows = ValidRows.of(valid)  # the products over all steps skip padding
        _input_projection(r)
        # the LSTM kernels that normalise the input share recompute the recurrent one too
        keep_pre = keep and not (mode == "LSTM" and _fused_lstm_triton.normalises_input(r))
        r.rec.start_forward(r.acts, keep, w.b_hh if mode == "GRU" else None, keep_pre)
        saved = _CELLS[mode].forward(r)
        r.rec.finish_forward()
        y = r.hbuf if valid is None else r.hbuf * valid  # outputs past the end are zero
        finals = [r.hbuf[-1].clone()] + ([r.cbuf[-1].clone()] if mode == "LSTM" else [])
        if keep:
            _save(ctx, r, saved)
        if order is not None:  # back to the caller's order
            back = torch.argsort(order)
            y, finals = _rows(y, back, 1), [_rows(f, back) for f in finals]
        return (y, *finals)

    @staticmethod
    def backward(ctx, dy, dh, dc=None):
        order = ctx.order
        if order is not None:
            dy, dh, dc = _rows(dy, order, 1), _rows(dh, order), _rows(dc, order)
        r = _load(ctx)
        r.rows = ctx.rows
        need = dict(zip(_ARGS, ctx.needs_input_grad))
        r.rec.start_backward(r.x.shape[0])
        if r.mode == "GRU":  # its update-gate factor needs the previous states
            r.hprev = _previous_states(r)
        if r.valid is not None:
            dy = dy * r.valid
        if r.mode == "LSTM":
            _fused_lstm.backward(r, dy, dh, dc)
        else:
            _CELLS[r.mode].backward(r, dy, dh)
        dw_hh, db_hh, d_ln_hh = _recurrent_grads(r, need)
        dx, dw_ih, db_ih, d_ln_ih = _input_grads(r, need, db_hh)
        dh0, dc0 = r.dh0, getattr(r, "dc0", None)
        if order is not None:
            back = torch.argsort(order)
            dx, dh0, dc0 = _rows(dx, back, 1), _rows(dh0, back), _rows(dc0, back)
        return (None, None, dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh,
                getattr(r, "d_w_hr", None), d_ln_ih, d_ln_hh, getattr(r, "d_ln_c_weight", None),
                getattr(r, "d_ln_c_bias", None), None, None, None, None)


def _input_projection(r) -> None:
    """``r.acts`` (T, B, G): LN(x W_ih^T) + b for all steps, b = b_ih (+ b_hh but for GRU)."""
    x, w = r.x, r.w
    T, B, I = x.shape
    x2 = x.reshape(T * B, I)
    bias = input_bias(w, r.mode)
    r.xpre = r.x_mean = r.x_rstd = None
    if w.ln_ih is None:
        acts = r.rows.linear(x2, w.w_ih, bias)
    else:
        r.xpre = r.rows.linear(x2, w.w_ih)  # (T·B, G)
        if r.mode == "LSTM" and _fused_lstm_triton.normalises_input(r):
            acts = r.xpre  # the kernels normalise each step's share and keep the statistics
        elif r.mode == "LSTM" and _fused_lstm_cpu.normalises_input(r):
            acts = torch.empty_like(r.xpre)  # … into this buffer, reading r.xpre
        else:
            acts, r.x_mean, r.x_rstd = ln(r.xpre, w.ln_ih, bias)
    r.acts = acts.view(T, B, -1)


def _save(ctx, r, saved: dict) -> None:
    """Keep for backward, through ``save_for_backward``, what the cell's loops need."""
    tensors = dict(saved, x=r.x, h0=r.h0, drop=r.drop, valid=r.valid, hbuf=r.hbuf,
                   xpre=r.xpre, x_mean=r.x_mean, x_rstd=r.x_rstd, pre=r.rec.pre,
                   mean=r.rec.mean, rstd=r.rec.rstd, **r.w._asdict())
    ctx.floats = {}
    compact = _triton_common.usable(r.x)  # the kernels read {0, 1} masks as bytes
    for name in _SETTLES:
        settle = getattr(r, name)
        if settle is not None and isinstance(settle.w, Tensor):
            tensors[name] = settle.kept(compact)
        else:
            ctx.floats[name] = None if settle is None else settle.w
    ctx.mode, ctx.names = r.mode, tuple(tensors)
    ctx.save_for_backward(*tensors.values())


def _load(ctx) -> SimpleNamespace:
    r = SimpleNamespace(mode=ctx.mode, **dict(zip(ctx.names, ctx.saved_tensors)))
    r.w = Weights(*(getattr(r, f) for f in Weights._fields))
    for name in _SETTLES:
        w = ctx.floats[name] if name in ctx.floats else getattr(r, name)
        setattr(r, name, None if name == "settle_c" and r.mode != "LSTM"
                else Settle(w, dtype=r.x.dtype))
    r.rec = Recurrent(r.w.w_hh, r.w.ln_hh, r.drop, r.pre, r.mean, r.rstd)
    return r


def _previous_states(r) -> Tensor:
    """(T, B, P): the state each step started from, h_0 … h_{T-1} (a fresh tensor)."""
    return torch.cat((r.h0.unsqueeze(0), r.hbuf[:-1]))


def _recurrent_grads(r, need: dict):
    """(δW_hh, δb_hh, δ LN_hh gain): from ∂L/∂(recurrent share) ``r.d_rec``, before
    the input side (which may overwrite it) is formed; the bias's and the gain's as the
    loop summed them where it did (``r.d_bias``, ``r.d_ln_hh``)."""
    w, rec, d = r.w, r.rec, r.d_rec
    dw_hh = db_hh = None
    d_ln_hh = getattr(r, "d_ln_hh", None)
    if w.b_hh is not None and need["b_hh"]:
        db_hh = _bias_grad(r, d)
    if getattr(r, "d_w_hh", None) is not None:  # the loop summed it as it went
        return r.d_w_hh, db_hh, d_ln_hh
    if w.ln_hh is not None and rec.dpre is None:  # the loop kept one step's ∂L/∂pre only
        dw_hh, d_ln_hh = _normed_recurrent_grads(r, need["w_hh"], need["ln_hh"])
        r.hprev = None
        return dw_hh, db_hh, d_ln_hh
    if w.ln_hh is not None and need["ln_hh"] and d_ln_hh is None:
        d_ln_hh = ln_backward(d, rec.pre, rec.mean, rec.rstd, w.ln_hh, None,
                              (False, True, False))[1]
    if need["w_hh"]:
        dpre = d if w.ln_hh is None else rec.dpre
        dpre = dpre.reshape(-1, dpre.shape[-1])
        if r.drop is None and r.mode != "GRU" and type(r.rows) is AllRows:
            # h_0 … h_{T-1} without stacking them: the product over steps 1… on the states
            # as kept, plus step 0's on h_0 (a (T, B, P) copy less at the backward's peak)
            B, P = r.h0.shape
            dw_hh = torch.addmm(dpre[:B].t() @ r.h0, dpre[B:].t(), r.hbuf[:-1].reshape(-1, P))
        else:
            hm = r.hprev if r.mode == "GRU" else _previous_states(r)
            if r.drop is not None:
                hm.mul_(r.drop)  # what W_hh multiplied
            dw_hh = r.rows.tmm(dpre, hm.reshape(-1, hm.shape[-1]))
    r.hprev = rec.dpre = rec.dpres = None  # the per-step views too, or dpre stays alive
    return dw_hh, db_hh, d_ln_hh


def _bias_grad(r, d: Optional[Tensor]) -> Tensor:
    """The gradient of the bias on the gates, Σ δG over steps and rows: as the loop
    summed it (``r.d_bias``), or from ``d`` (T, B, G)."""
    summed = getattr(r, "d_bias", None)
    return summed if summed is not None else step_sum(d)


def _normed_recurrent_grads(r, need_w: bool, need_gain: bool):
    """(δW_hh, δ LN_hh gain) when backward kept no ∂L/∂pre (``Recurrent.scratch_dpres``):
    it is recomputed from ∂L/∂(the norm's output) ``r.d_rec`` through the norm's backward,
    a few steps at a time, and each piece's product with the states that W_hh multiplied
    summed, so at most 1/:data:`PIECES` of a (T, B, G) buffer exists at once."""
    w, rec, d = r.w, r.rec, r.d_rec
    T, B, G = d.shape
    P = r.h0.shape[-1]
    mask = (need_w, need_gain, False)
    dw_hh = d_gain = None
    if not (need_w or need_gain):
        return dw_hh, d_gain
    size = -(-T // PIECES)
    for t0 in range(0, T, size):
        t1 = min(T, t0 + size)
        dpre, gain, _ = ln_backward(d[t0:t1], rec.pre[t0:t1], rec.mean[t0:t1],
                                    rec.rstd[t0:t1], w.ln_hh, None, mask)
        if need_gain:
            d_gain = gain if d_gain is None else d_gain.add_(gain)
        if not need_w:
            continue
        hm = multiplied_states(r, t0, t1).reshape(-1, P)
        dpre = dpre.reshape(-1, G)
        dw_hh = dpre.t() @ hm if dw_hh is None else dw_hh.addmm_(dpre.t(), hm)
        del dpre, hm  # before the next piece's are formed
    return dw_hh, d_gain


def _ln_backward_over(d: Tensor, x: Tensor, mean: Tensor, rstd: Tensor, gain: Tensor,
                      mask: tuple) -> Optional[Tensor]:
    """A gain-only layer norm's backward with ∂x written over ``d`` (which must be this
    backward's own buffer), :data:`PIECES` pieces of rows at a time; returns ∂gain."""
    n, d_gain = d.shape[0], None
    size = -(-n // PIECES)
    for a in range(0, n, size):
        b = min(n, a + size)
        dx, gain_part, _ = ln_backward(d[a:b], x[a:b], mean[a:b], rstd[a:b], gain, None, mask)
        if mask[1]:
            d_gain = gain_part if d_gain is None else d_gain.add_(gain_part)
        if mask[0]:
            d[a:b].copy_(dx)
        del dx  # before the next piece's is formed
    return d_gain


def _input_grads(r, need: dict, db_hh: Optional[Tensor]):
    """(δx, δW_ih, δb_ih, δ LN_ih gain) as one product (or sum) each over all steps."""
    w, x = r.w, r.x
    T, B, I = x.shape
    normed = getattr(r, "d_input", None)  # through the input norm already (the CPU kernels)
    d = _CELLS[r.mode].input_side(r) if normed is None else normed
    r.d_rec = r.dn = r.d_input = None  # ``d`` is the only hold left: freed once used up
    d_ln_ih = getattr(r, "d_ln_ih", None)
    db_ih = None
    if w.b_ih is not None and need["b_ih"]:
        same = r.mode != "GRU" and db_hh is not None  # LSTM and RNN: one bias gradient
        db_ih = db_hh if same else _bias_grad(r, d)
    d = d.view(T * B, -1)
    if w.ln_ih is not None and normed is None:
        mask = (need["x"] or need["w_ih"], need["ln_ih"], False)
        if _triton_common.usable(d):  # on a GPU memory is scarcer: no second (T, B, G)
            d_ln_ih = _ln_backward_over(d, r.xpre, r.x_mean, r.x_rstd, w.ln_ih, mask)
        else:
            d, d_ln_ih, _ = ln_backward(d, r.xpre, r.x_mean, r.x_rstd, w.ln_ih, None, mask)
    dx = r.rows.linear(d, w.w_ih.t()).view(T, B, I) if need["x"] else None
    dw_ih = r.rows.tmm(d, x.reshape(T * B, I)) if need["w_ih"] else None
    return dx, dw_ih, db_ih, d_ln_ih
