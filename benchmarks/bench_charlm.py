"""Character LM quality after a fixed wall-clock budget: RNN, GRU, LSTM and layer-norm LSTM
of equal parameter count on Shakespeare split by play.

Each variant is one ``rnnkit train charlm`` run in a fresh process, on the default config
(embedding 128, 2 layers, AdamW, B=32, BPTT 100) with the hidden size chosen so that the
whole model has as many parameters as the 2×256 LSTM. A short probe run first measures
the variant's steps per second, so that its cosine schedule ends when the budget does;
the budget is also a hard stop. Then ``rnnkit eval`` gives the test split's bits/char.

    python benchmarks/bench_charlm.py                    # 180 s each, writes RESULTS.md
    python benchmarks/bench_charlm.py --budget 60 --cells lstm,gru --no-write
    python benchmarks/bench_charlm.py --quick --no-write  # a smoke check, ~1 minute
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from bench_engine import HERE, machine, update_results, write_atomically

VARIANTS = {  # name -> config overrides
    "rnn": ["--model.cell=rnn_tanh"],
    "gru": ["--model.cell=gru"],
    "lstm": ["--model.cell=lstm"],
    "lnlstm": ["--model.cell=lstm", "--model.layer_norm=true"],
}
CELLS = {"rnn": "rnn_tanh", "gru": "gru", "lstm": "lstm", "lnlstm": "lstm"}
LABELS = {"rnn": "RNN (tanh)", "gru": "GRU", "lstm": "LSTM", "lnlstm": "layer-norm LSTM"}
ANCHOR = ("lstm", 256)  # the parameter count every variant matches


def parameters(name: str, hidden: int, vocab: int, embedding: int) -> int:
    from rnnkit.tasks.lm import LanguageModel, ModelConfig

    cfg = ModelConfig(cell=CELLS[name], hidden_size=hidden, embedding_size=embedding,
                      layer_norm=name == "lnlstm")
    return sum(p.numel() for p in LanguageModel(vocab, cfg).parameters())


def matched_hidden(name: str, target: int, vocab: int, embedding: int) -> int:
    """The hidden size whose model is closest to ``target`` parameters (the count grows
    with the size, so a bisection finds it)."""
    lo, hi = 1, 4096
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if parameters(name, mid, vocab, embedding) <= target else (lo, mid)
    return min((lo, hi), key=lambda h: abs(parameters(name, h, vocab, embedding) - target))


def train(name: str, hidden: int, out: Path, budget: float, steps: int, a) -> dict:
    args = [sys.executable, "-m", "rnnkit", "train", "charlm", "--out", str(out), "--json",
            "--time-budget", str(budget), "--max-steps", str(steps), *VARIANTS[name],
            f"--model.hidden_size={hidden}", f"--train.eval_every={max(1, steps // 6)}",
            f"--train.checkpoint_every={max(1, steps // 6)}", "--train.log_every=10",
            *a.overrides]
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{name}: {shlex.join(args)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def evaluate(out: Path) -> dict:
    done = subprocess.run([sys.executable, "-m", "rnnkit", "eval", str(out), "--json"],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def run_variant(name: str, hidden: int, a) -> dict:
    """Probe the speed, then train for the budget with the schedule fitted to it."""
    root = Path(a.out) / name
    shutil.rmtree(root, ignore_errors=True)  # a fresh run, not a resumed one
    probe = train(name, hidden, root / "probe", a.probe, 10**6, a)
    rate = probe["step"] / probe["elapsed_s"]  # steps/s, evaluation included
    steps = max(10, int(rate * a.budget))
    summary = train(name, hidden, root / "run", a.budget, steps, a)
    test = evaluate(root / "run")
    return {"name": name, "hidden": hidden, "steps": summary["step"], "planned_steps": steps,
            "elapsed_s": summary["elapsed_s"], "val_bpc": summary["val_bpc"],
            "val_loss": summary["val_loss"], "test_bpc": test["test_bpc"],
            "test_loss": test["test_loss"], "curve": metrics(root / "run")}


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for r in results:
        train_pts = [(m["elapsed_s"], m["bpc"]) for m in r["curve"] if "bpc" in m]
        val_pts = [(m["elapsed_s"], m["val_bpc"]) for m in r["curve"] if "val_bpc" in m]
        line, = ax.plot(*(zip(*train_pts) if train_pts else ([], [])), alpha=0.5,
                        label=f"{LABELS[r['name']]} (train)")
        ax.plot(*zip(*val_pts), marker="o", color=line.get_color(),
                label=f"{LABELS[r['name']]} (validation)")
    ax.set_xlabel("seconds of training")
    ax.set_ylabel("bits per character")
    ax.set_ylim(top=4.0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [f"Command: `{result['command']}`  ",
             f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, {m['date']}  ",
             f"Budget: {result['budget']:.0f} s of training per model (evaluation "
             f"included), models of {result['parameters']:,} parameters (±2%), embedding "
             "128, 2 layers, AdamW lr 3e-3, warm-up + cosine fitted to the budget, B=32, "
             "BPTT 100. Validation: Othello + As You Like It; test: Macbeth + Twelfth "
             "Night.", "",
             "| model | hidden | parameters | steps | val bits/char | test bits/char "
             "| test nats/char |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {LABELS[r['name']]} | {r['hidden']} | {r['parameters']:,} | "
                     f"{r['steps']} | {r['val_bpc']:.3f} | {r['test_bpc']:.3f} | "
                     f"{r['test_loss']:.3f} |")
    lines += ["", f"Loss curves: `{result['plot']}`."]
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--budget", type=float, default=180.0,
                   help="seconds of training per model (default: %(default)s)")
    p.add_argument("--probe", type=float, default=20.0,
                   help="seconds of the speed probe per model (default: %(default)s)")
    p.add_argument("--cells", default=",".join(VARIANTS),
                   help="variants to run, comma-separated (default: %(default)s)")
    p.add_argument("--out", default=os.path.join(HERE, "out", "charlm"),
                   help="where the runs go (default: benchmarks/out/charlm)")
    p.add_argument("--quick", action="store_true",
                   help="a smoke check: 8 s budgets, small models, short windows")
    p.add_argument("--no-write", action="store_true",
                   help="print the table only; leave RESULTS.md and the JSON alone")
    a, a.overrides = p.parse_known_args(argv)
    if a.quick:
        a.budget, a.probe = 8.0, 3.0
        a.overrides += ["--model.embedding_size=16", "--train.bptt=20", "--train.log_every=1",
                        "--train.eval_tokens=2000"]
    unknown = set(a.cells.split(",")) - set(VARIANTS)
    if unknown:
        p.error(f"unknown --cells {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
    return a


def main(argv=None):
    a = parse_args(argv)
    from rnnkit.data.shakespeare import shakespeare_splits

    vocab = len(set(shakespeare_splits()["train"])) + 1  # the characters and <unk>
    embedding = 16 if a.quick else 128
    target = parameters(ANCHOR[0], 32 if a.quick else ANCHOR[1], vocab, embedding)
    rows = []
    for name in a.cells.split(","):
        hidden = matched_hidden(name, target, vocab, embedding)
        print(f"{LABELS[name]}: hidden {hidden}, training {a.budget:.0f} s ...", flush=True)
        row = run_variant(name, hidden, a)
        row["parameters"] = parameters(name, hidden, vocab, embedding)
        rows.append(row)
        print(f"  {row['steps']} steps, val {row['val_bpc']:.3f}, test {row['test_bpc']:.3f} "
              "bits/char", flush=True)
    plot_path = Path(a.out if a.no_write else os.path.join(HERE, "results")) / "charlm_curves.png"
    plot(rows, plot_path)
    command = shlex.join(["python", os.path.relpath(__file__), *(argv or sys.argv[1:])])
    result = {"command": command, "machine": machine(), "budget": a.budget,
              "parameters": target, "plot": os.path.relpath(plot_path), "rows": rows}
    section = markdown(result)
    print("\n" + section)
    if not a.no_write:
        write_atomically(os.path.join(HERE, "results", "charlm.json"),
                         json.dumps(result, indent=1))
        update_results(section, "charlm", "Character language model (bench_charlm.py)")


if __name__ == "__main__":
    main()
