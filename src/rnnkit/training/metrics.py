"""Metrics as JSON lines (one object per line, each with its ``step``), and their plots."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from rnnkit._io import save_figure, write_text

log = logging.getLogger(__name__)


class MetricsLog:
    """Appends to ``path``. Opened at step s (a resumed run), lines of later steps (from
    the stopped session, after its last checkpoint) are dropped first, so the file
    reads as one run."""

    def __init__(self, path: Path, step: int) -> None:
        self.path = path
        kept = [r for r in read_metrics(path) if r["step"] <= step] if step else []
        write_text(path, "".join(json.dumps(r) + "\n" for r in kept))

    def write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_losses(metrics: Path, png: Path, unit: str = "loss (nats)") -> bool:
    """Training and validation loss against step; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed (pip install 'rnnkit[plot]'): no %s", png)
        return False
    records = read_metrics(metrics)
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        points = [(r["step"], r[key]) for r in records if math.isfinite(r.get(key, math.nan))]
        if points:
            ax.plot(*zip(*points), label=label, marker="o" if key == "val_loss" else None)
    ax.set_xlabel("step")
    ax.set_ylabel(unit)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, png)
    plt.close(fig)
    return True
