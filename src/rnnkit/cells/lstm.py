"""The LSTM cell (Hochreiter & Schmidhuber 1997), in ``torch.nn.LSTMCell`` layout."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from rnnkit.cells._common import Keep, Weights, hidden_gates, input_gates, layer_norm, zoneout
from rnnkit.cells.base import CellBase


def lstm_step(
    x: Tensor,
    state: tuple[Tensor, Tensor],
    w: Weights,
    drop_mask: Optional[Tensor] = None,
    keep_h: Keep = 0.0,
    keep_c: Keep = 0.0,
) -> tuple[Tensor, Tensor]:
    r"""One LSTM step; ``x`` is (B, I), ``h`` (B, P or H), ``c`` (B, H).

    .. math::
        i, f, g, o &= \mathrm{split}(\mathrm{LN}(W_{ih} x) + b_{ih}
                       + \mathrm{LN}(W_{hh} (h \odot m)) + b_{hh})  \\
        c' &= \sigma(f) \odot c + \sigma(i) \odot \tanh(g) \\
        h' &= W_{hr}\,(\sigma(o) \odot \tanh(\mathrm{LN}(c')))

    LN is the identity unless layer norm is on, ``m`` the recurrent dropout mask,
    ``W_hr`` the identity unless projected; then zoneout mixes ``h', c'`` with ``h, c``.
    """
    h, c = state
    gates = input_gates(x, w) + hidden_gates(h, w, drop_mask)
    in_gate, forget_gate, cell_gate, out_gate = gates.chunk(4, dim=-1)
    c_new = torch.sigmoid(forget_gate) * c + torch.sigmoid(in_gate) * torch.tanh(cell_gate)
    c_out = c_new if w.ln_c_weight is None else layer_norm(c_new, w.ln_c_weight, w.ln_c_bias)
    h_new = torch.sigmoid(out_gate) * torch.tanh(c_out)
    if w.w_hr is not None:
        h_new = h_new @ w.w_hr.t()
    return zoneout(h, h_new, keep_h), zoneout(c, c_new, keep_c)


class LSTMCell(CellBase):
    """Drop-in for ``torch.nn.LSTMCell``: ``forward(input, (h, c)) -> (h', c')``.

    Gate order ``i, f, g, o``; parameters ``weight_ih`` (4H, I), ``weight_hh`` (4H, H),
    ``bias_ih``, ``bias_hh`` (4H). The step equations are those of :func:`lstm_step`.
    """

    mode = "LSTM"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 device=None, dtype=None) -> None:
        super().__init__(input_size, hidden_size, bias, num_gates=4, device=device, dtype=dtype)

    def forward(self, input: Tensor, hx: Optional[tuple[Tensor, Tensor]] = None):
        x, hx, batched = self._check(input, hx, num_states=2)
        h, c = lstm_step(x, hx, self._weights())
        return (h, c) if batched else (h.squeeze(0), c.squeeze(0))
