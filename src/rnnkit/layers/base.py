"""The stacked, bidirectional recurrent layer: parameters, options and random masks.

Parameters are named and shaped exactly as in ``torch.nn`` (``weight_ih_l0``,
``weight_hh_l0_reverse``, ``weight_hr_l1``, …) so a ``state_dict`` moves both ways.
The extras add their own parameters: ``ln_weight_ih_l0``/``ln_weight_hh_l0`` (gains of
the gate layer norms) and, for LSTM, ``ln_weight_c_l0``/``ln_bias_c_l0`` (cell norm).
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Optional, Union

import torch
from torch import Tensor, nn

from rnnkit import _checks
from rnnkit.backends import BACKENDS
from rnnkit.backends.spec import Masks
from rnnkit.cells import Weights
from rnnkit.layers.dropout import dropout_mask, keep_mask

GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


class RecurrentBase(nn.Module):
    """Shared by :class:`rnnkit.RNN`, :class:`rnnkit.LSTM` and :class:`rnnkit.GRU`."""

    def __init__(
        self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1,
        bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
        bidirectional: bool = False, proj_size: int = 0, device=None, dtype=None, *,
        layer_norm: bool = False, recurrent_dropout: float = 0.0, weight_drop: float = 0.0,
        zoneout: Union[float, tuple[float, float]] = 0.0, forget_bias: Optional[float] = None,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.mode = mode
        self.input_size = _checks.positive_int("input_size", input_size)
        self.hidden_size = _checks.positive_int("hidden_size", hidden_size)
        self.num_layers = _checks.positive_int("num_layers", num_layers)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dropout = _checks.probability("dropout", dropout, allow_one=True)
        self.bidirectional = bool(bidirectional)
        self.proj_size = _checks.positive_int("proj_size", proj_size, minimum=0)
        if self.proj_size and mode != "LSTM":
            raise ValueError(f"proj_size is only supported by LSTM, got proj_size={proj_size}")
        if self.proj_size >= self.hidden_size:
            raise ValueError(f"proj_size must be smaller than hidden_size ({hidden_size}), "
                             f"got {proj_size}")
        if self.dropout > 0 and self.num_layers == 1:
            warnings.warn("dropout acts between stacked layers: with num_layers=1 it does "
                          "nothing", stacklevel=3)
        self.layer_norm = bool(layer_norm)
        self.recurrent_dropout = _checks.probability("recurrent_dropout", recurrent_dropout)
        self.weight_drop = _checks.probability("weight_drop", weight_drop)
        self.zoneout_h, self.zoneout_c = _zoneout_pair(zoneout, mode)
        if forget_bias is not None and mode != "LSTM":
            raise ValueError(f"forget_bias is only for LSTM, got forget_bias={forget_bias}")
        if forget_bias is not None and not bias:
            raise ValueError("forget_bias needs bias=True")
        self.forget_bias = forget_bias
        self.backend = backend
        self._check_backend()
        self._make_parameters(torch.device(device) if device else None, dtype)
        self.reset_parameters()
        self.flatten_parameters()

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def output_size(self) -> int:
        """Size of each direction's output and hidden state (proj_size if projected)."""
        return self.proj_size or self.hidden_size

    def has_extras(self) -> bool:
        """True when an option beyond ``torch.nn``'s is on."""
        return bool(self.layer_norm or self.recurrent_dropout or self.weight_drop
                    or self.zoneout_h or self.zoneout_c)

    def _check_backend(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.backend == "native" and self.has_extras():
            raise ValueError("backend='native' runs only torch.nn's options; layer_norm, "
                             "recurrent_dropout, weight_drop and zoneout need 'fused', "
                             "'reference' or 'auto'")

    def _names(self, layer: int, direction: int) -> dict[str, str]:
        sfx = f"_l{layer}" + ("_reverse" if direction else "")
        keys = ["weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr",
                "ln_weight_ih", "ln_weight_hh", "ln_weight_c", "ln_bias_c"]
        return {k: k + sfx for k in keys}

    def _make_parameters(self, device, dtype) -> None:
        gh = GATES[self.mode] * self.hidden_size
        factory = {"device": device, "dtype": dtype}
        self._flat_weights_names: list[str] = []
        for layer in range(self.num_layers):
            in_size = self.input_size if layer == 0 else self.output_size * self.num_directions
            for direction in range(self.num_directions):
                n = self._names(layer, direction)
                shapes = {n["weight_ih"]: (gh, in_size), n["weight_hh"]: (gh, self.output_size)}
                if self.bias:
                    shapes.update({n["bias_ih"]: (gh,), n["bias_hh"]: (gh,)})
                if self.proj_size:
                    shapes[n["weight_hr"]] = (self.proj_size, self.hidden_size)
                self._flat_weights_names.extend(shapes)
                if self.layer_norm:
                    shapes.update({n["ln_weight_ih"]: (gh,), n["ln_weight_hh"]: (gh,)})
                    if self.mode == "LSTM":
                        shapes.update({n["ln_weight_c"]: (self.hidden_size,),
                                       n["ln_bias_c"]: (self.hidden_size,)})
                for name, shape in shapes.items():
                    self.register_parameter(name, nn.Parameter(torch.empty(shape, **factory)))

    def reset_parameters(self) -> None:
        """``torch.nn``'s initialisation: uniform in (-1/sqrt(H), 1/sqrt(H)); layer-norm
        gains 1 and biases 0; then the forget-gate bias (Jozefowicz et al. 2015), if set,
        in ``bias_ih`` with ``bias_hh``'s forget part zeroed, so their sum is ``forget_bias``."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        H = self.hidden_size
        for name, p in self.named_parameters():
            with torch.no_grad():
                if name.startswith("ln_"):
                    p.fill_(0.0 if name.startswith("ln_bias") else 1.0)
                else:
                    p.uniform_(-bound, bound)
                if self.forget_bias is not None and name.startswith("bias_ih"):
                    p[H:2 * H] = self.forget_bias
                if self.forget_bias is not None and name.startswith("bias_hh"):
                    p[H:2 * H] = 0.0

    def flatten_parameters(self) -> None:
        """As in ``torch.nn``: on a CUDA device, lay the ``torch.nn`` weights out in one
        block in cuDNN's order (each parameter a view into it), so cuDNN takes them as
        they are instead of copying them at every call (and warning that it does). A no-op
        elsewhere, and where cuDNN never runs (the extras, or ``backend`` fused or
        reference)."""
        weights = self.flat_weights()
        if self.has_extras() or self.backend not in ("auto", "native") or not weights:
            return
        first = weights[0]
        if any(not w.is_cuda or w.dtype != first.dtype or not torch.backends.cudnn.is_acceptable(w)
               for w in weights):
            return
        if len({w.data_ptr() for w in weights}) != len(weights):
            return  # aliased parameters: leave them (cuDNN copies, as for torch.nn)
        from torch.backends.cudnn import rnn as cudnn_rnn

        with torch.cuda.device_of(first), torch.no_grad():
            if torch._use_cudnn_rnn_flatten_weight():
                torch._cudnn_rnn_flatten_weight(
                    weights, (4 if self.bias else 2) + (1 if self.proj_size else 0),
                    self.input_size, cudnn_rnn.get_cudnn_mode(self.mode), self.hidden_size,
                    self.proj_size, self.num_layers, self.batch_first, self.bidirectional)

    def _apply(self, fn, recurse=True):
        result = super()._apply(fn, recurse)
        self.flatten_parameters()  # after .cuda(), .to(...), .half(): as torch.nn does
        return result

    @property
    def all_weights(self) -> list[list[Tensor]]:
        """As in ``torch.nn``: the weights of each layer and direction, in flat order."""
        per = len(self._flat_weights_names) // (self.num_layers * self.num_directions)
        ws = self.flat_weights()
        return [ws[i:i + per] for i in range(0, len(ws), per)]

    def flat_weights(self) -> list[Tensor]:
        """The ``torch.nn`` parameters in ``torch.nn``'s flat order (for native kernels)."""
        return [getattr(self, n) for n in self._flat_weights_names]

    def direction_weights(self, layer: int, direction: int) -> Weights:
        """The weights of one layer and direction, DropConnect applied in training."""
        n = self._names(layer, direction)
        get = {k: getattr(self, v, None) for k, v in n.items()}
        w_hh = get["weight_hh"]
        if self.weight_drop and self.training:
            # DropConnect on the recurrent matrix (Merity et al. 2017, arXiv:1708.02182):
            # one mask per forward call, shared by every time step.
            w_hh = w_hh * dropout_mask(w_hh, self.weight_drop)
        return Weights(get["weight_ih"], w_hh, get["bias_ih"], get["bias_hh"],
                       get["weight_hr"], get["ln_weight_ih"], get["ln_weight_hh"],
                       get["ln_weight_c"], get["ln_bias_c"])

    def draw_masks(self, steps: int, batch: int, like: Tensor) -> Masks:
        """Recurrent-dropout and zoneout masks for one direction (one forward call)."""
        if not self.training:
            return Masks(None, self.zoneout_h, self.zoneout_c)
        drop = None
        if self.recurrent_dropout:
            # Variational dropout (Gal & Ghahramani 2016, arXiv:1512.05287): one mask
            # per sequence, the same at every time step.
            drop = dropout_mask(like.new_empty(batch, self.output_size),
                                self.recurrent_dropout)
        keep_h = _zoneout_mask((steps, batch, self.output_size), self.zoneout_h, like)
        keep_c = _zoneout_mask((steps, batch, self.hidden_size), self.zoneout_c, like)
        return Masks(drop, keep_h, keep_c)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        defaults = {"proj_size": 0, "num_layers": 1, "bias": True, "batch_first": False,
                    "dropout": 0.0, "bidirectional": False, "layer_norm": False,
                    "recurrent_dropout": 0.0, "weight_drop": 0.0, "zoneout_h": 0.0,
                    "zoneout_c": 0.0, "forget_bias": None, "backend": "auto"}
        for k, d in defaults.items():
            if getattr(self, k) != d:
                s += f", {k}={getattr(self, k)!r}"
        return s


def _zoneout_mask(shape: tuple[int, ...], p: float, like: Tensor):
    """{0, 1} keep mask, 1 with probability p; 0.0 (nothing kept) when p is 0."""
    return keep_mask(shape, p, dtype=like.dtype, device=like.device) if p else 0.0


def _zoneout_pair(zoneout, mode: str) -> tuple[float, float]:
    if isinstance(zoneout, (tuple, list)):
        if len(zoneout) != 2:
            raise ValueError(f"zoneout must be a float or a pair (h, c), got {zoneout!r}")
        zh, zc = zoneout
    elif isinstance(zoneout, numbers.Real):
        zh = zc = zoneout
    else:
        raise TypeError(f"zoneout must be a float or a pair (h, c), got {zoneout!r}")
    zh = _checks.probability("zoneout (h)", zh)
    zc = _checks.probability("zoneout (c)", zc)
    return zh, (zc if mode == "LSTM" else 0.0)
