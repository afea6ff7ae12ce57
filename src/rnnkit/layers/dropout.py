"""Random {0, 1} masks and dropout, drawn cheaply on the CPU.

On the CPU ``torch.bernoulli`` and ``F.dropout`` draw one generator number per entry and
convert it to a float: about 12 ns an entry here, 3.5 ms for the (35, 20, 400) activations
of a word language model, as long as the layer's own arithmetic. :func:`keep_mask` instead
cuts full-range 64-bit random integers into four 16-bit lanes and compares each with
``p * 2**16``: the same generator (``torch.manual_seed`` reproduces it), a quarter of
the draws, and the probability exact to within 2**-16. On a GPU the draws are cheap:
``torch.rand`` and ``F.dropout``'s own kernel are used as they are.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from rnnkit import _checks


def keep_mask(shape: tuple[int, ...], p: float, *, dtype: torch.dtype,
              device: torch.device | str | None = None) -> Tensor:
    """A {0, 1} tensor of ``shape`` whose entries are 1 with probability ``p`` (to within
    2**-16 on the CPU), independently. On other devices ``torch.rand(shape) < p``, which
    is fast there and safe inside CUDA graph capture."""
    if torch.device(device or "cpu").type != "cpu":  # one fast draw per entry there
        return (torch.rand(shape, device=device) < p).to(dtype)
    threshold = round(p * 65536)
    if threshold >= 65536:
        return torch.ones(shape, dtype=dtype, device=device)
    count = math.prod(shape)
    words = torch.empty((count + 3) // 4, dtype=torch.int64, device=device)
    lanes = words.random_(-2**63, None).view(torch.int16)[:count].view(shape)
    # compared straight into the float mask: a bool mask and its conversion took 6x longer
    return torch.lt(lanes, threshold - 32768, out=torch.empty(shape, dtype=dtype, device=device))


def dropout_mask(like: Tensor, p: float) -> Tensor:
    """A {0, 1/(1-p)} mask shaped like ``like``: each entry kept with probability 1-p."""
    mask = keep_mask(tuple(like.shape), 1.0 - p, dtype=like.dtype, device=like.device)
    return mask.mul_(1.0 / (1.0 - p))


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """``F.dropout(x, p, training)``, with the mask from :func:`dropout_mask` on the CPU
    (Srivastava et al. 2014: zero each entry with probability p, scale the rest by
    1/(1-p), so evaluation needs no rescaling)."""
    if not training or p == 0.0:
        return x
    if p >= 1.0:
        return x * 0.0
    if x.device.type != "cpu":
        return F.dropout(x, p, True)
    return x * dropout_mask(x, p)


class Dropout(nn.Module):
    """A drop-in for ``torch.nn.Dropout(p)`` (no parameters, nothing in the state_dict)
    whose mask is drawn by :func:`dropout_mask` on the CPU, several times faster."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = _checks.probability("dropout", p, allow_one=True)

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
