"""Pieces of the fused backend shared by every cell: zoneout/length settling and layer norm.

"Settling" is what happens to a freshly computed state before it is stored: zoneout
mixes it with the previous state, and past a sequence's end the previous state is kept.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from rnnkit.cells._common import LN_EPS


def at(keep, t: int):
    """The zoneout keep weight at step ``t``: a mask slice, or the float itself."""
    return keep[t] if isinstance(keep, Tensor) else keep


def settle(new: Tensor, prev: Tensor, keep, valid: Optional[Tensor]) -> Tensor:
    """``keep * prev + (1 - keep) * new``, then ``prev`` wherever the step is not valid."""
    if isinstance(keep, Tensor) or keep != 0.0:
        new = torch.lerp(new, prev, keep)
    if valid is not None:
        new = torch.where(valid, new, prev)
    return new


def unsettle(grad: Tensor, keep, valid: Optional[Tensor]) -> tuple[Tensor, Optional[Tensor]]:
    """Split the gradient of a settled state into (to the new state, to the previous)."""
    to_prev = None
    if valid is not None:
        to_new = grad * valid
        to_prev = grad - to_new
        grad = to_new
    if isinstance(keep, Tensor) or keep != 0.0:
        kept = grad * keep
        grad = grad - kept
        to_prev = kept if to_prev is None else to_prev + kept
    return grad, to_prev


def ln_forward(x: Tensor, gain: Tensor, bias: Optional[Tensor] = None):
    """Layer norm over the last dim: (output, mean, rstd), with torch's fused kernel."""
    return torch.native_layer_norm(x, x.shape[-1:], gain, bias, LN_EPS)


def ln_backward(grad: Tensor, x: Tensor, mean: Tensor, rstd: Tensor, gain: Tensor,
                bias: Optional[Tensor] = None):
    """(grad input, grad gain, grad bias) of :func:`ln_forward`."""
    mask = [True, True, bias is not None]
    return torch.ops.aten.native_layer_norm_backward(grad, x, x.shape[-1:], mean, rstd,
                                                     gain, bias, mask)
