"""The products over all T·B rows of a step-major buffer: the input projection and the
weight gradients, over every row (:class:`AllRows`) or, where lengths leave enough
padding, over the valid rows only (:class:`ValidRows`)."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from rnnkit.backends._matmul import linear

#: Skip the padding in the products over all steps when it is at least this share of
#: the valid rows: below, gathering the rows costs more than it saves.
PADDING_WORTH_SKIPPING = 0.125
#: A row-wise product over the valid rows writes its output rows into place, a cost
#: that does not shrink with the inner width K as the product does: it pays when
#: K · (padding rows) is at least this many times the valid rows. Measured with
#: oneDNN's float32 products into 1024 columns on 2 threads: even at K = 128 with a
#: third as much padding as valid rows, K = 256 a gain.
ROWWISE_WORTH = 64


class AllRows:
    """The products over all T·B rows of a step-major (T·B, ·) buffer, padding included."""

    def linear(self, a: Tensor, w: Tensor, bias: Optional[Tensor] = None) -> Tensor:
        """``a @ w^T (+ bias)``."""
        return linear(a, w, bias)

    def tmm(self, a: Tensor, b: Tensor) -> Tensor:
        """``a^T b``: a sum over the rows (a weight's gradient)."""
        return a.t() @ b


class ValidRows(AllRows):
    """The same products over the rows still inside their sequence only.

    With the batch sorted longest-first the valid rows of step t are its first n_t,
    n_t non-increasing: the first steps, where every row is valid, make one block of
    ``full`` rows, and the valid rows of the later steps are gathered by ``index``.
    :meth:`linear` is then zero on the padding (``pad``); where it takes all rows
    (:data:`ROWWISE_WORTH`), the padding holds what it always held. Either way the
    kernels never read it, the torch loops discard it, and in a gradient it is zero.
    """

    def __init__(self, full: int, index: Tensor, pad: Tensor) -> None:
        self.full, self.index, self.pad = full, index, pad
        self.valid = full + index.numel()

    @staticmethod
    def of(valid: Optional[Tensor]) -> AllRows:
        """From ``valid`` (T, B, 1) bool or None: :class:`ValidRows` where the valid rows
        are a prefix at every step and the padding is worth skipping, else :class:`AllRows`
        (always on other devices than the CPU, which would wait here for the GPU)."""
        if valid is None or valid.device.type != "cpu":
            return AllRows()
        v = valid[..., 0]  # (T, B)
        T, B = v.shape
        n = v.sum(1)  # (T,)
        padding = T * B - int(n.sum())
        if padding < PADDING_WORTH_SKIPPING * (T * B - padding) or not torch.equal(
                torch.arange(B, device=v.device) < n.unsqueeze(1), v):
            return AllRows()
        full = int((n == B).sum()) * B  # n is non-increasing: the full steps come first
        rest = v.reshape(-1)[full:]  # (T·B - full,)
        return ValidRows(full, rest.nonzero().squeeze(1) + full,
                         (~rest).nonzero().squeeze(1) + full)

    def linear(self, a: Tensor, w: Tensor, bias: Optional[Tensor] = None) -> Tensor:
        if a.shape[1] * self.pad.numel() < ROWWISE_WORTH * self.valid:
            return linear(a, w, bias)
        out = a.new_empty(a.shape[0], w.shape[0])
        out[: self.full] = linear(a[: self.full], w, bias)
        out.index_copy_(0, self.index, linear(a.index_select(0, self.index), w, bias))
        return out.index_fill_(0, self.pad, 0)

    def tmm(self, a: Tensor, b: Tensor) -> Tensor:
        out = a[: self.full].t() @ b[: self.full]
        return out.addmm_(a.index_select(0, self.index).t(), b.index_select(0, self.index))
