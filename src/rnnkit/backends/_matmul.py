"""The fused backend's matrix products, through oneDNN where torch has it.

On the CPU, torch sends a float32 ``mm`` to its BLAS (MKL in the x86 wheels), while its
oneDNN linear, the kernel torch.compile uses for CPU linear layers, measured
1.3-1.7x faster on every product shape of a recurrent layer on an AMD EPYC (the
per-step product most of all once its weight is packed in oneDNN's blocked layout).
So float32 CPU products go to oneDNN, checked once against ``torch.mm`` on first use;
everything else (float64, other devices, a torch without oneDNN) to ``torch.mm``.
``RNNKIT_ONEDNN=0`` turns it off. Where the compiled CPU kernels build, the fused
loops do their per-step product themselves (``csrc/product.c``, its weight laid out by
:func:`packed`): a third faster again than oneDNN's at those small shapes.

Both compute ``x @ w^T`` (a linear layer's product) on 2-D tensors. The weight
gradients, sums over all steps of outer products, stay with ``torch.mm``: oneDNN's
linear would need both operands transposed into copies, which cost more than it saves.
"""

from __future__ import annotations

import os
from functools import cached_property, lru_cache
from typing import Optional

import torch
from torch import Tensor
from torch.nn import functional as F

from rnnkit.backends import _cpu_kernels as kernels


@lru_cache(maxsize=None)
def _onednn_works() -> bool:
    ops = torch.ops.mkldnn
    if not torch.backends.mkldnn.is_available():
        return False
    # the first call may come under autocast (training with amp=bf16), where torch.mm
    # would answer in bf16: the probe compares float32 with float32
    with torch.autocast("cpu", enabled=False), torch.no_grad():
        try:
            # fixed values, not torch.randn: a probe must not move the global generator,
            # or the first run in a process would draw other masks than the next ones
            x = torch.linspace(-1, 1, 35).view(5, 7).sin()
            w = torch.linspace(-2, 2, 21).view(3, 7).cos()
            packed = ops._reorder_linear_weight(w, 5)
            got = (ops._linear_pointwise(x, w, None, "none", [], ""),
                   ops._linear_pointwise(x, packed, None, "none", [], ""))
        except (RuntimeError, AttributeError, NotImplementedError):
            return False
        want = torch.mm(x, w.t())
    return all(torch.allclose(g, want, rtol=1e-4, atol=1e-5) for g in got)


def onednn(t: Tensor) -> bool:
    """True when products on ``t``'s device and dtype go to oneDNN."""
    return (t.dtype == torch.float32 and t.device.type == "cpu"
            and os.environ.get("RNNKIT_ONEDNN", "1") != "0" and _onednn_works())


#: oneDNN lays out a dense weight anew at each call: worth it only for this many rows.
MIN_ROWS = 128


def packed(w: Tensor, transpose: bool) -> Tensor:
    """``w`` laid out for the kernels' per-step products (``rnnkit_pack``): the right
    operand of ``x @ w^T`` (``transpose``, w (N, K)) or of ``x @ w`` (w (K, N))."""
    w = w.detach().contiguous()
    lib = kernels.library(w.dtype)
    K, N = (w.shape[1], w.shape[0]) if transpose else w.shape
    width = lib.rnnkit_panel_width()
    out = w.new_empty(-(-N // width) * K * width)
    lib.rnnkit_pack(w.data_ptr(), K, N, int(transpose), out.data_ptr(), torch.get_num_threads())
    return out


def linear(x: Tensor, w: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    """``x @ w^T (+ bias)``, a fresh tensor."""
    if x.shape[0] >= MIN_ROWS and onednn(x):
        return torch.ops.mkldnn._linear_pointwise(x.contiguous(), w.contiguous(), bias,
                                                  "none", [], "")
    return torch.mm(x, w.t()) if bias is None else torch.addmm(bias, x, w.t())


#: Packing a weight costs about as much as a dozen products with it: below this many
#: steps (generation steps one token per call) the products go to torch.mm.
PACK_MIN_STEPS = 16


class Fixed:
    """``x @ w^T`` for one weight over ``steps`` products in a row (one per time step):
    with oneDNN the weight is packed once, for ``rows``-row left operands."""

    def __init__(self, w: Tensor, rows: int, steps: int = PACK_MIN_STEPS) -> None:
        self._w, self._rows, self._steps = w, rows, steps

    @cached_property
    def _layout(self) -> tuple[Optional[Tensor], Optional[Tensor]]:
        """(oneDNN's packed weight, or w^T), laid out on the first product: a loop that
        never calls it, as the compiled CPU loops, costs nothing."""
        w = self._w
        if self._steps < PACK_MIN_STEPS:  # a few products: laying the weight out costs more
            return None, w.t()
        if onednn(w):
            return torch.ops.mkldnn._reorder_linear_weight(w.contiguous(), self._rows), None
        return None, w.t().contiguous()  # a contiguous right operand is faster

    @property
    def packed(self) -> Optional[Tensor]:
        return self._layout[0]

    def __call__(self, x: Tensor) -> Tensor:
        packed, w_t = self._layout
        if packed is not None:
            return torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [], "")
        return torch.mm(x, w_t)

    def into(self, x: Tensor, out: Tensor) -> Tensor:
        """``out = x @ w^T``."""
        if self.packed is not None:
            return out.copy_(self(x))
        return torch.mm(x, self._layout[1], out=out)

    def add_to(self, a: Tensor, x: Tensor) -> Tensor:
        """``a += x @ w^T``."""
        if self.packed is not None:
            return a.add_(self(x))
        return a.addmm_(x, self._layout[1])


def linear_layer(x: Tensor, w: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    """``F.linear(x, w, bias)``, differentiable, with the forward product through oneDNN
    for float32 CPU inputs of ``MIN_ROWS`` rows or more outside autocast: a language
    model's output layer (700 × 200 → 14,115 took 35 ms there against 52 ms in
    ``F.linear``). The backward products are ``torch.mm``'s, as ``F.linear``'s are."""
    rows = x.numel() // max(x.shape[-1], 1)
    if (rows < MIN_ROWS or not onednn(x) or w.dtype != x.dtype
            or torch.is_autocast_enabled("cpu")):
        return F.linear(x, w, bias)
    return _Linear.apply(x, w, bias)


def _onednn_linear(*args):
    return torch.ops.mkldnn._linear_pointwise(*args)


class _Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, bias):
        ctx.save_for_backward(x, w)
        ctx.has_bias = bias is not None
        x2 = x.reshape(-1, x.shape[-1])
        out = _onednn_linear(x2.contiguous(), w.contiguous(), bias, "none", [], "")
        return out.view(*x.shape[:-1], w.shape[0])

    @staticmethod
    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        g2, x2 = grad.reshape(-1, grad.shape[-1]), x.reshape(-1, x.shape[-1])
        dx = torch.mm(g2, w).view(x.shape) if ctx.needs_input_grad[0] else None
        dw = torch.mm(g2.t(), x2) if ctx.needs_input_grad[1] else None
        db = g2.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return dx, dw, db
