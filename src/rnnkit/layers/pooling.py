"""Pooling a recurrent layer's outputs over time into one vector per sequence.

Given the outputs ``y`` (B, T, D) of a padded batch and the valid ``lengths`` (B,):

- ``last``: the final state of each direction; forward ``y[b, len_b - 1, :H]`` and, when
  bidirectional, backward ``y[b, 0, H:]`` (where the reverse direction ends), which is
  the layer's ``h_n`` of its last layer;
- ``mean``: ``Σ_{t < len_b} y[b, t] / len_b``;
- ``max``: the element-wise maximum over the valid steps (Collobert et al. 2011);
- ``meanmax``: ``[mean; max]``, twice the size (the concat pooling of Howard & Ruder
  2018, less its last state): max picks the strongest evidence, while mean passes a
  gradient to every step, which trains the embeddings of long texts faster;
- ``attention``: ``u_t = tanh(W y_t + b)``, ``α = softmax_t(v · u_t)`` over the valid
  steps, ``Σ_t α_t y_t`` (Bahdanau et al. 2015; Yang et al. 2016).

Steps past a sequence's end never reach the result.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

MODES = ("last", "mean", "max", "meanmax", "attention")


def _valid(lengths: Tensor, steps: int) -> Tensor:
    """(B, T, 1) True at the valid steps of each sequence."""
    t = torch.arange(steps, device=lengths.device)
    return (t.unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(-1)


class Pooling(nn.Module):
    """``forward(y, lengths) -> (B, out_size)``: ``out_size`` is ``size`` (D), or 2D for
    ``meanmax``; ``directions`` (1 or 2) matters to ``last`` only, ``attention_size`` (the
    size of ``u_t``) to ``attention`` only."""

    def __init__(self, mode: str, size: int, *, directions: int = 1,
                 attention_size: int = 64) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"pooling must be one of {', '.join(MODES)}, got {mode!r}")
        if directions not in (1, 2) or size % directions:
            raise ValueError(f"expected 1 or 2 directions dividing size {size}, got {directions}")
        self.mode, self.size, self.directions = mode, size, directions
        self.out_size = 2 * size if mode == "meanmax" else size
        if mode == "attention":
            self.project = nn.Linear(size, attention_size)
            self.score = nn.Linear(attention_size, 1, bias=False)

    def forward(self, y: Tensor, lengths: Tensor) -> Tensor:
        if y.dim() != 3 or y.shape[-1] != self.size:
            raise ValueError(f"expected outputs of shape (B, T, {self.size}), got {tuple(y.shape)}")
        lengths = lengths.to(y.device)
        if self.mode == "last":
            return self.last(y, lengths)
        if self.mode == "attention":
            return (self.weights(y, lengths).unsqueeze(-1) * y).sum(1)
        valid = _valid(lengths, y.shape[1])  # (B, T, 1)
        pooled = []
        if self.mode in ("mean", "meanmax"):
            pooled.append((y * valid).sum(1) / lengths.unsqueeze(1).to(y.dtype))  # (B, D)
        if self.mode in ("max", "meanmax"):
            pooled.append(y.masked_fill(~valid, float("-inf")).amax(1))  # (B, D)
        return torch.cat(pooled, dim=-1) if len(pooled) > 1 else pooled[0]

    def last(self, y: Tensor, lengths: Tensor) -> Tensor:
        h = self.size // self.directions
        rows = torch.arange(y.shape[0], device=y.device)
        forward = y[rows, lengths - 1, :h]  # (B, H): each sequence's own last step
        if self.directions == 1:
            return forward
        return torch.cat([forward, y[:, 0, h:]], dim=-1)  # (B, 2H)

    def weights(self, y: Tensor, lengths: Tensor) -> Tensor:
        """Attention weights α (B, T): zero past each end, summing to one."""
        scores = self.score(torch.tanh(self.project(y))).squeeze(-1)  # (B, T)
        valid = _valid(lengths.to(y.device), y.shape[1]).squeeze(-1)
        return torch.softmax(scores.masked_fill(~valid, float("-inf")), dim=1)
