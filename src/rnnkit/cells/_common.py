"""Pieces shared by every cell: the weight bundle, layer norm and zoneout."""

from __future__ import annotations

from typing import NamedTuple, Optional, Union

import torch
from torch import Tensor

#: Zoneout "keep" weight: a {0, 1} mask in training (1 keeps the previous value),
#: or the probability itself in evaluation (the expectation of that mask).
Keep = Union[Tensor, float]

LN_EPS = 1e-5


class Weights(NamedTuple):
    """The parameters of one layer and direction, in ``torch.nn`` layout.

    ``w_ih`` is (G*H, I) and ``w_hh`` is (G*H, H_out) with the gates stacked in
    ``torch.nn`` order (LSTM ``i, f, g, o``; GRU ``r, z, n``; RNN one gate).
    ``w_hr`` is the LSTM projection (P, H). The ``ln_*`` entries are the layer-norm
    gains (and the cell-norm bias); all optional entries are ``None`` when unused.
    """

    w_ih: Tensor
    w_hh: Tensor
    b_ih: Optional[Tensor] = None
    b_hh: Optional[Tensor] = None
    w_hr: Optional[Tensor] = None
    ln_ih: Optional[Tensor] = None
    ln_hh: Optional[Tensor] = None
    ln_c_weight: Optional[Tensor] = None
    ln_c_bias: Optional[Tensor] = None


def layer_norm(x: Tensor, gain: Optional[Tensor], bias: Optional[Tensor] = None) -> Tensor:
    """Normalise over the last dimension, then scale by ``gain`` and shift by ``bias``."""
    return torch.nn.functional.layer_norm(x, x.shape[-1:], gain, bias, LN_EPS)


def input_gates(x: Tensor, w: Weights) -> Tensor:
    """``LN(x W_ih^T) + b_ih``: the input's share of the gate pre-activations."""
    gates = x @ w.w_ih.t()
    if w.ln_ih is not None:
        gates = layer_norm(gates, w.ln_ih)
    return gates if w.b_ih is None else gates + w.b_ih


def hidden_gates(h: Tensor, w: Weights, drop_mask: Optional[Tensor]) -> Tensor:
    """``LN((h * mask) W_hh^T) + b_hh``: the recurrent share, after variational dropout."""
    if drop_mask is not None:
        h = h * drop_mask
    gates = h @ w.w_hh.t()
    if w.ln_hh is not None:
        gates = layer_norm(gates, w.ln_hh)
    return gates if w.b_hh is None else gates + w.b_hh


def zoneout(previous: Tensor, new: Tensor, keep: Keep) -> Tensor:
    """``keep * previous + (1 - keep) * new`` (Krueger et al. 2016, arXiv:1606.01305)."""
    if isinstance(keep, float) and keep == 0.0:
        return new
    return new + keep * (previous - new)
