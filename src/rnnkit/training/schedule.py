"""Learning-rate schedules: linear warm-up, then cosine decay, plateau decay or constant.

1) warm-up: lr · s / warmup_steps for the first ``warmup_steps`` steps;
2) cosine: from lr down to min_lr_ratio · lr at ``max_steps`` (Loshchilov & Hutter 2017);
   plateau: lr, divided by ``plateau_factor`` each time validation fails to improve;
   constant: lr.

The state is two numbers (the plateau scale and the best validation loss), saved in the
checkpoint, so a resumed run has the same learning rate at every step.
"""

from __future__ import annotations

import math

from rnnkit.training.config import TrainConfig


class Schedule:
    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.scale = 1.0  # the plateau's accumulated division
        self.best = math.inf

    def lr(self, step: int) -> float:
        """The learning rate for optimiser step ``step`` (0-based)."""
        c = self.cfg
        if step < c.warmup_steps:
            return c.lr * (step + 1) / c.warmup_steps
        if c.schedule == "cosine":
            span = max(1, c.max_steps - c.warmup_steps)
            progress = min(1.0, (step - c.warmup_steps) / span)
            low = c.min_lr_ratio
            return c.lr * (low + (1 - low) * 0.5 * (1 + math.cos(math.pi * progress)))
        return c.lr * self.scale

    def validated(self, loss: float) -> bool:
        """Record a validation loss; True when it is the best so far."""
        if loss < self.best:
            self.best = loss
            return True
        if self.cfg.schedule == "plateau":
            self.scale /= self.cfg.plateau_factor
        return False

    def state_dict(self) -> dict:
        return {"scale": self.scale, "best": self.best}

    def load_state_dict(self, state: dict) -> None:
        self.scale, self.best = float(state["scale"]), float(state["best"])
