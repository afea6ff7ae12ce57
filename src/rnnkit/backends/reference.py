"""The reference backend: the cell's step function, stepped over time with autograd.

Readable and slow; every faster backend is tested against it.
"""

from __future__ import annotations

from functools import partial
from typing import Callable, Optional

import torch
from torch import Tensor

from rnnkit.backends.spec import Masks, State
from rnnkit.cells import Weights, gru_step, lstm_step, rnn_step

STEPS: dict[str, Callable] = {
    "LSTM": lstm_step,
    "GRU": gru_step,
    "RNN_TANH": partial(rnn_step, nonlinearity="tanh"),
    "RNN_RELU": partial(rnn_step, nonlinearity="relu"),
}

#: ``hook(t, state) -> state``, called on each new state (diagnostics use it to probe
#: the gradient with respect to every hidden state).
StateHook = Callable[[int, State], State]


def run_direction(
    x: Tensor,
    state: State,
    w: Weights,
    mode: str,
    masks: Masks,
    valid: Optional[Tensor],
    state_hook: Optional[StateHook] = None,
) -> tuple[Tensor, State]:
    """Run one direction of one layer forward in time.

    ``x`` (T, B, I); ``state`` ``(h,)`` or ``(h, c)``; ``valid`` (T, B, 1) bool or None.
    Past a sequence's end its state is carried unchanged and its output is zero.
    Returns the outputs (T, B, H_out) and the final state.
    """
    step = STEPS[mode]
    outputs = []
    for t in range(x.shape[0]):
        keep_h = masks.keep_h[t] if isinstance(masks.keep_h, Tensor) else masks.keep_h
        keep_c = masks.keep_c[t] if isinstance(masks.keep_c, Tensor) else masks.keep_c
        new = step(x[t], state, w, masks.drop, keep_h, keep_c)
        if valid is not None:
            new = tuple(torch.where(valid[t], n, s) for n, s in zip(new, state))
        if state_hook is not None:
            new = state_hook(t, new)
        state = new
        outputs.append(state[0] if valid is None else state[0] * valid[t])
    return torch.stack(outputs), state
