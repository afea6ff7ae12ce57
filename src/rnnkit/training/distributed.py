"""Several processes with ``torchrun``: one process per device, gradients averaged by
DistributedDataParallel (gloo on CPU, nccl on GPU).

Every process reads its own share of each global batch: rank r of N takes batch columns
r·B/N … (r+1)·B/N - 1. A carried recurrent state (tensors with the batch in dim 1, the
``torch.nn`` layout of ``h_0``) is gathered back into global-batch order for the
checkpoint, so a checkpoint written by N processes resumes in any number of them.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.distributed as dist
from torch import Tensor

log = logging.getLogger(__name__)

# whether this process joined a process group (a worker started by torchrun)
_joined = False


@dataclass
class Processes:
    """This process's place among the processes of one run (a single one by default)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def start(cls, device: torch.device) -> "Processes":
        """From torchrun's environment; a single process when it is not set."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls()
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if device.type == "cuda":
            # nccl's object collectives (broadcast, gather) and a task's ``.to("cuda")``
            # use the current device; left at cuda:0, every process would share one GPU
            torch.cuda.set_device(local_rank)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        global _joined
        _joined = True
        return cls(dist.get_rank(), world, local_rank)

    def columns(self, batch_size: int) -> slice:
        """This process's share of a global batch of ``batch_size`` columns."""
        if batch_size % self.world:
            raise ValueError(f"batch_size {batch_size} does not split evenly over "
                             f"{self.world} processes")
        n = batch_size // self.world
        return slice(self.rank * n, (self.rank + 1) * n)

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        """Element-wise sum over processes."""
        if self.world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return t.tolist()

    def mean(self, value: float, device: torch.device) -> float:
        """The mean over processes of a per-process value, such as the loss of this
        process's columns. Equal shares of the batch make it the global batch's mean.
        Not for what is already global: after DDP's allreduce every process holds the
        same averaged gradients, so their norm must not be summed again."""
        return self.sum([value], device)[0] / self.world

    def from_main(self, obj: Any) -> Any:
        """``obj`` as the main process has it."""
        if self.world == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list[Any]:
        """Every process's ``obj``, in rank order."""
        if self.world == 1:
            return [obj]
        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def gather_state(self, state) -> Optional[tuple[Tensor, ...]]:
        """The carried state of the global batch (batch in dim 1), on the CPU."""
        if state is None:
            return None
        parts = self.gather(tuple(s.detach().cpu() for s in state))
        return tuple(torch.cat(pieces, dim=1) for pieces in zip(*parts))

    def shard_state(self, state, batch_size: int, device: torch.device):
        """This process's columns of a checkpoint's global carried state, on ``device``.

        None (a zero state) when the checkpoint was written with another batch size:
        ``batchify`` then cuts the text into other streams, and column j's state would
        belong to a different stream (or not exist)."""
        if state is None:
            return None
        if any(s.shape[1] != batch_size for s in state):
            log.warning("the checkpoint carries a state for batch_size %d, not %d; the "
                        "streams start again from a zero state", state[0].shape[1],
                        batch_size)
            return None
        cols = self.columns(batch_size)
        return tuple(s[:, cols].to(device) for s in state)

    def stop(self) -> None:
        """Leave the process group (torch warns at exit when a group is left open)."""
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def exit_worker(code: int) -> None:
    """In a process that joined a process group, exit with ``code`` now, skipping the
    interpreter's teardown; elsewhere do nothing.

    Once a DistributedDataParallel has been built, the gloo process group's worker
    threads outlive ``destroy_process_group`` (and the DDP itself). A worker still
    dropping its last collective's tensors when the interpreter shuts down needs the
    interpreter's lock, and the process aborts ("terminate called without an active
    exception"): rarely, on a loaded machine, after a run that ended well. Everything
    the run writes is closed by then (files are written whole), so only the standard
    streams need flushing."""
    if not _joined:
        return
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
