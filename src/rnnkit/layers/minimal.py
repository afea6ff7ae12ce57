r"""``rnnkit.MinGRU`` and ``rnnkit.MinLSTM``: minimal RNNs trained with a parallel scan.

The gates of minGRU and minLSTM (Feng et al. 2024, arXiv:2410.01201; the cells are in
:mod:`rnnkit.cells.minimal`) read only the input, so every step is
:math:`h_t = a_t \odot h_{t-1} + b_t` with ``a``, ``b`` computed for all t at once by one
matrix product. What remains is a first-order linear recurrence, solved here three ways,
all along dim 0 of (T, B, H) tensors and tested equal:

- :func:`log_scan` (``scan="log"``, the paper's): with :math:`a^*_t = \sum_{s \le t} \log a_s`,

  .. math::
      h_t = e^{a^*_t} h_0 + \exp\Big(a^*_t + \operatorname{logcumsumexp}_{s \le t}
      (\log b_s - a^*_s)\Big)

  a cumulative sum and a cumulative log-sum-exp: O(T) work, no loop over time. It needs
  :math:`b_t > 0`, hence the positive candidate activation ``g``. :math:`a^*` only falls
  (to -3500 at T = 2048 with gates that keep 0.2 a step) and ``logcumsumexp`` shifts by
  its running maximum, so nothing overflows or underflows; the price is the cancellation
  in :math:`a^*_t + \operatorname{logcumsumexp}(\cdot)`, a relative error of about
  :math:`|a^*_t| \varepsilon`: 6e-13 in float64 and 3e-4 in float32 in that case, where
  the linear scan keeps 2.5e-7. The initial state enters linearly, as the term
  :math:`e^{a^*_t} h_0`, so it may have any sign.
- :func:`linear_scan` (``scan="linear"``, the default): the same recurrence in linear
  space, for any sign of ``b`` (``activation="identity"`` too), as a chunked scan:
  chunks of about sqrt(T) steps all run at once, the state is carried from chunk to
  chunk, and the chunks run again from their entering states. O(T) work in about
  3 sqrt(T) steps; only products of gates in (0, 1), so stable at any length, and exact
  to rounding in float32.
- :func:`sequential_scan` (``scan="sequential"``): the loop over time, the reference.

Why ``"linear"`` is the default: measured on a 2-core CPU (``benchmarks/RESULTS.md``,
section ``scan``), it trains as fast as the loop (within 6%) and the log scan about three
times slower, its ``logcumsumexp`` and cumulative sum being extra full passes over
(T, B, H); and it is exact in float32 where the log scan loses ``|a*| ε``. The log scan
takes the fewest sequential steps, which is what a GPU rewards.
"""

from __future__ import annotations

import math
import warnings
from typing import Optional

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.utils.rnn import PackedSequence

from rnnkit import _checks
from rnnkit.cells.minimal import (
    check_activation,
    min_gru_coefficients,
    min_gru_log_coefficients,
    min_lstm_coefficients,
    min_lstm_log_coefficients,
)
from rnnkit.layers.recurrent import _autocast_device, _cast, _Recurrent, _repack
from rnnkit.layers.run import reverse_padded, valid_mask

SCANS = ("log", "linear", "sequential")


def log_scan(log_a: Tensor, log_b: Tensor, h0: Optional[Tensor] = None) -> Tensor:
    """``h_t = a_t h_{t-1} + b_t`` for every t from ``log a``, ``log b`` (T, B, H) and
    ``h0`` (B, H) or None (zeros); returns ``h`` (T, B, H)."""
    a_star = torch.cumsum(log_a, dim=0)  # log of a_1 ... a_t, (T, B, H)
    h = torch.exp(a_star + torch.logcumsumexp(log_b - a_star, dim=0))
    return h if h0 is None else h + torch.exp(a_star) * h0


def linear_scan(a: Tensor, b: Tensor, h0: Optional[Tensor] = None,
                chunk: Optional[int] = None) -> Tensor:
    """``h_t = a_t h_{t-1} + b_t`` for every t, any signs, by a chunked scan.

    Time is cut into N chunks of C steps (C = ``chunk``, default the power of two
    nearest sqrt(T)): 1) every chunk runs from a zero state, all chunks at once, keeping
    the product of its gates; 2) the state entering each chunk is carried from chunk to
    chunk (N steps on (B, H)); 3) every chunk runs again from its own entering state,
    all at once. O(T) work in 2C + N steps rather than T; only products of gates, so it
    is stable at any length.
    """
    steps, rest = a.shape[0], a.shape[1:]
    C = chunk or 1 << max(0, round(math.log2(steps) / 2))
    N = -(-steps // C)
    if N * C > steps:  # pad with identity steps (a = 1, b = 0)
        a = torch.cat([a, a.new_ones(N * C - steps, *rest)])
        b = torch.cat([b, b.new_zeros(N * C - steps, *rest)])
    # unbind, not a[:, c]: each indexing's backward would write a full-size zero gradient
    a_c, b_c = a.view(N, C, *rest).unbind(1), b.view(N, C, *rest).unbind(1)  # C x (N, B, H)
    h_end, a_prod = b_c[0], a_c[0]
    for a_t, b_t in zip(a_c[1:], b_c[1:]):  # 1) each chunk from zero: its end state, its gain
        h_end = a_t * h_end + b_t
        a_prod = a_t * a_prod
    carried = [torch.zeros_like(b_c[0][0]) if h0 is None else h0]
    for gain, end in zip(a_prod.unbind(0)[:-1], h_end.unbind(0)[:-1]):  # 2) chunk to chunk
        carried.append(gain * carried[-1] + end)
    h, out = torch.stack(carried), []  # (N, B, H): the state entering each chunk
    for a_t, b_t in zip(a_c, b_c):  # 3) each chunk from its entering state
        h = a_t * h + b_t
        out.append(h)
    return torch.stack(out, 1).view(N * C, *rest)[:steps]


def sequential_scan(a: Tensor, b: Tensor, h0: Optional[Tensor] = None) -> Tensor:
    """The reference: ``h_t = a_t h_{t-1} + b_t``, one step at a time."""
    h = torch.zeros_like(b[0]) if h0 is None else h0
    out = []
    for a_t, b_t in zip(a, b):
        h = a_t * h + b_t
        out.append(h)
    return torch.stack(out)


class _MinimalRecurrent(nn.Module):
    """What :class:`MinGRU` and :class:`MinLSTM` share: all but their coefficients."""

    num_gates = 0
    mode = ""  # one state tensor (no LSTM pair) for the shared state checks

    # The input, lengths and initial-state checks of rnnkit.GRU, shared, not copied.
    _prepare_input = _Recurrent._prepare_input
    _check_lengths = _Recurrent._check_lengths
    _initial_state = _Recurrent._initial_state

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device=None, dtype=None, *,
                 activation: str = "g", scan: str = "linear") -> None:
        super().__init__()
        self.input_size = _checks.positive_int("input_size", input_size)
        self.hidden_size = _checks.positive_int("hidden_size", hidden_size)
        self.num_layers = _checks.positive_int("num_layers", num_layers)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dropout = _checks.probability("dropout", dropout, allow_one=True)
        self.bidirectional = bool(bidirectional)
        if self.dropout > 0 and self.num_layers == 1:
            warnings.warn("dropout acts between stacked layers: with num_layers=1 it does "
                          "nothing", stacklevel=3)
        self.activation = check_activation(activation)
        self.scan = scan
        factory = {"device": device, "dtype": dtype}
        gh = self.num_gates * hidden_size
        for layer in range(num_layers):
            in_size = input_size if layer == 0 else hidden_size * self.num_directions
            for direction in range(self.num_directions):
                sfx = _suffix(layer, direction)
                setattr(self, "weight_ih" + sfx,
                        nn.Parameter(torch.empty(gh, in_size, **factory)))
                if bias:
                    setattr(self, "bias_ih" + sfx, nn.Parameter(torch.empty(gh, **factory)))
        self.reset_parameters()

    @property
    def scan(self) -> str:
        return self._scan_kind

    @scan.setter
    def scan(self, scan: str) -> None:
        """Checked on every change: the log scan computes the ``g`` candidate only."""
        if scan not in SCANS:
            raise ValueError(f"scan must be one of {SCANS}, got {scan!r}")
        if scan == "log" and self.activation != "g":
            raise ValueError(f"scan='log' needs activation='g' (b_t > 0 to take its log), "
                             f"got activation={self.activation!r}; use scan='linear'")
        self._scan_kind = scan

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def reset_parameters(self) -> None:
        """Uniform in (-1/sqrt(H), 1/sqrt(H)), as ``torch.nn``'s recurrent layers."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def gates(self, x: Tensor, layer: int, direction: int) -> Tensor:
        """Pre-activations ``W x + b`` (..., G*H) of one layer and direction."""
        sfx = _suffix(layer, direction)
        w = getattr(self, "weight_ih" + sfx)
        # under autocast the product may run in bf16; the scan stays in the weights' dtype
        return F.linear(x, w, getattr(self, "bias_ih" + sfx, None)).to(w.dtype)

    def forward(self, input, hx: Optional[Tensor] = None, *,
                lengths: Optional[Tensor] = None):
        """As ``torch.nn.GRU``: ``input`` (T, B, I), (B, T, I) if ``batch_first``, (T, I)
        or a ``PackedSequence``; ``hx`` (L*D, B, H) or None -> ``(output, h_n)``."""
        amp = _autocast_device(input)
        x, lengths, batched = self._prepare_input(input, lengths, amp)
        h0 = None if hx is None else self._initial_state(_cast(hx, x.dtype) if amp else hx, x,
                                                         batched)[0]
        out, h_n = self._run(x, h0, lengths)
        if isinstance(input, PackedSequence):
            out = _repack(out, lengths, input)
        elif not batched:
            out, h_n = out.squeeze(1), h_n.squeeze(1)
        elif self.batch_first:
            out = out.transpose(0, 1)
        return out, h_n

    def _run(self, x: Tensor, h0: Optional[Tensor], lengths: Optional[Tensor]):
        """Every layer and direction over ``x`` (T, B, I) -> (T, B, D*H), (L*D, B, H)."""
        valid = valid_mask(lengths, x.shape[0])  # (T, B, 1) or None
        finals, layer_input = [], x
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(self.num_directions):
                index = layer * self.num_directions + direction
                seq = layer_input if direction == 0 else reverse_padded(layer_input, lengths)
                y = self._run_direction(seq, layer, direction, None if h0 is None else h0[index])
                if valid is not None:
                    y = torch.where(valid, y, 0.0)  # zero past each sequence's end
                finals.append(_last(y, lengths))
                outputs.append(y if direction == 0 else reverse_padded(y, lengths))
            layer_input = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=-1)
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                layer_input = F.dropout(layer_input, self.dropout, True)
        return layer_input, torch.stack(finals)

    def _run_direction(self, x: Tensor, layer: int, direction: int,
                       h0: Optional[Tensor]) -> Tensor:
        k = self.gates(x, layer, direction)  # (T, B, G*H): every step's gates at once
        if self.scan == "log":
            return log_scan(*self._log_coefficients(k), h0)
        a, b = self._coefficients(k, self.activation)
        return (linear_scan if self.scan == "linear" else sequential_scan)(a, b, h0)

    def step(self, input: Tensor, hx: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        """One time step for generation: ``input`` (B, I) or (I,), ``hx`` (L, B, H) or
        (L, H) or None (zeros) -> ``(output, h)``, output (B, H) the last layer's state.
        Feeding ``h`` back gives, token by token, what ``forward`` gives at once."""
        if self.bidirectional:
            raise ValueError("step() runs forward in time; a bidirectional layer needs the "
                             "whole sequence: use forward()")
        _checks.tensor("input", input)
        if input.dim() not in (1, 2) or input.shape[-1] != self.input_size:
            raise ValueError(f"step: expected input of shape (B, {self.input_size}) or "
                             f"({self.input_size},), got {tuple(input.shape)}")
        if _autocast_device(input):  # a state or input carried out of autocast may be bf16
            input, hx = _cast(input, self.weight_ih_l0.dtype), _cast(hx, self.weight_ih_l0.dtype)
        _checks.same_dtype("input", input, self.weight_ih_l0.dtype)
        batched = input.dim() == 2
        x = input if batched else input.unsqueeze(0)  # (B, I)
        (h,) = self._initial_state(hx, x.unsqueeze(0), batched)  # (L, B, H)
        states = []
        for layer in range(self.num_layers):
            a, b = self._coefficients(self.gates(x, layer, 0), self.activation)
            x = a * h[layer] + b
            states.append(x)
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                x = F.dropout(x, self.dropout, True)
        h_new = torch.stack(states)
        return (x, h_new) if batched else (x.squeeze(0), h_new.squeeze(1))

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        defaults = {"num_layers": 1, "bias": True, "batch_first": False, "dropout": 0.0,
                    "bidirectional": False, "activation": "g", "scan": "linear"}
        for k, d in defaults.items():
            if getattr(self, k) != d:
                s += f", {k}={getattr(self, k)!r}"
        return s


def _suffix(layer: int, direction: int) -> str:
    return f"_l{layer}" + ("_reverse" if direction else "")


def _last(y: Tensor, lengths: Optional[Tensor]) -> Tensor:
    """Each sequence's state at its last valid step: ``y`` (T, B, H) -> (B, H)."""
    if lengths is None:
        return y[-1]
    index = (lengths - 1).view(1, -1, 1).expand(1, *y.shape[1:])
    return y.gather(0, index).squeeze(0)


_LAYER_DOC = """
    Arguments as ``torch.nn.GRU`` (``input_size, hidden_size, num_layers, bias,
    batch_first, dropout, bidirectional, device, dtype``), plus keyword-only:

    - ``activation``: ``"g"`` (default; the paper's positive candidate, x + 0.5 for
      x >= 0, σ(x) below) or ``"identity"`` (the plain linear candidate, any sign).
    - ``scan``: how the recurrence over time is computed, the same function each way:
      ``"linear"`` (default; chunked, any sign), ``"log"`` (the paper's log-space scan;
      needs ``activation="g"``) or ``"sequential"`` (the loop over time, the reference);
      see :mod:`rnnkit.layers.minimal` for when each is faster.

    ``forward(input, hx=None, *, lengths=None) -> (output, h_n)`` with ``torch.nn.GRU``'s
    shapes: output (T, B, D*H), h_n (L*D, B, H); unbatched and ``PackedSequence`` input
    too. ``lengths``: outputs past a sequence's end are zero, ``h_n`` comes from its last
    valid step, and the reverse direction starts at each sequence's own end.
    ``step(x_t, h)`` advances a unidirectional layer by one token, for generation.
    Parameters ``weight_ih_l{k}`` (G*H, in), ``bias_ih_l{k}`` (G*H), ``_reverse`` for the
    backward direction; no hidden-to-hidden weights.
"""


class MinGRU(_MinimalRecurrent):
    __doc__ = """minGRU layer (Feng et al. 2024): gates ``z, h`` (G = 2) from the input
    alone, ``h_t = (1 - z_t) ⊙ h_{t-1} + z_t ⊙ h̃_t``;
    see :func:`rnnkit.cells.minimal.min_gru_coefficients`.
    """ + _LAYER_DOC

    num_gates = 2
    _coefficients = staticmethod(min_gru_coefficients)
    _log_coefficients = staticmethod(min_gru_log_coefficients)


class MinLSTM(_MinimalRecurrent):
    __doc__ = """minLSTM layer (Feng et al. 2024): gates ``f, i, h`` (G = 3) from the
    input alone, normalised ``f' = f / (f + i)``, ``i' = i / (f + i)``,
    ``h_t = f'_t ⊙ h_{t-1} + i'_t ⊙ h̃_t``; no cell state, ``h_n`` only;
    see :func:`rnnkit.cells.minimal.min_lstm_coefficients`.
    """ + _LAYER_DOC

    num_gates = 3
    _coefficients = staticmethod(min_lstm_coefficients)
    _log_coefficients = staticmethod(min_lstm_log_coefficients)
