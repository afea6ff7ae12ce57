"""The training loop: knows the model, the optimiser and the clock, not the task.

A task supplies four things (see ``rnnkit.tasks.lm`` for one):

- ``batches(start, columns)``: the training batches from step ``start`` on, each with
  ``.reset`` (True where a carried state must start again from zero), restricted to
  this process's batch ``columns``;
- ``loss(model, batch, state) -> (mean loss, new state)``; ``state`` is the recurrent
  state carried in from the previous batch (None at a reset);
- ``evaluate(model, split, max_tokens) -> {"loss": …, …}``;
- ``units(loss) -> {name: value}``: the loss in the task's units (bits per character,
  perplexity) for logs and progress.
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rnnkit.training.averaging import averaging
from rnnkit.training.checkpoint import load_checkpoint, rng_states, save_checkpoint, set_rng_states
from rnnkit.training.config import TrainConfig
from rnnkit.training.distributed import Processes
from rnnkit.training.metrics import MetricsLog, plot_losses
from rnnkit.training.schedule import Schedule

log = logging.getLogger(__name__)
LAST, BEST = "checkpoint.pt", "best.pt"


class StopTraining(Exception):
    """The run cannot go on (a NaN loss, Ctrl-C); the last good checkpoint is kept."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def detach(state):
    """The state's values without their history. Truncated BPTT: the next window starts
    from where this one ended, but backward must stop at the window's first step, or
    each step would backpropagate through the whole stream read so far."""
    return None if state is None else tuple(s.detach() for s in state)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class Trainer:
    def __init__(self, model: nn.Module, task, cfg: TrainConfig, out: Path, *,
                 meta: dict[str, Any], resume: bool = False, progress: bool = True) -> None:
        self.cfg, self.task, self.out, self.meta = cfg, task, Path(out), meta
        self.device = pick_device(cfg.device)
        self.procs = Processes.start(self.device)
        if self.device.type == "cuda" and self.procs.world > 1:
            self.device = torch.device("cuda", self.procs.local_rank)
        self.module = model.to(self.device)
        self.model = self.module
        if self.procs.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(self.module, device_ids=ids)
        self.opt = _optimizer(self.module, cfg)
        self.schedule = Schedule(cfg)
        self.average = averaging(self.module, cfg)
        self.step, self.elapsed, self.stale, self.state = 0, 0.0, 0, None
        self.best: dict[str, float] = {}
        self.progress = progress and self.procs.main
        self.cols = self.procs.columns(cfg.batch_size)
        if resume:
            self._resume()
        else:
            torch.manual_seed(cfg.seed + 1000 * self.procs.rank)  # dropout differs by process
        self.out.mkdir(parents=True, exist_ok=True)
        main = self.procs.main
        self.metrics = MetricsLog(self.out / "metrics.jsonl", self.step) if main else None

    # -- the loop ---------------------------------------------------------------------

    def fit(self) -> dict[str, Any]:
        """Train to ``max_steps`` (or the time budget, or early stopping); return a summary."""
        try:
            return self._fit()
        finally:  # also after Ctrl-C or a NaN: leave the process group
            self.procs.stop()

    def _fit(self) -> dict[str, Any]:
        cfg, task = self.cfg, self.task
        batches = task.batches(self.step, self.cols)
        bar = _progress(self.step, cfg.max_steps, self.progress)
        started, seen, last_log = time.perf_counter(), 0, {}
        try:
            while self.step < cfg.max_steps and not self._out_of_time(started):
                batch = next(batches)
                state = None if batch.reset else detach(self.state)
                self.model.train()
                with self._autocast():
                    loss, self.state = task.loss(self.model, batch, state)
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                # one clip over all parameters; the norm before clipping is what we log
                norm = nn.utils.clip_grad_norm_(self.module.parameters(), cfg.clip or math.inf)
                # each process's loss is its own columns'; the norm is already global
                # (DDP averaged the gradients), so it is not summed over processes
                mean_loss, norm = self.procs.mean(loss.item(), self.device), norm.item()
                if not (math.isfinite(mean_loss) and math.isfinite(norm)):
                    raise StopTraining(f"loss {mean_loss} / gradient norm {norm} at step "
                                       f"{self.step + 1}; {self._kept()}")
                for group in self.opt.param_groups:
                    group["lr"] = self.schedule.lr(self.step)
                self.opt.step()
                self.step += 1
                if self.average:
                    self.average.update(self.module, self.step)
                seen += batch.targets.numel() * self.procs.world
                rate = seen / max(1e-9, time.perf_counter() - started)
                last_log = {"step": self.step, "train_loss": mean_loss, "grad_norm": norm,
                            "lr": self.opt.param_groups[0]["lr"], "tokens_per_s": rate,
                            **task.units(mean_loss),
                            "elapsed_s": round(self.elapsed_now(started), 3)}
                if self.step % cfg.log_every == 0 and self.metrics:
                    self.metrics.write(last_log)
                bar.update(1)
                bar.set_postfix(_short(last_log), refresh=False)
                stop = self._evaluate_and_save(started)
                if stop:
                    break
        except KeyboardInterrupt:
            raise StopTraining(f"interrupted at step {self.step}; {self._kept()}", 130) from None
        finally:
            bar.close()
        if self.step % cfg.checkpoint_every or not self.best:
            self._evaluate_and_save(started, force=True)
        self._plots()
        summary = {"step": self.step, "train_loss": last_log.get("train_loss", math.nan),
                   **{f"val_{k}": v for k, v in self.best.items()}, "out": str(self.out),
                   "elapsed_s": round(self.elapsed_now(started), 1)}
        return summary

    def _evaluate_and_save(self, started: float, force: bool = False) -> bool:
        """Evaluate and checkpoint when due; True when early stopping says stop."""
        cfg, stop = self.cfg, False
        if force or self.step % cfg.eval_every == 0:
            metrics = self.procs.from_main(self._validate() if self.procs.main else None)
            improved = self.schedule.validated(metrics["loss"])
            self.stale = 0 if improved else self.stale + 1
            if improved:
                self.best = metrics
            stop = cfg.patience is not None and self.stale >= cfg.patience
            if self.metrics:
                self.metrics.write({"step": self.step, **{f"val_{k}": v
                                                          for k, v in metrics.items()},
                                    "elapsed_s": round(self.elapsed_now(started), 3)})
            self._save(started, best=improved)
        elif self.step % cfg.checkpoint_every == 0:
            self._save(started, best=False)
        return stop

    def _kept_model(self) -> nn.Module:
        """The weights validation sees and the checkpoint's ``model`` holds."""
        return self.average.model(self.module) if self.average else self.module

    def _validate(self) -> dict[str, float]:
        model = self._kept_model()
        model.eval()
        with torch.no_grad(), self._autocast():
            metrics = self.task.evaluate(model, "valid", self.cfg.eval_tokens)
        return {k: float(v) for k, v in metrics.items()}

    # -- checkpoints ------------------------------------------------------------------

    def _payload(self, started: float) -> dict[str, Any]:
        averaged = {}
        if self.average:  # the live weights too, for an exact resume
            averaged = {"average": self.average.state_dict(),
                        "live_model": self.module.state_dict()}
        return {"step": self.step, "elapsed": self.elapsed_now(started),
                "model": self._kept_model().state_dict(), **averaged,
                "optimizer": self.opt.state_dict(),
                "schedule": self.schedule.state_dict(), "stale": self.stale,
                "best": self.best, "rng": self.procs.gather(rng_states()),
                "state": self.procs.gather_state(self.state), **self.meta}

    def _save(self, started: float, best: bool) -> None:
        payload = self._payload(started)  # every process joins the gathers
        if self.procs.main:
            save_checkpoint(self.out / LAST, payload)
            if best:
                save_checkpoint(self.out / BEST, payload)
            self._plots()

    def _resume(self) -> None:
        ck = load_checkpoint(self.out / LAST)
        if ck.get("task") != self.meta.get("task"):
            raise ValueError(f"the checkpoint in {self.out} is a {ck.get('task')!r} run, "
                             f"not {self.meta.get('task')!r}")
        self.module.load_state_dict(ck.get("live_model", ck["model"]))
        if self.average:
            self.average.load_state_dict(ck.get("average"), ck["model"])
        self.opt.load_state_dict(ck["optimizer"])
        self.schedule.load_state_dict(ck["schedule"])
        self.step, self.elapsed, self.stale = ck["step"], ck["elapsed"], ck["stale"]
        self.best = ck["best"]
        rng = ck["rng"]
        if len(rng) == self.procs.world:
            set_rng_states(rng[self.procs.rank])
        else:  # another number of processes: fresh, but reproducible, streams
            torch.manual_seed(self.cfg.seed + 1000 * self.procs.rank + self.step)
        self.state = self.procs.shard_state(ck["state"], self.cfg.batch_size, self.device)

    def _kept(self) -> str:
        path = self.out / LAST
        if not path.exists():
            return "no checkpoint was written yet"
        return f"the last good checkpoint (step {load_checkpoint(path)['step']}) is in {path}"

    # -- helpers ----------------------------------------------------------------------

    def elapsed_now(self, started: float) -> float:
        return self.elapsed + time.perf_counter() - started

    def _out_of_time(self, started: float) -> bool:
        budget = self.cfg.time_budget
        over = budget is not None and self.elapsed_now(started) >= budget
        return bool(self.procs.from_main(over)) if budget is not None else False

    def _autocast(self):
        amp = self.cfg.amp
        if amp == "bf16" or (amp == "auto" and self.device.type == "cuda"):
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def _plots(self) -> None:
        if not self.procs.main:
            return
        plot_losses(self.out / "metrics.jsonl", self.out / "loss.png")
        flow = getattr(self.task, "plot_gradient_flow", None)
        if flow is not None:
            flow(self.module, self.out / "gradient_flow.png")


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay)
    kind = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return kind(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _short(record: dict[str, Any]) -> dict[str, str]:
    keep = {k: v for k, v in record.items()
            if k not in ("step", "lr", "grad_norm", "elapsed_s")}
    return {k.replace("train_", "").replace("tokens_per_s", "tok/s"):
            (f"{v:.0f}" if k == "tokens_per_s" else f"{v:.3f}") for k, v in keep.items()}


def _progress(start: int, total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=start, disable=not enabled, unit="step",
                dynamic_ncols=True, leave=True)


