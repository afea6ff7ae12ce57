"""``rnnkit.RNN``, ``rnnkit.LSTM`` and ``rnnkit.GRU``: ``torch.nn``'s layers and more."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Optional

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rnnkit import _checks, backends
from rnnkit.backends import native
from rnnkit.layers.base import RecurrentBase
from rnnkit.layers.run import run_stack

_EXTRAS_DOC = """
    Keyword-only extras (none of them in ``torch.nn``), each working with stacking,
    bidirectional layers and ``lengths``:

    - ``layer_norm``: layer normalisation (Ba, Kiros & Hinton 2016, arXiv:1607.06450) of
      the input and recurrent gate pre-activations separately and, for LSTM, of the
      cell before the output ``tanh``. Adds ``ln_weight_ih_l*``, ``ln_weight_hh_l*``
      (and ``ln_weight_c_l*``, ``ln_bias_c_l*``).
    - ``recurrent_dropout``: variational dropout of the recurrent state, one mask per
      sequence (Gal & Ghahramani 2016, arXiv:1512.05287). Training only.
    - ``weight_drop``: DropConnect on the hidden-to-hidden matrices (Wan et al. 2013;
      Merity et al. 2017, arXiv:1708.02182). Training only.
    - ``zoneout``: a float, or ``(p_h, p_c)`` for LSTM: each unit keeps its previous
      value with that probability (Krueger et al. 2016, arXiv:1606.01305); in eval mode
      the expectation ``p * previous + (1 - p) * new``.
    - ``forget_bias`` (LSTM): initial forget-gate bias (Jozefowicz et al. 2015).
    - ``backend``: ``"reference"``, ``"fused"``, ``"native"`` or ``"auto"``.

    ``forward(input, hx=None, *, lengths=None)`` takes what ``torch.nn`` takes (batched
    or unbatched tensors, a ``PackedSequence``) plus ``lengths``: a 1-D integer tensor of
    valid lengths for a padded batch. Outputs past a sequence's end are zero, final
    states come from its last valid step, and the reverse direction starts at each
    sequence's own end.
"""


class _Recurrent(RecurrentBase):
    def forward(self, input, hx=None, *, lengths: Optional[Tensor] = None):
        self._check_backend()
        amp = _autocast_device(input)
        x, lengths, batched = self._prepare_input(input, lengths, amp)
        states = self._initial_state(_cast(hx, x.dtype) if amp else hx, x, batched)
        name = backends.choose(self.backend, native_ok=not self.has_extras(), x=x,
                               training=self.training, has_lengths=lengths is not None,
                               mode=self.mode, hidden_size=self.hidden_size,
                               projected=self.proj_size > 0)
        if name == "native":  # under autocast, torch.nn's kernels choose their precision
            out, finals = native.run_stack(
                x, states, self.flat_weights(), mode=self.mode, bias=self.bias,
                num_layers=self.num_layers, dropout=self.dropout, training=self.training,
                bidirectional=self.bidirectional, lengths=lengths)
        else:  # the recurrence in the weights' precision: bf16 state would drift over time
            with torch.autocast(amp, enabled=False) if amp else nullcontext():
                out, finals = run_stack(self, x, states, lengths, backends.per_direction(name))
        if isinstance(input, PackedSequence):
            out = _repack(out, lengths, input)
        elif not batched:
            out, finals = out.squeeze(1), tuple(s.squeeze(1) for s in finals)
        elif self.batch_first:
            out = out.transpose(0, 1)
        return out, (finals if self.mode == "LSTM" else finals[0])

    def _prepare_input(self, input, lengths, amp: Optional[str] = None):
        """Return ``x`` (T, B, I) time-major, checked lengths (or None), batched flag.
        Under autocast (``amp``: its device type) ``x`` is cast to the weights' dtype."""
        if isinstance(input, PackedSequence):
            if lengths is not None:
                raise ValueError("lengths= cannot be combined with a PackedSequence input: "
                                 "the packing already carries the lengths")
            x, lengths = pad_packed_sequence(input)
            batched = True
        else:
            _checks.tensor("input", input)
            if input.dim() not in (2, 3):
                layout = "(B, T, I)" if self.batch_first else "(T, B, I)"
                raise ValueError(f"expected input of shape {layout} or unbatched (T, I), "
                                 f"got {input.dim()}-D {tuple(input.shape)}")
            batched = input.dim() == 3
            x = input if batched else input.unsqueeze(1)
            if batched and self.batch_first:
                x = x.transpose(0, 1)
        if x.shape[-1] != self.input_size:
            given = x if isinstance(input, PackedSequence) else input
            raise ValueError(f"expected input with {self.input_size} features (input_size), "
                             f"got shape {tuple(given.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"input must be a floating-point tensor, got {x.dtype}")
        if amp:
            x = x.to(self.weight_ih_l0.dtype)
        _checks.same_dtype("input", x, self.weight_ih_l0.dtype)
        if x.shape[0] == 0:
            raise ValueError("input has no time steps (sequence length 0)")
        return x, self._check_lengths(lengths, x), batched

    def _check_lengths(self, lengths, x: Tensor) -> Optional[Tensor]:
        if lengths is None:
            return None
        if isinstance(lengths, (list, tuple)):
            lengths = torch.as_tensor(lengths)
        _checks.tensor("lengths", lengths)
        steps, batch = x.shape[:2]
        if lengths.dim() != 1 or lengths.shape[0] != batch:
            raise ValueError(f"expected lengths of shape ({batch},), one per sequence, got "
                             f"{tuple(lengths.shape)}")
        if lengths.dtype.is_floating_point or lengths.dtype == torch.bool:
            raise TypeError(f"lengths must be an integer tensor, got {lengths.dtype}")
        if lengths.device != x.device and lengths.device.type != "cpu":
            raise ValueError(f"lengths must be on the input's device ({x.device}) or the "
                             f"CPU, got {lengths.device}")
        lo, hi = int(lengths.min()), int(lengths.max())
        if lo < 1 or hi > steps:
            raise ValueError(f"lengths must lie in [1, {steps}] (the sequence length), got "
                             f"min {lo}, max {hi}")
        return lengths.to(device=x.device, dtype=torch.long)

    def _initial_state(self, hx, x: Tensor, batched: bool) -> tuple[Tensor, ...]:
        """``hx`` checked and batched, or zeros: ``(h0,)`` or ``(h0, c0)``."""
        ld, batch = self.num_layers * self.num_directions, x.shape[1]
        shapes = [(ld, batch, self.output_size)]
        if self.mode == "LSTM":
            shapes.append((ld, batch, self.hidden_size))
        if hx is None:
            return tuple(x.new_zeros(s) for s in shapes)
        names = ("h0", "c0") if self.mode == "LSTM" else ("hx",)
        if self.mode == "LSTM":
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError(f"LSTM hx must be a tuple (h0, c0), got {type(hx).__name__}")
        else:
            hx = (hx,)
        states = []
        for name, s, shape in zip(names, hx, shapes):
            _checks.tensor(name, s)
            if not batched:
                if s.dim() != 2:
                    raise ValueError(f"for unbatched input expected {name} of shape "
                                     f"(L*D, H) = {(shape[0], shape[2])}, got {tuple(s.shape)}")
                s = s.unsqueeze(1)
            _checks.shape(name, s, shape, "(L*D, B, H)")
            _checks.same_dtype(name, s, x.dtype)
            if s.device != x.device:
                raise ValueError(f"{name} is on {s.device} but the input is on {x.device}")
            states.append(s)
        return tuple(states)


def _autocast_device(input) -> Optional[str]:
    """The device type when autocast is on for the input's device, else None."""
    data = input.data if isinstance(input, PackedSequence) else input
    kind = data.device.type if isinstance(data, Tensor) else "cpu"
    return kind if torch.is_autocast_enabled(kind) else None


def _cast(hx, dtype: torch.dtype):
    """``hx`` (a tensor or a tuple of them, or None) in ``dtype``: a state carried out of an
    autocast region may be in bf16."""
    if isinstance(hx, Tensor):
        return hx.to(dtype) if hx.is_floating_point() else hx
    if isinstance(hx, (tuple, list)):
        return type(hx)(_cast(h, dtype) for h in hx)
    return hx


def _repack(out: Tensor, lengths: Tensor, like: PackedSequence) -> PackedSequence:
    """Pack ``out`` (T, B, F) with the same batch order as the input ``like``."""
    order = like.sorted_indices
    if order is not None:
        out, lengths = out.index_select(1, order), lengths.index_select(0, order)
    data = pack_padded_sequence(out, lengths.cpu(), enforce_sorted=True).data
    return PackedSequence(data, like.batch_sizes, like.sorted_indices, like.unsorted_indices)


class RNN(_Recurrent):
    __doc__ = r"""Elman RNN, drop-in for ``torch.nn.RNN``:
    :math:`h_t = \phi(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})`, ``nonlinearity``
    ``'tanh'`` or ``'relu'``. Arguments as ``torch.nn.RNN``.
    """ + _EXTRAS_DOC

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, device=None, dtype=None,
                 **extras) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        mode = "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU"
        super().__init__(mode, input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, 0, device, dtype, **extras)


class LSTM(_Recurrent):
    __doc__ = """LSTM, drop-in for ``torch.nn.LSTM`` (gates ``i, f, g, o``, ``proj_size``
    included); the step equations are those of :func:`rnnkit.cells.lstm_step`.
    Arguments as ``torch.nn.LSTM``.
    """ + _EXTRAS_DOC

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, device=None, dtype=None,
                 **extras) -> None:
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, proj_size, device, dtype, **extras)


class GRU(_Recurrent):
    __doc__ = """GRU, drop-in for ``torch.nn.GRU`` (gates ``r, z, n``); the step equations
    are those of :func:`rnnkit.cells.gru_step`. Arguments as ``torch.nn.GRU``.
    """ + _EXTRAS_DOC

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device=None, dtype=None, **extras) -> None:
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, 0, device, dtype, **extras)
