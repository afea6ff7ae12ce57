"""The GRU cell (Cho et al. 2014), in ``torch.nn.GRUCell`` layout."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from rnnkit.cells._common import Keep, Weights, hidden_gates, input_gates, zoneout
from rnnkit.cells.base import CellBase


def gru_step(
    x: Tensor,
    state: tuple[Tensor],
    w: Weights,
    drop_mask: Optional[Tensor] = None,
    keep_h: Keep = 0.0,
    keep_c: Keep = 0.0,
) -> tuple[Tensor]:
    r"""One GRU step; ``x`` is (B, I), ``h`` (B, H).

    .. math::
        x_r, x_z, x_n &= \mathrm{split}(\mathrm{LN}(W_{ih} x) + b_{ih}) \qquad
        h_r, h_z, h_n = \mathrm{split}(\mathrm{LN}(W_{hh} (h \odot m)) + b_{hh}) \\
        r = \sigma(x_r + h_r), \quad z &= \sigma(x_z + h_z), \quad
        n = \tanh(x_n + r \odot h_n) \\
        h' &= (1 - z) \odot n + z \odot h

    ``m`` is the recurrent dropout mask (it touches only the matrix product), then
    zoneout mixes ``h'`` with ``h``. ``keep_c`` is accepted and ignored (no cell state).
    """
    (h,) = state
    x_r, x_z, x_n = input_gates(x, w).chunk(3, dim=-1)
    h_r, h_z, h_n = hidden_gates(h, w, drop_mask).chunk(3, dim=-1)
    reset_gate = torch.sigmoid(x_r + h_r)
    update_gate = torch.sigmoid(x_z + h_z)
    new_gate = torch.tanh(x_n + reset_gate * h_n)
    h_new = new_gate + update_gate * (h - new_gate)
    return (zoneout(h, h_new, keep_h),)


class GRUCell(CellBase):
    """Drop-in for ``torch.nn.GRUCell``: ``forward(input, h) -> h'``.

    Gate order ``r, z, n``; parameters ``weight_ih`` (3H, I), ``weight_hh`` (3H, H),
    ``bias_ih``, ``bias_hh`` (3H). The step equations are those of :func:`gru_step`.
    """

    mode = "GRU"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 device=None, dtype=None) -> None:
        super().__init__(input_size, hidden_size, bias, num_gates=3, device=device, dtype=dtype)

    def forward(self, input: Tensor, hx: Optional[Tensor] = None) -> Tensor:
        x, hx, batched = self._check(input, None if hx is None else (hx,), num_states=1)
        (h,) = gru_step(x, hx, self._weights())
        return h if batched else h.squeeze(0)
