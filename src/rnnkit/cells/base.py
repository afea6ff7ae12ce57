"""What the three ``torch.nn``-style cells share: parameters, initialisation, input checks."""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

from rnnkit import _checks
from rnnkit.cells._common import Weights


class CellBase(nn.Module):
    """Parameters ``weight_ih`` (G*H, I), ``weight_hh`` (G*H, H), ``bias_ih``, ``bias_hh``,
    initialised like ``torch.nn``: uniform in (-1/sqrt(H), 1/sqrt(H))."""

    mode = ""

    def __init__(self, input_size: int, hidden_size: int, bias: bool, num_gates: int,
                 device=None, dtype=None) -> None:
        super().__init__()
        self.input_size = _checks.positive_int("input_size", input_size)
        self.hidden_size = _checks.positive_int("hidden_size", hidden_size)
        self.bias = bool(bias)
        factory = {"device": device, "dtype": dtype}
        gh = num_gates * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(gh, input_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(gh, hidden_size, **factory))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(gh, **factory))
            self.bias_hh = nn.Parameter(torch.empty(gh, **factory))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        return s if self.bias else s + ", bias=False"

    def _weights(self) -> Weights:
        return Weights(self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)

    def _check(self, input: Tensor, hx: Optional[tuple[Tensor, ...]], num_states: int):
        """Check ``input`` (B, I) or (I,) and ``hx``; return batched tensors and a flag."""
        _checks.tensor("input", input)
        if input.dim() not in (1, 2):
            raise ValueError(f"{type(self).__name__}: expected input of shape (B, I) or (I,), "
                             f"got {input.dim()}-D {tuple(input.shape)}")
        if input.shape[-1] != self.input_size:
            raise ValueError(f"{type(self).__name__}: expected input with {self.input_size} "
                             f"features, got {tuple(input.shape)}")
        _checks.same_dtype("input", input, self.weight_ih.dtype)
        batched = input.dim() == 2
        x = input if batched else input.unsqueeze(0)
        expected = (x.shape[0], self.hidden_size)
        if hx is None:
            zeros = torch.zeros(expected, dtype=x.dtype, device=x.device)
            return x, (zeros,) * num_states, batched
        if not isinstance(hx, (tuple, list)) or len(hx) != num_states:
            raise TypeError(f"hx must be {num_states} tensor(s), got {type(hx).__name__}")
        states = []
        for i, s in enumerate(hx):
            name = "hx" if num_states == 1 else ("h", "c")[i]
            _checks.tensor(name, s)
            s = s if batched else s.unsqueeze(0)
            _checks.shape(name, s, expected, "(B, H)")
            _checks.same_dtype(name, s, x.dtype)
            states.append(s)
        return x, tuple(states), batched
