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


def settle_(new: Tensor, prev: Tensor, keep, valid: Optional[Tensor]) -> None:
    """:func:`settle` in place, into ``new`` (a state buffer)."""
    if isinstance(keep, Tensor) or keep != 0.0:
        new.lerp_(prev, keep)
    if valid is not None:
        torch.where(valid, new, prev, out=new)


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
                bias: Optional[Tensor] = None, *, params: bool = True):
    """(grad input, grad gain, grad bias) of :func:`ln_forward`; only grad input when
    ``params`` is False (inside time loops, where :func:`ln_gain_grad` does the rest)."""
    mask = [True, params, params and bias is not None]
    grads = torch.ops.aten.native_layer_norm_backward(grad, x, x.shape[-1:], mean, rstd,
                                                      gain, bias, mask)
    return grads if params else grads[0]


def ln_gain_grad(grad_out: Tensor, x: Tensor, mean: Tensor, rstd: Tensor) -> Tensor:
    """∂L/∂gain summed over every step and row: Σ grad_out · (x - mean) · rstd."""
    return (grad_out * (x - mean) * rstd).sum(tuple(range(x.dim() - 1)))
