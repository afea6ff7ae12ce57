r"""minGRU and minLSTM (Feng et al. 2024, "Were RNNs All We Needed?", arXiv:2410.01201).

Their gates read the input only, never the previous state, so one step is an affine map
of the state with coefficients known in advance for every time step:

.. math::
    h_t = a_t \odot h_{t-1} + b_t

which is what lets a layer compute all of ``h_1 … h_T`` with a parallel scan
(:mod:`rnnkit.layers.minimal`) instead of a loop. The cells here are one step, for
generation one token at a time, and the coefficients the scan consumes.

Candidate activations ``activation``: ``"g"`` (the paper's, and the default),
:math:`g(x) = x + 1/2` for :math:`x \ge 0` and :math:`\sigma(x)` below, continuous and
always positive, so that :math:`b_t > 0` and the scan can run in log space; or
``"identity"``, the paper's plain form :math:`\tilde h_t = W_h x_t + b_h`, of any sign.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from rnnkit import _checks

ACTIVATIONS = ("g", "identity")


def g(x: Tensor) -> Tensor:
    """The paper's positive candidate activation: ``x + 0.5`` for x >= 0, ``σ(x)`` below."""
    return torch.where(x >= 0, F.relu(x) + 0.5, torch.sigmoid(x))


def log_g(x: Tensor) -> Tensor:
    """``log g(x)`` without forming ``g``: ``log σ(x)`` by ``logsigmoid`` stays finite for
    very negative x, where ``σ(x)`` underflows to 0."""
    return torch.where(x >= 0, torch.log(F.relu(x) + 0.5), F.logsigmoid(x))


def min_gru_coefficients(k: Tensor, activation: str = "g") -> tuple[Tensor, Tensor]:
    r"""``(a, b)`` of :math:`h_t = a_t h_{t-1} + b_t` from the pre-activations
    ``k = W x + b_W`` (..., 2H), gate order ``z, h``:

    .. math::
        z = \sigma(k_z), \quad \tilde h = g(k_h), \quad
        h_t = (1 - z) \odot h_{t-1} + z \odot \tilde h, \quad a = 1 - z, \quad b = z \tilde h
    """
    k_z, k_h = k.chunk(2, dim=-1)
    update_gate = torch.sigmoid(k_z)
    candidate = g(k_h) if activation == "g" else k_h
    return torch.sigmoid(-k_z), update_gate * candidate  # 1 - σ(k) = σ(-k), exact near 1


def min_gru_log_coefficients(k: Tensor) -> tuple[Tensor, Tensor]:
    """``(log a, log b)`` of :func:`min_gru_coefficients` with ``activation="g"``,
    computed in log space: ``log(1 - z) = log σ(-k_z)``, ``log z = log σ(k_z)``.

    ``F.logsigmoid`` rather than ``-F.softplus(-x)``: softplus returns x itself above
    its threshold (20), a relative error of 2e-9 in the gate that float64 would show."""
    k_z, k_h = k.chunk(2, dim=-1)
    return F.logsigmoid(-k_z), F.logsigmoid(k_z) + log_g(k_h)


def min_lstm_coefficients(k: Tensor, activation: str = "g") -> tuple[Tensor, Tensor]:
    r"""``(a, b)`` of :math:`h_t = a_t h_{t-1} + b_t` from the pre-activations
    ``k = W x + b_W`` (..., 3H), gate order ``f, i, h``:

    .. math::
        f = \sigma(k_f), \quad i = \sigma(k_i), \quad \tilde h = g(k_h), \quad
        f' = \frac{f}{f + i}, \quad i' = \frac{i}{f + i}, \quad
        h_t = f' \odot h_{t-1} + i' \odot \tilde h

    The normalised gates sum to 1, so the state stays on the scale of the candidates
    whatever the sequence length.
    """
    k_f, k_i, k_h = k.chunk(3, dim=-1)
    forget_gate, input_gate = torch.sigmoid(k_f), torch.sigmoid(k_i)
    total = forget_gate + input_gate
    candidate = g(k_h) if activation == "g" else k_h
    return forget_gate / total, input_gate / total * candidate


def min_lstm_log_coefficients(k: Tensor) -> tuple[Tensor, Tensor]:
    r"""``(log a, log b)`` of :func:`min_lstm_coefficients` with ``activation="g"``.

    With :math:`d = \log i - \log f`: :math:`\log f' = -\log(1 + e^d) = \log\sigma(-d)`
    and :math:`\log i' = \log\sigma(d)`.
    """
    k_f, k_i, k_h = k.chunk(3, dim=-1)
    d = F.logsigmoid(k_i) - F.logsigmoid(k_f)
    return F.logsigmoid(-d), F.logsigmoid(d) + log_g(k_h)


class _MinimalCell(nn.Module):
    """One step ``h' = a(x) ⊙ h + b(x)``; ``weight_ih`` (G*H, I), ``bias_ih`` (G*H),
    initialised uniform in (-1/sqrt(H), 1/sqrt(H)) like ``torch.nn``'s cells."""

    num_gates = 0

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None,
                 dtype=None, *, activation: str = "g") -> None:
        super().__init__()
        self.input_size = _checks.positive_int("input_size", input_size)
        self.hidden_size = _checks.positive_int("hidden_size", hidden_size)
        self.bias = bool(bias)
        self.activation = check_activation(activation)
        factory = {"device": device, "dtype": dtype}
        gh = self.num_gates * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(gh, input_size, **factory))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(gh, **factory))
        else:
            self.register_parameter("bias_ih", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def coefficients(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(a, b)`` for ``x`` (..., I): each (..., H)."""
        raise NotImplementedError

    def forward(self, input: Tensor, hx: Optional[Tensor] = None) -> Tensor:
        """``input`` (B, I) or (I,), ``hx`` (B, H) or (H,) or None (zeros) -> ``h'``."""
        _checks.tensor("input", input)
        if input.dim() not in (1, 2) or input.shape[-1] != self.input_size:
            raise ValueError(f"{type(self).__name__}: expected input of shape (B, "
                             f"{self.input_size}) or ({self.input_size},), got "
                             f"{tuple(input.shape)}")
        _checks.same_dtype("input", input, self.weight_ih.dtype)
        a, b = self.coefficients(input)
        if hx is None:
            return b
        _checks.tensor("hx", hx)
        _checks.shape("hx", hx, a.shape, "(B, H)" if input.dim() == 2 else "(H,)")
        _checks.same_dtype("hx", hx, input.dtype)
        return a * hx + b

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        s += "" if self.bias else ", bias=False"
        return s if self.activation == "g" else s + f", activation={self.activation!r}"


class MinGRUCell(_MinimalCell):
    """minGRU step ``forward(input, h) -> h'``: gates ``z, h`` from the input alone,
    ``h' = (1 - z) ⊙ h + z ⊙ h̃``; see :func:`min_gru_coefficients`."""

    num_gates = 2

    def coefficients(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return min_gru_coefficients(F.linear(x, self.weight_ih, self.bias_ih), self.activation)


class MinLSTMCell(_MinimalCell):
    """minLSTM step ``forward(input, h) -> h'``: gates ``f, i, h`` from the input alone,
    normalised so ``f' + i' = 1``, ``h' = f' ⊙ h + i' ⊙ h̃``; no separate cell state;
    see :func:`min_lstm_coefficients`."""

    num_gates = 3

    def coefficients(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return min_lstm_coefficients(F.linear(x, self.weight_ih, self.bias_ih), self.activation)


def check_activation(activation) -> str:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    return activation
