"""What every per-direction backend receives: the state and the random masks."""

from __future__ import annotations

from typing import NamedTuple, Optional

from torch import Tensor

from rnnkit.cells._common import Keep

State = tuple[Tensor, ...]  # (h,) for RNN and GRU, (h, c) for LSTM


class Masks(NamedTuple):
    """The random masks of one layer and direction, drawn once per forward call.

    ``drop``: variational recurrent dropout mask (B, H_out), already scaled by 1/(1-p),
    or None. ``keep_h``/``keep_c``: zoneout keep masks (T, B, H_out)/(T, B, H) of
    {0, 1} in training, or the zoneout probability (a float) in evaluation.
    """

    drop: Optional[Tensor] = None
    keep_h: Keep = 0.0
    keep_c: Keep = 0.0
