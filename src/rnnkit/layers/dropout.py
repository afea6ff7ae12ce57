"""Random {0, 1} masks and dropout, drawn cheaply on the CPU.

On the CPU ``torch.bernoulli`` and ``F.dropout`` draw one generator number per entry and
convert it to a float: about 12 ns an entry here, 3.5 ms for the (35, 20, 400) activations
of a word language model, as long as the layer's own arithmetic. :func:`keep_mask` instead
takes one 64-bit seed from torch's generator (``torch.manual_seed`` reproduces it) and
expands it with SplitMix64 (Steele, Lea & Flood 2014), a counter-based generator: word w
is a hash of the seed and w, cut into four 16-bit lanes, each compared with
``p * 2**16``, so the probability is exact to within 2**-16. The compiled kernels
(``backends/csrc/mask.c``) write a mask in ~0.15 ns an entry (0.12 ms for a (100, 32,
256) zoneout mask, 1.4 ms with torch's generator); where they are not built a torch
expression gives the same bits. On a GPU the draws are cheap: ``torch.rand`` and
``F.dropout``'s own kernel are used as they are.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from rnnkit import _checks
from rnnkit.backends import _cpu_kernels as kernels


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
    seed = int(torch.empty((), dtype=torch.int64).random_(-2**63, None)) % 2**64
    count = math.prod(shape)
    out = torch.empty(shape, dtype=dtype, device=device)
    if kernels.usable(out):
        kernels.library(dtype).rnnkit_keep_mask(seed, count, threshold - 32768,
                                                out.data_ptr(), torch.get_num_threads())
        return out
    lanes = splitmix_words(seed, (count + 3) // 4).view(torch.int16)[:count].view(shape)
    # compared straight into the float mask: a bool mask and its conversion took 6x longer
    return torch.lt(lanes, threshold - 32768, out=out)


def splitmix_words(seed: int, n: int) -> Tensor:
    """Words 0 .. n-1 of the mask stream under ``seed`` (as ``csrc/mask.c``): SplitMix64's
    mix(seed + (w + 1) * gamma), in int64 arithmetic that wraps as the C code's does."""
    z = torch.arange(1, n + 1, dtype=torch.int64).mul_(_signed(_GAMMA)).add_(_signed(seed))
    for shift, multiplier in ((30, _MIX1), (27, _MIX2)):
        z.bitwise_xor_(_shift_right(z, shift)).mul_(_signed(multiplier))
    return z.bitwise_xor_(_shift_right(z, 31))


_GAMMA, _MIX1, _MIX2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def _signed(word: int) -> int:
    """An unsigned 64-bit constant as the int64 with the same bits."""
    return word - 2**64 if word >= 2**63 else word


def _shift_right(z: Tensor, bits: int) -> Tensor:
    """A logical right shift of int64 words (torch's >> keeps the sign)."""
    return (z >> bits).bitwise_and_(2 ** (64 - bits) - 1)


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
