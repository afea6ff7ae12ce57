"""Weight averaging: evaluate and keep an average of the weights along the training path.

SGD at a high learning rate (the word models' lr 20) wanders around a minimum rather
than settling into it; the average of the recent weights sits nearer the middle and
usually validates better than any single step (Polyak averaging; AWD-LSTM's averaged
SGD; Izmailov et al.'s SWA). Two kinds, both kept by ``torch.optim.swa_utils``:

- ``ema``: an exponential moving average, ``avg ← decay·avg + (1 − decay)·w``, which
  forgets early weights on its own (a horizon of about 1 / (1 − decay) steps);
- ``uniform``: the plain mean of the weights of every step from ``average_start`` on.

Training updates the live weights as usual; validation, ``best.pt`` and the weights a
finished run leaves (the checkpoint's ``model``) are the average once it has started.
The live weights go into the checkpoint too, so a resumed run goes on exactly.
"""

from __future__ import annotations

from typing import Any, Optional

from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from rnnkit.training.config import TrainConfig


class WeightAverage:
    """The average of ``module``'s weights from step ``cfg.average_start`` on."""

    def __init__(self, module: nn.Module, cfg: TrainConfig) -> None:
        self.start = cfg.average_start
        fn = get_ema_multi_avg_fn(cfg.ema_decay) if cfg.average == "ema" else None
        self.avg = AveragedModel(module, multi_avg_fn=fn)

    @property
    def active(self) -> bool:
        return int(self.avg.n_averaged) > 0

    def update(self, module: nn.Module, step: int) -> None:
        """Fold in the weights after optimiser step ``step`` (1-based)."""
        if step > self.start:
            self.avg.update_parameters(module)

    def model(self, module: nn.Module) -> nn.Module:
        """The weights to evaluate and keep: the average once it has started."""
        return self.avg.module if self.active else module

    def state_dict(self) -> dict[str, Any]:
        return {"n": int(self.avg.n_averaged)}

    def load_state_dict(self, state: Optional[dict[str, Any]], weights: dict) -> None:
        """Restore from a checkpoint whose ``model`` holds the average (``weights``)."""
        n = 0 if state is None else int(state["n"])
        self.avg.n_averaged.fill_(n)
        if n:
            self.avg.module.load_state_dict(weights)


def averaging(module: nn.Module, cfg: TrainConfig) -> Optional[WeightAverage]:
    return None if cfg.average == "off" else WeightAverage(module, cfg)
