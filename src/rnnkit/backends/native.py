"""The native backend: ``torch.nn``'s own kernels (cuDNN on GPU, oneDNN/ATen on CPU).

Runs the whole stack in one call. Only the options ``torch.nn`` has are possible here;
variable lengths go through a PackedSequence, as ``torch.nn`` requires. On the CPU glibc
is told to keep freed memory (:mod:`rnnkit.backends._heap`), as for the fused backend:
at B=8, H=128 ``torch.nn.LSTM``'s training step took 0.58-0.74 of its time so, since
oneDNN's workspace is otherwise given back to the system and faulted in again at every
call.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnkit.backends._heap import keep_freed_memory

_FUNCTIONS = {
    "LSTM": torch._VF.lstm,
    "GRU": torch._VF.gru,
    "RNN_TANH": torch._VF.rnn_tanh,
    "RNN_RELU": torch._VF.rnn_relu,
}


def run_stack(
    x: Tensor,
    hx: tuple[Tensor, ...],
    flat_weights: list[Tensor],
    *,
    mode: str,
    bias: bool,
    num_layers: int,
    dropout: float,
    training: bool,
    bidirectional: bool,
    lengths: Optional[Tensor],
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """``x`` (T, B, I) time-major; ``hx`` ``(h0,)`` or ``(h0, c0)``. Returns (output, states)."""
    if x.device.type == "cpu":
        keep_freed_memory()
    fn = _FUNCTIONS[mode]
    state = hx if mode == "LSTM" else hx[0]
    args = (flat_weights, bias, num_layers, dropout, training, bidirectional)
    if lengths is None:
        result = fn(x, state, *args, False)
        return result[0], tuple(result[1:])
    packed = pack_padded_sequence(x, lengths.cpu(), enforce_sorted=False)
    order = packed.sorted_indices
    state = tuple(s.index_select(1, order) for s in hx)
    result = fn(packed.data, packed.batch_sizes, state if mode == "LSTM" else state[0], *args)
    out_packed = packed._replace(data=result[0])
    output, _ = pad_packed_sequence(out_packed, total_length=x.shape[0])
    unorder = packed.unsorted_indices
    return output, tuple(s.index_select(1, unorder) for s in result[1:])
