"""What every task's runs share: finding a run's checkpoint, reading it, loading weights.

Each refusal is one line (a ``ValueError``), which the command line prints as is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

from torch import nn

from rnnkit.training import load_checkpoint
from rnnkit.training.trainer import BEST, LAST


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
