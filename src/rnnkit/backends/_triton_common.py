"""The Triton kernels' host side, shared by the three cells: when they run, launch shapes.

The fused loops with Triton (``_fused_{lstm,gru,rnn}_triton.py``) do one time step as
one recurrent product in torch and one Triton kernel for all the pointwise work, forward
and backward. They run when ``triton`` imports and the tensors are on a CUDA device, in
float32 or bfloat16 (computing in float32 inside the kernels). ``RNNKIT_TRITON=0`` turns
them off; ``RNNKIT_TRITON=interpret`` with ``TRITON_INTERPRET=1`` (set before triton is
first imported) runs them on CPU tensors through Triton's interpreter, which is how they
are tested without a GPU. ``triton`` is imported only when they are about to run.
"""

from __future__ import annotations

import contextlib
import os
from functools import lru_cache
from typing import Optional

import torch
from torch import Tensor

DTYPES = (torch.float32, torch.bfloat16)
#: State values one program handles per gate: a block of BLOCK_B full rows.
ROW_ELEMENTS = 2048


def interpreting() -> bool:
    """True when the kernels are asked to run in Triton's CPU interpreter."""
    return (os.environ.get("RNNKIT_TRITON") == "interpret"
            and os.environ.get("TRITON_INTERPRET") == "1")


@lru_cache(maxsize=None)
def importable() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def usable(*tensors: Optional[Tensor]) -> bool:
    """True when the Triton kernels can take these tensors: one device (CUDA, or any under
    the interpreter) and one dtype of :data:`DTYPES`."""
    present = [t for t in tensors if t is not None]
    if os.environ.get("RNNKIT_TRITON") == "0" or not present:
        return False
    dtype, device = present[0].dtype, present[0].device
    if dtype not in DTYPES or any(t.dtype != dtype or t.device != device for t in present):
        return False
    return (device.type == "cuda" or interpreting()) and importable()


def _pow2(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


def launch(kernel, B: int, H: int, *args, **flags) -> None:
    """One kernel over the batch: a program per block of BLOCK_B rows, each row's H
    columns (per gate) in a block of the next power of two, masked past H. The first
    tensor in ``args`` is on the device to run on (Triton launches on the current one)."""
    block_h = _pow2(H)
    block_b = max(1, min(_pow2(B), ROW_ELEMENTS // block_h))
    warps = min(16, max(4, block_b * block_h // 256))
    grid = (-(-B // block_b),)
    device = next(a for a in args if isinstance(a, Tensor)).device
    with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
        kernel[grid](*args, B, H, **flags, BLOCK_B=block_b, BLOCK_H=block_h, num_warps=warps)


class SettleArgs:
    """A settle weight (:class:`rnnkit.backends._fused_common.Settle`) in kernel terms:
    ``mode`` 0 (off), 1 (the scalar ``value``) or 2 (per-step ``views`` (B, cols));
    ``cols`` 1 when one weight serves a whole row (lengths without zoneout masks)."""

    def __init__(self, settle, T: int) -> None:
        w = None if settle is None else settle.raw  # bytes stay bytes: read as such
        self.views, self.value, self.mode, self.cols = [None] * T, 0.0, 0, 0
        if isinstance(w, Tensor):
            w = w.contiguous()
            self.views, self.mode, self.cols = w.unbind(0), 2, int(w.shape[-1] != 1)
        elif w is not None and w != 0.0:
            self.value, self.mode = float(w), 1


def output_grad(dy: Optional[Tensor], T: int):
    """The output gradient (T, B, H) for the backward kernels, read where it lies: its
    per-step views and its row and column strides (None and zeros when there is none).
    A ``sum()`` loss gives all strides 0 and a batch-first output steps of T·H between
    rows; a contiguous copy would cost a (T, B, H) buffer at the backward's peak."""
    if dy is None:
        return [None] * T, 0, 0
    return dy.unbind(0), dy.stride(1), dy.stride(2)


@lru_cache(maxsize=None)
def stats_dtype(dtype: torch.dtype, device_type: str) -> torch.dtype:
    """The dtype torch's layer norm gives its mean and rstd on this device, so the torch
    loops' backward reads the statistics these kernels saved, and the other way round."""
    x = torch.ones(1, 2, dtype=dtype, device=device_type)
    return torch.native_layer_norm(x, (2,), None, None, 1e-5)[1].dtype


def stats(like: Tensor, T: int, B: int, keep: bool, on: bool = True):
    """Layer-norm statistics buffers (mean, rstd): (T, B, 1) each when kept for backward,
    else one (B, 1) scratch each; returned with their per-step views. None when not ``on``."""
    if not on:
        return None, None, ([None] * T, [None] * T)
    dtype = stats_dtype(like.dtype, like.device.type)
    shape = (T, B, 1) if keep else (B, 1)
    mean, rstd = (like.new_empty(shape, dtype=dtype) for _ in range(2))
    views = (mean.unbind(0), rstd.unbind(0)) if keep else ([mean] * T, [rstd] * T)
    return mean, rstd, views
