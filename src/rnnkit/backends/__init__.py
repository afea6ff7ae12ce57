"""Three ways to compute the same function.

- ``reference``: the cells stepped over time with autograd (the oracle);
- ``fused``: BPTT written out by hand in one ``torch.autograd.Function`` per direction;
- ``native``: ``torch.nn``'s kernels, where the options allow;
- ``auto``: the fastest of these that supports the options.
"""

from __future__ import annotations

import torch

from rnnkit.backends import reference

BACKENDS = ("auto", "reference", "fused", "native")


def per_direction(name: str):
    """The ``run_direction`` function of a per-direction backend."""
    if name == "reference":
        return reference.run_direction
    if name == "fused":
        from rnnkit.backends import fused

        return fused.run_direction
    raise ValueError(f"backend {name!r} does not run one direction at a time")


def choose(requested: str, *, native_ok: bool, x: torch.Tensor, training: bool,
           has_lengths: bool = False) -> str:
    """Resolve ``auto``: native when it can do the job, else fused.

    - cuDNN cannot run backward in eval mode, so on GPU an eval-mode call that needs
      gradients goes to ``fused``;
    - on CPU, torch.nn's PackedSequence path leaves oneDNN for a per-step loop that
      measured 2.7x slower than the padded batch (benchmarks/RESULTS.md), so variable
      lengths go to ``fused`` there.
    """
    if requested != "auto":
        return requested
    if not native_ok:
        return "fused"
    if x.is_cuda and not training and torch.is_grad_enabled():
        return "fused"
    if has_lengths and not x.is_cuda:
        return "fused"
    return "native"
