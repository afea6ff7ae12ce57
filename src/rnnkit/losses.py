r"""Softmax cross-entropy for wide outputs: a language model's vocabulary.

.. math::
    \ell_n = \log \sum_j e^{x_{nj}} - x_{n t_n}, \qquad
    \frac{\partial \ell_n}{\partial x_{nj}} = \mathrm{softmax}(x_n)_j - [j = t_n]

With a vocabulary of ten thousand words or more, the cross-entropy of a word model
moves more memory than its LSTM: torch's ``log_softmax`` + ``nll_loss`` and their
backward pass over the (N, V) logits six times and fill a zero gradient, and under bf16
autocast the logits are first widened to float32 (one more copy). On the CPU, float32,
float64 and bf16 logits of ``MIN_CLASSES`` classes or more go to a compiled kernel
(``backends/csrc/xent.c``) that reads each row twice while it is in cache and writes the
gradient once, in the logits' own dtype; the loss is summed in float64 and returned in at
least float32, so bf16 logits do not round it. Elsewhere (fewer classes, GPU, no C
compiler, ``RNNKIT_CPU_KERNELS=0``) it is ``torch.nn.functional.cross_entropy`` on the
widened logits: the same values.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from rnnkit.backends import _cpu_kernels as kernels

_REDUCTIONS = ("mean", "sum", "none")


def cross_entropy(logits: Tensor, targets: Tensor, reduction: str = "mean",
                  ignore_index: int = -100) -> Tensor:
    """Cross-entropy in nats of ``logits`` (..., V) against class ids ``targets`` (...),
    as ``F.cross_entropy`` with the classes last; ``mean`` over the targets not equal
    to ``ignore_index``. The result is float32 for float32 and bf16 logits, float64 for
    float64."""
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if logits.dim() < 1 or logits.shape[:-1] != targets.shape:
        raise ValueError(f"logits must be (..., V) and targets (...) with the same leading "
                         f"shape, got logits {tuple(logits.shape)} and targets "
                         f"{tuple(targets.shape)}")
    if targets.dtype != torch.int64:
        raise TypeError(f"targets must be int64 class ids, got {targets.dtype}")
    flat, ids = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
    wide = torch.promote_types(logits.dtype, torch.float32)
    if not _compiled(flat):
        out = F.cross_entropy(flat.to(wide), ids, reduction=reduction, ignore_index=ignore_index)
        return out.view(targets.shape) if reduction == "none" else out
    out = _CrossEntropy.apply(flat, ids, ignore_index).to(wide)  # (N,), summed in float64
    if reduction == "none":
        return out.view(targets.shape)
    if reduction == "sum":
        return out.sum()
    return out.sum() / (ids != ignore_index).sum()  # NaN when every target is ignored, as F


#: Below this many classes torch's own kernels are as fast or faster. Forward + backward
#: against ``F.cross_entropy`` on 2 threads, 700 rows: 2.17x its time at 70 classes
#: (3,200 rows), 1.39 at 500, 1.04 at 1,000, then 0.61 at 2,000, 0.64 at 4,000, 0.48 at
#: 14,115.
MIN_CLASSES = 2048


def _compiled(flat: Tensor) -> bool:
    if flat.device.type != "cpu" or flat.shape[0] == 0 or flat.shape[1] < MIN_CLASSES:
        return False
    if flat.dtype == torch.bfloat16:
        return kernels.library(torch.float32) is not None and kernels.enabled()
    return flat.dtype in (torch.float32, torch.float64) and kernels.usable(flat)


def _library_and_name(dtype: torch.dtype):
    if dtype == torch.bfloat16:
        return kernels.library(torch.float32), "_bf16"
    return kernels.library(dtype), ""


class _CrossEntropy(torch.autograd.Function):
    """Per-row losses (N,) float64 of (N, V) logits; the gradient in the logits' dtype."""

    @staticmethod
    def forward(ctx, logits, targets, ignore_index):
        N, V = logits.shape
        if bool(((targets < 0) | (targets >= V)).logical_and(targets != ignore_index).any()):
            raise IndexError(f"a target is outside [0, {V}): the logits have {V} classes")
        logits, targets = logits.contiguous(), targets.contiguous()
        lib, suffix = _library_and_name(logits.dtype)
        loss, lse = (logits.new_empty(N, dtype=torch.float64) for _ in range(2))
        threads = torch.get_num_threads()
        extra = _scratch(suffix, threads, V)
        getattr(lib, "xent_forward" + suffix)(logits.data_ptr(), targets.data_ptr(), N, V,
                                              ignore_index, loss.data_ptr(), lse.data_ptr(),
                                              *(t.data_ptr() for t in extra), threads)
        ctx.save_for_backward(logits, targets, lse)
        ctx.ignore_index = ignore_index
        return loss

    @staticmethod
    def backward(ctx, d_loss):
        logits, targets, lse = ctx.saved_tensors
        N, V = logits.shape
        lib, suffix = _library_and_name(logits.dtype)
        scale = d_loss.to(torch.float64)
        stride = 1
        if scale.stride(0) == 0:  # the gradient of a sum or mean: one value for all rows
            scale, stride = scale[:1].contiguous(), 0
        scale = scale.contiguous()
        grad = torch.empty_like(logits)
        threads = torch.get_num_threads()
        extra = _scratch(suffix, threads, V)
        getattr(lib, "xent_backward" + suffix)(
            logits.data_ptr(), targets.data_ptr(), lse.data_ptr(), scale.data_ptr(), stride,
            N, V, ctx.ignore_index, grad.data_ptr(), *(t.data_ptr() for t in extra), threads)
        return grad, None, None


def _scratch(suffix: str, threads: int, V: int) -> tuple:
    """The bf16 kernels' float rows, one per thread."""
    return (torch.empty(threads, V),) if suffix else ()
