"""What ``rnnkit train`` prints when a run ends (without ``--json``), per task."""

from __future__ import annotations

from pathlib import Path


def print_summary(task: str, summary: dict, cfg, out: Path, runs) -> None:
    if task in ("charlm", "wordlm"):
        _lm(summary, cfg, out, runs)
    elif task == "tag":
        print(f"\nstep {summary['step']}: validation accuracy {summary['val_accuracy']:.4f} "
              f"({summary['tags']} tags)\nThe run is in {out}/; tag text: rnnkit predict "
              f"{out} \"a sentence\"; test metrics: rnnkit eval {out}")
    else:
        _classify(summary, out)


def _lm(summary: dict, cfg, out: Path, lm_runs) -> None:
    print(f"\nstep {summary['step']}: validation loss {summary.get('val_loss', float('nan')):.3f}"
          + "".join(f", {k[4:]} {v:.3f}" for k, v in summary.items()
                    if k in ("val_bpc", "val_ppl")))
    for seed in (cfg.train.seed, cfg.train.seed + 1):
        text = lm_runs.sample(out, length=min(300, cfg.sample.length), seed=seed)
        print(f"\n--- sample, seed {seed}, temperature {cfg.sample.temperature} ---\n{text}")
    print("---")
    print(f"\nThe run is in {out}/: checkpoint.pt, best.pt, metrics.jsonl, loss.png, "
          "gradient_flow.png, config.toml")
    prompt = " --prompt 'ROMEO:'" if cfg.data.corpus == "shakespeare" else ""
    print(f"More text: rnnkit sample {out}{prompt}; test metrics: rnnkit eval {out}")


def _classify(summary: dict, out: Path) -> None:
    def show(key):
        value = summary.get(key)
        return "n/a" if value is None else f"{value:.4f}"

    print(f"\nstep {summary['step']}: validation accuracy {show('val_accuracy')}, macro-F1 "
          f"{show('val_macro_f1')}; test accuracy {show('test_accuracy')}, macro-F1 "
          f"{show('test_macro_f1')} ({len(summary['classes'])} classes)")
    print(f"\nThe run is in {out}/: checkpoint.pt, best.pt, metrics.jsonl, loss.png, "
          "config.toml; report/ holds the test split's metrics.json, confusion.png and "
          "misclassified.jsonl")
    print(f"Classify: rnnkit predict {out} \"some text\"; test metrics: rnnkit eval {out}")
