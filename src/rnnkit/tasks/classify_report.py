"""Classification metrics and the report a run writes: per-class precision and recall,
macro-F1, the confusion matrix as a PNG, and the misclassified examples."""

from __future__ import annotations

import csv
import io
import json
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rnnkit._io import save_figure, write_text

log = logging.getLogger(__name__)


def confusion(truth: Sequence[int], predicted: Sequence[int], num_classes: int) -> np.ndarray:
    """(C, C) counts: row = true class, column = predicted class."""
    t, p = np.asarray(truth, dtype=np.int64), np.asarray(predicted, dtype=np.int64)
    return np.bincount(t * num_classes + p, minlength=num_classes**2).reshape(num_classes, -1)


def scores(truth: Sequence[int], predicted: Sequence[int], num_classes: int) -> dict[str, Any]:
    """Accuracy; per class precision = TP / predicted, recall = TP / true, F1 their
    harmonic mean (0 where undefined); macro-F1 the mean F1 over the classes."""
    m = confusion(truth, predicted, num_classes)
    tp = np.diag(m).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.nan_to_num(tp / m.sum(0))
        recall = np.nan_to_num(tp / m.sum(1))
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
    return {"accuracy": float(tp.sum() / max(1, m.sum())), "macro_f1": float(f1.mean()),
            "precision": precision.tolist(), "recall": recall.tolist(), "f1": f1.tolist(),
            "support": m.sum(1).tolist(), "confusion": m.tolist()}


def part_scores(truth: Sequence[int], parts: dict[str, Any],
                num_classes: int) -> dict[str, dict[str, float]]:
    """Accuracy and macro-F1 of each part's (N, C) probabilities, by the part's name."""
    out = {}
    for name, probs in parts.items():
        s = scores(truth, probs.argmax(-1).tolist(), num_classes)
        out[name] = {"accuracy": s["accuracy"], "macro_f1": s["macro_f1"]}
    return out


def write_report(folder: Path, labels: Sequence[str], texts: Sequence[str],
                 truth: Sequence[int], probs, title: str,
                 parts: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``metrics.json``, ``misclassified.jsonl`` (most confident mistakes first)
    and ``confusion.png`` into ``folder``; return the metrics. ``parts``: the (N, C)
    probabilities of each part of an averaged model, whose accuracy and macro-F1 the
    metrics then give under ``parts``."""
    predicted = probs.argmax(-1).tolist()
    s = scores(truth, predicted, len(labels))
    per_class = {label: {k: s[k][i] for k in ("precision", "recall", "f1", "support")}
                 for i, label in enumerate(labels)}
    metrics = {"examples": len(truth), "accuracy": s["accuracy"], "macro_f1": s["macro_f1"],
               "per_class": per_class, "labels": list(labels), "confusion": s["confusion"]}
    if parts:
        metrics["parts"] = part_scores(truth, parts, len(labels))
    folder.mkdir(parents=True, exist_ok=True)
    write_text(folder / "metrics.json", json.dumps(metrics, indent=1, ensure_ascii=False) + "\n")
    wrong = [i for i, (t, p) in enumerate(zip(truth, predicted)) if t != p]
    wrong.sort(key=lambda i: -float(probs[i].max()))
    lines = [json.dumps({"text": texts[i], "label": labels[truth[i]],
                         "predicted": labels[predicted[i]],
                         "probability": round(float(probs[i].max()), 4)}, ensure_ascii=False)
             for i in wrong]
    write_text(folder / "misclassified.jsonl", "".join(line + "\n" for line in lines))
    plot_confusion(np.array(s["confusion"]), labels, folder / "confusion.png", title)
    return metrics


def plot_confusion(matrix: np.ndarray, labels: Sequence[str], path: Path, title: str) -> bool:
    """The confusion matrix, each row shaded by its share of the true class and every
    cell labelled with its count; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed (pip install 'rnnkit[plot]'): no %s", path)
        return False
    n = len(labels)
    shares = matrix / np.maximum(1, matrix.sum(1, keepdims=True))
    side = min(12.0, 2.5 + 0.6 * n)
    fig, ax = plt.subplots(figsize=(side, side))
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    if n <= 30:
        for (i, j), count in np.ndenumerate(matrix):
            ax.text(j, i, str(count), ha="center", va="center",
                    color="white" if shares[i, j] > 0.5 else "black", fontsize=8)
    ax.set_xticks(range(n), [str(x)[:20] for x in labels], rotation=45, ha="right")
    ax.set_yticks(range(n), [str(x)[:20] for x in labels])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    with warnings.catch_warnings():  # a label in a script the font lacks is drawn as boxes
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        fig.tight_layout()
        save_figure(fig, path)
    plt.close(fig)
    return True


def write_predictions(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Predictions as ``.jsonl`` (one object a text) or ``.csv``/``.tsv`` (columns
    ``text, label, probability`` and ``p(<label>)`` for every label), atomically."""
    suffix = check_output(path)
    if suffix == ".jsonl":
        write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        return
    labels = list(rows[0]["probabilities"]) if rows else []
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="," if suffix == ".csv" else "\t", lineterminator="\n")
    writer.writerow(["text", "label", "probability", *(f"p({label})" for label in labels)])
    for r in rows:
        writer.writerow([r["text"], r["label"], f"{r['probability']:.6f}",
                         *(f"{r['probabilities'][label]:.6f}" for label in labels)])
    write_text(path, buffer.getvalue())


def check_output(path: Path) -> str:
    """The suffix of a predictions file, ``ValueError`` unless one :func:`write_predictions`
    writes, or when ``path`` is a folder."""
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".csv", ".tsv"):
        raise ValueError(f"--output {path}: write predictions to a .jsonl, .csv or .tsv file")
    if path.is_dir():
        raise ValueError(f"--output {path} is a directory")
    return suffix
