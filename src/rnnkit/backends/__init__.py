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
#: A call of fewer steps than this is "short" (generation steps one token at a time).
SHORT = 16
#: The smallest batch and hidden size at which the fused CPU loop trains a plain LSTM
#: faster than oneDNN's LSTM kernel (benchmarks/RESULTS.md): 0.74-0.90 of its time from
#: B=32 on at H=128-512; at B=8-16 and at H=100 it was no faster.
LSTM_FUSED_BATCH, LSTM_FUSED_HIDDEN = 32, 128


def per_direction(name: str):
    """The ``run_direction`` function of a per-direction backend."""
    if name == "reference":
        return reference.run_direction
    if name == "fused":
        from rnnkit.backends import fused

        return fused.run_direction
    raise ValueError(f"backend {name!r} does not run one direction at a time")


def choose(requested: str, *, native_ok: bool, x: torch.Tensor, training: bool,
           has_lengths: bool = False, mode: str = "LSTM", hidden_size: int = 0,
           projected: bool = False) -> str:
    """Resolve ``auto``: native when it can do the job and is the fastest, else fused.

    - cuDNN cannot run backward in eval mode, so on GPU an eval-mode call that needs
      gradients goes to ``fused``;
    - on CPU, torch.nn's PackedSequence path leaves oneDNN for a per-step loop that
      measured 2.7x slower than the padded batch (benchmarks/RESULTS.md), so variable
      lengths go to ``fused`` there;
    - on CPU in float32, with the fused backend's compiled kernels (measured in
      benchmarks/RESULTS.md): torch.nn's GRU and RNN are per-step loops, and fused
      trains them in 0.6-0.8 of their time on calls of 16 steps or more, while their
      per-call cost stays lower on shorter ones; torch.nn's LSTM runs oneDNN's LSTM
      kernel, costly per call, so generation one token at a time (calls under 16 steps)
      goes to fused, 0.2 of its per-token latency; over long sequences fused trains it
      in 0.74-0.90 of oneDNN's time from a batch of 32 and a hidden size of 128 on
      (without projection, outside autocast, which runs oneDNN's kernel in bf16), while
      oneDNN stays ahead on smaller batches and in inference.

    ``x`` is time-major, (T, B, I).
    """
    if requested != "auto":
        return requested
    if not native_ok:
        return "fused"
    if x.is_cuda and not training and torch.is_grad_enabled():
        return "fused"
    if x.device.type == "cpu" and has_lengths:
        return "fused"
    if x.device.type == "cpu" and (mode == "LSTM") == (x.shape[0] < SHORT) and _cpu_fast(x):
        return "fused"
    if (mode == "LSTM" and x.device.type == "cpu" and training and torch.is_grad_enabled()
            and x.shape[1] >= LSTM_FUSED_BATCH and hidden_size >= LSTM_FUSED_HIDDEN
            and not projected and not torch.is_autocast_enabled("cpu") and _cpu_fast(x)):
        return "fused"
    return "native"


def _cpu_fast(x: torch.Tensor) -> bool:
    """The fused backend's CPU fast path is there: kernels built, products on oneDNN."""
    from rnnkit.backends import _cpu_kernels, _fused_cpu, _matmul

    return (x.dtype == torch.float32 and _matmul.onednn(x) and _cpu_kernels.usable(x)
            and _fused_cpu._layout_matches(x.dtype))
