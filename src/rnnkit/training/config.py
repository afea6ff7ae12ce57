"""The training section of a run's config (``[train]`` in the TOML files)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from rnnkit.config import in_unit_interval, non_negative, option, positive


@dataclass
class TrainConfig:
    batch_size: int = option(32, "sequences (or parallel streams) per step, over all processes")
    bptt: int = option(100, "truncated BPTT window: time steps per step, the state "
                            "carried (detached) from one window into the next")
    max_steps: int = option(2000, "optimiser steps in all (a resumed run continues to it)")
    time_budget: Optional[float] = option(None, "stop after this many seconds of training "
                                                "(all sessions of a resumed run together)")
    optimizer: Literal["adamw", "adam", "sgd"] = option("adamw", "optimiser")
    lr: float = option(3e-3, "peak learning rate")
    weight_decay: float = option(0.0, "decoupled weight decay (AdamW) or L2 (Adam, SGD)")
    momentum: float = option(0.0, "SGD momentum")
    clip: Optional[float] = option(1.0, "clip the gradient's global L2 norm to this "
                                        "(none: no clipping; the norm is logged either way)")
    schedule: Literal["cosine", "plateau", "constant"] = option(
        "cosine", "learning rate after warm-up: cosine decay to min_lr_ratio × lr at "
                  "max_steps, divided by plateau_factor when validation stops improving, "
                  "or constant")
    warmup_steps: int = option(50, "linear warm-up from 0 to lr over this many steps")
    min_lr_ratio: float = option(0.1, "cosine: the final learning rate as a share of lr")
    plateau_factor: float = option(4.0, "plateau: divide the learning rate by this")
    average: Literal["off", "ema", "uniform"] = option(
        "off", "evaluate and keep an average of the weights: an exponential moving "
               "average (ema_decay) or the plain mean from average_start on")
    average_start: int = option(0, "average the weights after this many steps")
    ema_decay: float = option(0.999, "ema: the average's decay per step (a horizon of "
                                     "about 1 / (1 - decay) steps)")
    patience: Optional[int] = option(None, "early stopping: stop after this many "
                                           "evaluations without a better validation loss")
    eval_every: int = option(200, "evaluate on the validation split every N steps")
    eval_tokens: Optional[int] = option(None, "evaluate on at most this many validation "
                                              "tokens (none: the whole split)")
    checkpoint_every: int = option(200, "write the checkpoint every N steps (and at the end)")
    log_every: int = option(10, "write training metrics every N steps")
    seed: int = option(0, "random seed for initialisation, dropout and sampling")
    deterministic: bool = option(False, "deterministic algorithms only (slower on GPU)")
    amp: Literal["auto", "bf16", "off"] = option("auto", "bf16 autocast: auto = on CUDA only")
    device: str = option("auto", "auto (CUDA when available), cpu, cuda, cuda:1, …")

    def __post_init__(self) -> None:
        positive(self, "batch_size", "bptt", "max_steps", "lr", "eval_every",
                 "checkpoint_every", "log_every", "plateau_factor")
        non_negative(self, "weight_decay", "momentum", "warmup_steps", "min_lr_ratio",
                     "average_start")
        in_unit_interval(self, "ema_decay")
        for name in ("time_budget", "clip", "patience", "eval_tokens"):
            if getattr(self, name) is not None:
                positive(self, name)
