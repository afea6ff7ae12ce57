"""A layer's training step captured in CUDA graphs, replayed instead of launched.

A time loop launches two or more kernels per step: at T=100 that is hundreds of small
launches per forward and backward, and on a GPU their launch cost, not the arithmetic,
sets the time. :func:`graphed` records the forward and the backward once and replays
them, so the loop costs what its kernels cost.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def graphed(module: nn.Module, *sample_args: Tensor, warmup: int = 3) -> nn.Module:
    """``module`` with its forward and backward captured in CUDA graphs for inputs shaped
    like ``sample_args`` (``torch.cuda.make_graphed_callables`` underneath).

    Call it with tensors of the same shapes, dtypes and ``requires_grad`` as the samples,
    positionally (``lengths=`` and initial states are not taken). The module's parameters
    stay its own: an optimizer steps them as before. In train mode dropout, zoneout and
    DropConnect draw fresh masks at every replay. A call in the other mode (``eval()``
    after capturing in train mode) runs the module as usual, uncaptured. ``warmup``
    iterations run first, outside the graph, on a side stream.

    Example::

        layer = rnnkit.LSTM(512, 512, layer_norm=True, zoneout=0.1).cuda()
        x = torch.randn(100, 64, 512, device="cuda", requires_grad=True)
        layer = rnnkit.graphed(layer, x)
        out, (h, c) = layer(x)   # replays the captured forward
        out.sum().backward()     # replays the captured backward
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"graphed needs an nn.Module, got {type(module).__name__}")
    if not sample_args:
        raise ValueError("graphed needs at least one sample input (a CUDA tensor)")
    for i, t in enumerate(sample_args):
        if not isinstance(t, Tensor) or t.device.type != "cuda":
            got = t.device if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(f"graphed: sample input {i} must be a CUDA tensor, got {got}")
    devices = {p.device for p in module.parameters()}
    if devices != {sample_args[0].device}:
        raise ValueError(f"graphed: the module's parameters must be on "
                         f"{sample_args[0].device}, found {sorted(map(str, devices))}")
    if warmup < 1:
        raise ValueError(f"warmup must be at least 1, got {warmup}")
    return torch.cuda.make_graphed_callables(module, tuple(sample_args),
                                             num_warmup_iters=warmup)
