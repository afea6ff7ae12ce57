"""What every task's runs share: opening a run directory to train or resume, finding a
run's checkpoint, reading it, loading weights.

Each refusal is one line (a ``ValueError``), which the command line prints as is.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

import torch
from torch import nn

from rnnkit import config as configs
from rnnkit.training import load_checkpoint
from rnnkit.training.trainer import BEST, LAST

log = logging.getLogger(__name__)


def open_run(out: Path, cfg, resume: bool, read: Callable[[Path], dict[str, Any]],
             sections: Sequence[str] = ("model",), task: Optional[str] = None
             ) -> Optional[dict[str, Any]]:
    """Before anything is built or written: the last checkpoint of the run in ``out``
    when resuming (``read`` reads it), None for a new run.

    Refused: ``out`` a file; a new run where ``out`` already holds one; resuming a run of
    another ``task``, or with other settings in ``sections`` of ``cfg`` (the weights'
    shapes and meaning). Also sets up deterministic mode when ``cfg.train`` asks for it."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a directory")
    ck = None
    if resume:
        ck = read(out / LAST)
        if task is not None and ck["task"] != task:
            raise ValueError(f"{out} holds a {ck['task']} run, not {task}; resume it with "
                             f"rnnkit train {ck['task']} --resume")
        _check_same_settings(ck, cfg, out, sections)
        if ck.get("step", 0) >= cfg.train.max_steps:
            log.warning("the run in %s is already at step %s; pass --max-steps above it to "
                        "train further", out, ck.get("step"))
    elif (out / LAST).exists() or (out / BEST).exists():
        raise ValueError(f"{out} already holds a run; pass --resume to continue it, or "
                         "choose another --out")
    if cfg.train.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    return ck


def _check_same_settings(ck: dict[str, Any], cfg, out: Path, sections: Sequence[str]) -> None:
    changed = []
    for section in sections:
        new = configs.to_dict(getattr(cfg, section))
        # a key the run lacks is an option added since, whose default keeps the old model
        defaults = configs.to_dict(type(getattr(cfg, section))())
        old = {**defaults, **ck["config"].get(section, {})}
        changed += [f"{section}.{k}={old.get(k)!r} in the run, {v!r} asked"
                    for k, v in new.items() if old.get(k) != v]
    if changed:
        raise ValueError(f"cannot resume {out} with another model ({'; '.join(changed)}); "
                         "resume with the run's own settings, or train into a new --out")


def run_checkpoint(out: Path) -> Path:
    """The checkpoint a finished run is used from: ``best.pt``, else ``checkpoint.pt``."""
    out = Path(out)
    if not out.exists():
        raise ValueError(f"no such run directory: {out}")
    if not out.is_dir():
        raise ValueError(f"{out} is a file; give the run directory (train's --out)")
    path = out / BEST if (out / BEST).exists() else out / LAST
    if not path.exists():
        raise ValueError(f"{out} holds no checkpoint ({BEST} or {LAST}); train a model there "
                         "first")
    return path


def read_run(path: Path, tasks: Iterable[str], what: str, keys: Sequence[str]) -> dict[str, Any]:
    """A checkpoint of one of ``tasks`` (``what``: "a tagger", …) holding ``keys``.

    Refused when missing, corrupt, holding anything but plain data (it is never
    unpickled: it cannot run code), of another task, or not a whole run."""
    ck = load_checkpoint(path)
    if ck.get("task") not in tuple(tasks):
        raise ValueError(f"{path} is a {ck.get('task')!r} checkpoint, not {what}")
    missing = [k for k in keys if not isinstance(ck.get(k), (dict, list))]
    if missing:
        raise ValueError(f"{path} is not a whole run: it lacks {', '.join(missing)}")
    return ck


def load_weights(model: nn.Module, state: dict, path: Path) -> nn.Module:
    """``model`` with the checkpoint's weights, in eval mode."""
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"{path} does not fit the model its config describes "
                         f"({str(e).splitlines()[0]})") from None
    return model.eval()
