"""One generic way to run a cell over time: lengths, reverse, bidirectional, stacked.

Written once for every cell type and every per-direction backend.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from torch.nn import functional as F

from rnnkit.backends.spec import Masks, State


def reverse_padded(x: Tensor, lengths: Optional[Tensor]) -> Tensor:
    """Reverse each sequence of ``x`` (T, B, F) within its own length.

    Padding stays where it is, so the reverse direction starts at each sequence's own
    end (the classic bug of flipping the whole padded batch, pytorch#517). An involution.
    """
    if lengths is None:
        return x.flip(0)
    t = torch.arange(x.shape[0], device=x.device).unsqueeze(1)  # (T, 1)
    index = torch.where(t < lengths, lengths - 1 - t, t)  # (T, B)
    return x.gather(0, index.unsqueeze(-1).expand_as(x))


def valid_mask(lengths: Optional[Tensor], steps: int) -> Optional[Tensor]:
    """(T, B, 1) bool: True where step t is inside sequence b."""
    if lengths is None:
        return None
    return (torch.arange(steps, device=lengths.device).unsqueeze(1) < lengths).unsqueeze(-1)


def run_stack(module, x: Tensor, hx: State, lengths: Optional[Tensor], run_direction,
              state_hook=None) -> tuple[Tensor, State]:
    """Run every layer and direction of ``module`` over ``x`` (T, B, I), time-major.

    ``hx`` holds ``(h0,)`` or ``(h0, c0)`` with shape (L*D, B, ·). The random masks of
    each direction are drawn just before it runs, and inter-layer dropout after each
    layer but the last, so every backend consumes the generator in the same order.

    A backend that runs faster with the longest sequences first (``longest_first``, the
    fused one on the CPU) gets the batch sorted once here for the whole stack, and the
    outputs and final states back in the caller's order. The masks are still drawn in
    the caller's order, then sorted with the batch, so a seed gives the same run.
    """
    order = _longest_first(lengths, x, run_direction)
    if order is not None:
        x, lengths = x.index_select(1, order), lengths.index_select(0, order)
        hx = tuple(s.index_select(1, order) for s in hx)
    valid = valid_mask(lengths, x.shape[0])
    finals: list[State] = []
    layer_input = x
    for layer in range(module.num_layers):
        outputs = []
        for direction in range(module.num_directions):
            index = layer * module.num_directions + direction
            weights = module.direction_weights(layer, direction)
            masks = module.draw_masks(layer_input.shape[0], layer_input.shape[1], x)
            masks = masks if order is None else _sorted_masks(masks, order)
            state = tuple(s[index] for s in hx)
            seq = layer_input if direction == 0 else reverse_padded(layer_input, lengths)
            extra = {}
            if state_hook is not None:
                extra["state_hook"] = _bind(state_hook, layer, direction)
            y, final = run_direction(seq, state, weights, module.mode, masks, valid, **extra)
            outputs.append(y if direction == 0 else reverse_padded(y, lengths))
            finals.append(final)
        layer_input = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=-1)
        if module.dropout > 0 and module.training and layer < module.num_layers - 1:
            layer_input = _dropout(layer_input, module.dropout, order)
    states = tuple(torch.stack([f[k] for f in finals]) for k in range(len(hx)))
    if order is not None:  # back to the caller's order
        back = torch.argsort(order)
        layer_input = layer_input.index_select(1, back)
        states = tuple(s.index_select(1, back) for s in states)
    return layer_input, states


def _longest_first(lengths: Optional[Tensor], x: Tensor, run_direction) -> Optional[Tensor]:
    """The batch order putting longer sequences first (stable), for a backend that asks
    for it on this device; None when not needed or already so."""
    wants = getattr(run_direction, "longest_first", None)
    if lengths is None or wants is None or not wants(x):
        return None
    if bool((lengths[:-1] >= lengths[1:]).all()):
        return None
    return torch.argsort(lengths, descending=True, stable=True)


def _sorted_masks(masks: Masks, order: Tensor) -> Masks:
    """``masks`` (drawn in the caller's batch order) with their batch rows in ``order``."""
    drop, keep_h, keep_c = (m.index_select(dim, order) if isinstance(m, Tensor) else m
                            for m, dim in zip(masks, (0, 1, 1)))
    return Masks(drop, keep_h, keep_c)


def _dropout(x: Tensor, p: float, order: Optional[Tensor]) -> Tensor:
    """Inter-layer dropout of ``x`` (T, B, F) in training. With the batch sorted, the mask
    is drawn as ``F.dropout`` would draw it for the caller's order (the same numbers from
    the generator: they depend only on the shape), then sorted with the batch."""
    if order is None:
        return F.dropout(x, p, True)
    mask = F.dropout(torch.ones_like(x), p, True)  # {0, 1/(1-p)}, in the caller's order
    return x * mask.index_select(1, order)


def _bind(state_hook, layer: int, direction: int):
    return lambda t, state: state_hook(layer, direction, t, state)
