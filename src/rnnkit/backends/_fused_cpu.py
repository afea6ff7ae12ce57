r"""The fused backend's loops with the compiled CPU kernels (``csrc/*.c``).

The same computation as the torch-only loops (``_fused_lstm``, ``_fused_gru``,
``_fused_rnn``), keeping the same tensors for backward, so either loop can run the
backward of either forward. The whole time loop of a layer and direction is one call
into C (``csrc/loop.c``); each step is one matrix product and one pass doing all the
pointwise work:

- forward: ``p = (h_{t-1} m) W_hh^T``, then ``a_t += LN(p)`` (or ``p``), the gates, the
  new state, zoneout and length settling, ``h_t m`` for the next product;
- backward: δh_t from the last product, the gate gradients δG_t, LN backward, then
  ``q = δG_t W_hh``, the next step's δh before its mask.

The LSTM's buffers are in :mod:`rnnkit.backends._fused_lstm_cpu`.
"""

from __future__ import annotations

import ctypes
import logging
from functools import lru_cache
from typing import Optional

import torch
from torch import Tensor

from rnnkit.backends import _cpu_kernels as kernels
from rnnkit.backends._matmul import PACK_MIN_STEPS, packed
from rnnkit.cells._common import LN_EPS

log = logging.getLogger(__name__)
#: The kernels' run_t (csrc/common.h), field by field.
_POINTERS = ("acts", "pre", "ln_hh", "rmean", "rrstd", "h0", "c0", "hbuf", "cbuf", "cnew", "tc",
             "ln_c_w", "ln_c_b", "cmean", "crstd", "wh", "wc", "drop", "hm", "dy", "dgates",
             "dtc", "dpre", "b_hh", "hn", "dn", "gp", "dc", "xpre", "ln_ih", "bias", "xmean",
             "xrstd", "dxpre", "sum_b", "sum_hh", "sum_ih", "sum_cw", "sum_cb")
_INTS = ("T", "B", "H", "wh_cols", "wc_cols", "st_cn", "st_tc", "st_pre", "st_stat", "st_dtc",
         "st_d", "threads", "relu")
_FLOATS = ("wh_s", "wc_s", "eps")
_KERNEL = {"LSTM": "lstm", "GRU": "gru", "RNN_TANH": "rnn", "RNN_RELU": "rnn"}


def usable(r) -> bool:
    """The kernels take every option but the LSTM projection, on CPU in float32/64."""
    w = r.w
    return (w.w_hr is None and kernels.usable(r.x, r.h0, getattr(r, "c0", None), w.w_ih, w.w_hh)
            and _layout_matches(r.x.dtype))


@lru_cache(maxsize=None)
def _layout_matches(dtype: torch.dtype) -> bool:
    """The ctypes mirror has the C structure's size (a guard against a stale build)."""
    cls = kernels.struct_for(_POINTERS, _INTS, _FLOATS, dtype)
    size = kernels.library(dtype).rnnkit_run_size()
    if size != ctypes.sizeof(cls):
        log.warning("the CPU kernels' run structure is %d bytes, its mirror %d: running "
                    "without the kernels", size, ctypes.sizeof(cls))
    return size == ctypes.sizeof(cls)


def _settle(settle) -> tuple:
    """(tensor or None, columns, scalar) of a settle weight, for the kernel."""
    w = None if settle is None else settle.w
    if isinstance(w, Tensor):
        w = w.contiguous()
        return w, w.shape[-1], 0.0
    return None, 0, 0.0 if w is None else float(w)


def run(r, H: int, **tensors):
    """The kernels' view of one run: (forward loop, backward loop, the run structure)."""
    lib = kernels.library(r.acts.dtype)
    cls = kernels.struct_for(_POINTERS, _INTS, _FLOATS, r.acts.dtype)
    T, B, G = r.acts.shape
    tensors.setdefault("st_d", B * G)  # a δG for every step, unless the caller says not
    tensors["wh"], wh_cols, wh_s = _settle(r.settle_h)
    tensors["wc"], wc_cols, wc_s = _settle(getattr(r, "settle_c", None))
    values = {k: kernels.address(tensors.get(k)) for k in _POINTERS}
    ints = {k: tensors.get(k, 0) for k in ("st_cn", "st_tc", "st_pre", "st_stat", "st_dtc", "st_d")}
    s = cls(**values, **ints, T=T, B=B, H=H, wh_cols=wh_cols, wc_cols=wc_cols,
            threads=torch.get_num_threads(), relu=int(r.mode == "RNN_RELU"),
            wh_s=wh_s, wc_s=wc_s, eps=LN_EPS)
    s.keep_alive = tensors  # the structure holds raw pointers only
    name = _KERNEL[r.mode]
    return getattr(lib, f"{name}_forward"), getattr(lib, f"{name}_backward"), s


def running_rows(r) -> list[int]:
    """Rows still inside their sequence at each step, when they are a prefix of the batch
    (``fused.run_direction`` puts the longest sequences first): the products and the
    kernels skip the rest, whose state passes through. All B rows otherwise."""
    T, B = r.acts.shape[:2]
    if r.valid is None:
        return [B] * T
    valid = r.valid[..., 0]  # (T, B)
    n = valid.sum(1)  # (T,)
    prefix = torch.arange(B, device=valid.device) < n.unsqueeze(1)
    return n.tolist() if torch.equal(prefix, valid) else [B] * T


def _rows(rows: list[int]) -> Tensor:
    return torch.tensor(rows, dtype=torch.int64)


def forward_loop(loop, s, w_hh: Tensor, like: Tensor, rows: list[int]) -> None:
    """Every step: the product of the last state (masked) with ``W_hh^T`` over the rows
    still running, then the kernel; ``like`` gives the product scratch's dtype. A short
    call (generation) reads W_hh as it is rather than laying it out."""
    raw = len(rows) < PACK_MIN_STEPS
    w, n = w_hh.detach().contiguous() if raw else packed(w_hh, True), _rows(rows)
    p = like.new_empty(s.B, w_hh.shape[0])
    loop(ctypes.addressof(s), w.data_ptr(), int(raw), n.data_ptr(), p.data_ptr())


def backward_loop(loop, s, w_hh: Tensor, dh: Tensor, dg: Tensor, drop: Optional[Tensor],
                  gp: Optional[Tensor], rows: list[int]) -> Tensor:
    """Every step, last to first: the kernel, then ``q = δG_t W_hh`` over the rows still
    running (zero past them); returns δh_0."""
    w, n = packed(w_hh, False), _rows(rows)
    q = dh.contiguous().clone()  # at the last step, the gradient of the final state
    loop(ctypes.addressof(s), w.data_ptr(), n.data_ptr(), dg.data_ptr(), q.data_ptr())
    if drop is not None:
        q.mul_(drop)
    return q if gp is None else q.add_(gp)


def masked_h0(r):
    """(recurrent dropout mask, h0 m or None, contiguous h0): the first product's operand."""
    drop = None if r.drop is None else r.drop.contiguous()
    h0 = r.h0.contiguous()
    return drop, (None if drop is None else h0 * drop), h0


def _stats(r, B: int):
    """The recurrent layer norm's statistics (T, B, 1), or one scratch (1, B, 1)."""
    if r.w.ln_hh is None:
        return None, None
    shape = (r.acts.shape[0] if r.keep else 1, B, 1)
    return r.acts.new_empty(shape), r.acts.new_empty(shape)


def _ln_strides(r, B: int, G: int) -> dict:
    return {"st_pre": B * G * r.keep, "st_stat": B * r.keep}


def gru_forward(r) -> dict:
    """The GRU forward (as ``_fused_gru.forward``)."""
    acts, w, rec = r.acts, r.w, r.rec
    T, B, G = acts.shape
    H = G // 3
    r.hbuf = acts.new_empty(T, B, H)
    hn = acts.new_empty(T, B, H) if r.keep else acts.new_empty(B, H)
    drop, hm, h0 = masked_h0(r)
    rmean, rrstd = _stats(r, B)
    fwd, _, s = run(r, H, acts=acts, pre=rec.pre if r.keep else None, ln_hh=w.ln_hh,
                    rmean=rmean, rrstd=rrstd, h0=h0, hbuf=r.hbuf, b_hh=w.b_hh, hn=hn,
                    drop=drop, hm=hm, st_tc=B * H * r.keep, **_ln_strides(r, B, G))
    forward_loop(fwd, s, w.w_hh, acts, running_rows(r))
    if w.ln_hh is not None and r.keep:
        rec.mean, rec.rstd = rmean, rrstd
    return {"acts": acts, "hn": hn if r.keep else None}


def gru_backward(r, dy: Tensor, dh: Tensor) -> None:
    """Set ``r.d_rec``, ``r.dn`` and ``r.dh0`` (as ``_fused_gru.backward``)."""
    acts, w, rec = r.acts, r.w, r.rec
    T, B, G = acts.shape
    H = G // 3
    D, dn = torch.empty_like(acts), acts.new_empty(T, B, H)
    drop, gp = masked_h0(r)[0], acts.new_zeros(B, H)
    ln = w.ln_hh is not None
    _, bwd, s = run(r, H, acts=acts, pre=rec.pre, ln_hh=w.ln_hh, rmean=rec.mean, rrstd=rec.rstd,
                    h0=r.h0.contiguous(), hbuf=r.hbuf, hn=r.hn, dy=dy.contiguous(), dgates=D,
                    dn=dn, dpre=rec.keep_dpre() if ln else None, drop=drop, gp=gp,
                    st_tc=B * H, st_pre=B * G, st_stat=B)
    dg = rec.dpre if ln else D
    r.dh0 = backward_loop(bwd, s, w.w_hh, dh, dg, drop, gp, running_rows(r))
    r.d_rec, r.dn = D, dn


def rnn_forward(r) -> dict:
    """The Elman RNN forward (as ``_fused_rnn.forward``): h' in ``acts``, the settled
    state in ``hbuf`` (``acts`` itself without zoneout or lengths)."""
    acts, w, rec = r.acts, r.w, r.rec
    T, B, H = acts.shape
    r.hbuf = acts if r.settle_h.w is None else torch.empty_like(acts)
    drop, hm, h0 = masked_h0(r)
    rmean, rrstd = _stats(r, B)
    fwd, _, s = run(r, H, acts=acts, pre=rec.pre if r.keep else None, ln_hh=w.ln_hh,
                    rmean=rmean, rrstd=rrstd, h0=h0, hbuf=r.hbuf, drop=drop, hm=hm,
                    **_ln_strides(r, B, H))
    forward_loop(fwd, s, w.w_hh, acts, running_rows(r))
    if w.ln_hh is not None and r.keep:
        rec.mean, rec.rstd = rmean, rrstd
    return {"acts": acts}


def rnn_backward(r, dy: Tensor, dh: Tensor) -> None:
    """Set ``r.d_rec`` and ``r.dh0`` (as ``_fused_rnn.backward``)."""
    acts, w, rec = r.acts, r.w, r.rec
    T, B, H = acts.shape
    D = torch.empty_like(acts)
    drop = masked_h0(r)[0]
    gp = acts.new_zeros(B, H) if r.settle_h.w is not None else None
    ln = w.ln_hh is not None
    _, bwd, s = run(r, H, acts=acts, pre=rec.pre, ln_hh=w.ln_hh, rmean=rec.mean, rrstd=rec.rstd,
                    dy=dy.contiguous(), dgates=D, dpre=rec.keep_dpre() if ln else None, drop=drop,
                    gp=gp, st_pre=B * H, st_stat=B)
    r.dh0 = backward_loop(bwd, s, w.w_hh, dh, rec.dpre if ln else D, drop, gp,
                          running_rows(r))
    r.d_rec = D
