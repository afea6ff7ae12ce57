"""The Elman RNN cell, tanh or ReLU, in ``torch.nn.RNNCell`` layout."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from rnnkit.cells._common import Keep, Weights, hidden_gates, input_gates, zoneout
from rnnkit.cells.base import CellBase


def rnn_step(
    x: Tensor,
    state: tuple[Tensor],
    w: Weights,
    drop_mask: Optional[Tensor] = None,
    keep_h: Keep = 0.0,
    keep_c: Keep = 0.0,
    nonlinearity: str = "tanh",
) -> tuple[Tensor]:
    r"""One Elman step; ``x`` is (B, I), ``h`` (B, H).

    .. math::
        h' = \phi(\mathrm{LN}(W_{ih} x) + b_{ih} + \mathrm{LN}(W_{hh} (h \odot m)) + b_{hh}),
        \qquad \phi \in \{\tanh, \mathrm{ReLU}\}

    then zoneout mixes ``h'`` with ``h``. ``keep_c`` is accepted and ignored.
    """
    (h,) = state
    pre = input_gates(x, w) + hidden_gates(h, w, drop_mask)
    h_new = torch.tanh(pre) if nonlinearity == "tanh" else torch.relu(pre)
    return (zoneout(h, h_new, keep_h),)


class RNNCell(CellBase):
    """Drop-in for ``torch.nn.RNNCell``: ``forward(input, h) -> h'``, tanh or ReLU.

    Parameters ``weight_ih`` (H, I), ``weight_hh`` (H, H), ``bias_ih``, ``bias_hh`` (H).
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", device=None, dtype=None) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__(input_size, hidden_size, bias, num_gates=1, device=device, dtype=dtype)
        self.nonlinearity = nonlinearity
        self.mode = "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU"

    def extra_repr(self) -> str:
        return super().extra_repr() + f", nonlinearity={self.nonlinearity!r}"

    def forward(self, input: Tensor, hx: Optional[Tensor] = None) -> Tensor:
        x, hx, batched = self._check(input, None if hx is None else (hx,), num_states=1)
        (h,) = rnn_step(x, hx, self._weights(), nonlinearity=self.nonlinearity)
        return h if batched else h.squeeze(0)
