"""Training, task-agnostic: the loop, truncated BPTT, clipping, schedules, checkpoints."""

from rnnkit.training.checkpoint import load_checkpoint, save_checkpoint
from rnnkit.training.config import TrainConfig
from rnnkit.training.trainer import StopTraining, Trainer

__all__ = ["TrainConfig", "Trainer", "StopTraining", "load_checkpoint", "save_checkpoint"]
