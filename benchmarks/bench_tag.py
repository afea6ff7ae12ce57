"""Part-of-speech tagging quality: Brown in the universal tagset, token accuracy on the
test split against the target of 96.5%.

One run of ``rnnkit.tasks.tag_runs.train`` with ``configs/tag/default.toml`` (a word
BiLSTM over word embeddings and a character BiLSTM per word, softmax output; the
sentences split 80/10/10 by ``data.split_seed``), then ``tag_runs.evaluate`` on the test
split: token accuracy, accuracy on words outside the training vocabulary, macro F1 and
per-tag F1. Each corpus's figures are kept in ``results/tag-<corpus>.json`` with the
command, the machine and the date, and the ``tag`` section of RESULTS.md shows them all.

    python benchmarks/bench_tag.py                    # default.toml, one torch thread
    python benchmarks/bench_tag.py --set data.corpus=porttinari --set train.max_steps=1500
    python benchmarks/bench_tag.py --quick --no-write # a smoke check on a fixture, seconds
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import shutil
import sys
from pathlib import Path

import torch
from bench_engine import HERE, machine, update_results, write_atomically

ROOT = Path(HERE).resolve().parent
TARGET = 0.965  # test token accuracy, Brown universal POS
RESULTS = Path(HERE) / "results"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=str(ROOT / "configs" / "tag" / "default.toml"),
                   help="the run's TOML config (default: configs/tag/default.toml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a config override, e.g. train.max_steps=4000 (repeatable)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default: %(default)s)")
    p.add_argument("--out", default=str(Path(HERE) / "out" / "tag"),
                   help="the run directory, replaced (default: benchmarks/out/tag)")
    p.add_argument("--quick", action="store_true",
                   help="the tiny config on a fixture file: checks the script, not the model")
    p.add_argument("--no-write", action="store_true", help="leave RESULTS.md as it is")
    return p.parse_args(argv)


def run(a) -> dict:
    from rnnkit import config as configs
    from rnnkit.tasks import tag_runs
    from rnnkit.tasks.tag import TagConfig

    torch.set_num_threads(a.threads)
    overrides = list(a.set)
    config = a.config
    if a.quick:
        config = str(ROOT / "configs" / "tag" / "tiny.toml")
        overrides = [f"data.corpus={ROOT / 'tests' / 'fixtures' / 'tag' / 'toy_pos.txt'}",
                     *overrides]
    cfg = configs.load(TagConfig, config, overrides)
    out = Path(a.out)
    shutil.rmtree(out, ignore_errors=True)
    summary = tag_runs.train("tag", cfg, out, progress=sys.stderr.isatty())
    metrics = tag_runs.evaluate(out)
    return {"cfg": cfg, "summary": summary, "metrics": metrics}


def record(result: dict, command: str) -> dict:
    """What is kept of a run: plain data, enough to write its rows again."""
    from rnnkit import config as configs

    return _plain({"command": command, "machine": machine(),
                   "config": configs.to_dict(result["cfg"]), "summary": result["summary"],
                   "metrics": result["metrics"]})


def _plain(value):
    """NaN (no unknown word in a split) as null: strict JSON."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return None if isinstance(value, float) and value != value else value


def section(records: list[dict]) -> str:
    """The RESULTS.md section: one block per corpus, Brown (the one with a target) first."""
    records = sorted(records, key=lambda r: r["config"]["data"]["corpus"] != "brown")
    return "\n\n".join(_block(r) for r in records)


def _block(r: dict) -> str:
    cfg, s, m, info = r["config"], r["summary"], r["metrics"], r["machine"]
    d, mc, tc = cfg["data"], cfg["model"], cfg["train"]
    brown = d["corpus"] == "brown"
    acc = m["test_accuracy"]
    target, verdict = (f"≥ {TARGET}", "PASS" if acc >= TARGET else "FAIL") if brown else ("", "")
    tags = sorted(m["per_tag"].items(), key=lambda kv: -kv[1]["support"])
    per_tag = ", ".join(f"{t} {v['f1']:.3f}" for t, v in tags)
    tagset = "universal tagset" if brown else "UPOS" if d["corpus"] in (
        "porttinari", "petrogold") else "its own tags"
    val = (f"at most the first {tc['eval_tokens']:,} validation tokens" if tc.get("eval_tokens")
           else "the validation split")
    unknown = m["test_unknown_accuracy"]  # None: no unseen word in the test split
    return "\n".join([
        f"### {d['corpus']}",
        "",
        f"Command: `{r['command']}`  ",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['threads']} torch thread(s), "
        f"torch {info['torch']}, {info['date']}  ",
        f"Data: `{d['corpus']}`, {tagset}, split {1 - d['valid_fraction'] - d['test_fraction']:.0%}"
        f"/{d['valid_fraction']:.0%}/{d['test_fraction']:.0%} by seed {d['split_seed']}; "
        f"vocabulary {s['vocab_size']:,} words, {s['tags']} tags.  ",
        f"Model: word embedding {mc['word_embedding']}, character BiLSTM "
        f"{mc['char_embedding']}→2×{mc['char_hidden']}, word Bi{mc['cell'].upper()} "
        f"{mc['num_layers']}×2×{mc['hidden_size']}, dropout {mc['dropout']}, word dropout "
        f"{mc['word_dropout']}, {'CRF' if mc['crf'] else 'softmax'} output; "
        f"{tc['optimizer']} lr {tc['lr']}, {tc['schedule']}, batch {tc['batch_size']} "
        f"sentences. Validation accuracy is measured on {val}.",
        "",
        "| steps | train time | val accuracy | test accuracy | unknown-word accuracy "
        "| macro F1 | target | |",
        "|---:|---:|---:|---:|---:|---:|---|---|",
        f"| {s['step']:,} | {s['elapsed_s']:.0f} s | {s['val_accuracy']:.4f} | {acc:.4f} | "
        + ("—" if unknown is None else f"{unknown:.4f}")
        + f" ({m['unknown_tokens']:,} of {m['tokens']:,} tokens) | {m['test_macro_f1']:.4f} "
        f"| {target} | {verdict} |",
        "",
        f"Per-tag F1 on the test split, most frequent first: {per_tag}.",
    ])


def main(argv=None) -> int:
    a = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    result = run(a)
    m = result["metrics"]
    target = ""
    if result["cfg"].data.corpus == "brown":
        target = f" (target {TARGET}: {'PASS' if m['test_accuracy'] >= TARGET else 'FAIL'})"
    print(f"test accuracy {m['test_accuracy']:.4f}, unknown words "
          f"{m['test_unknown_accuracy']:.4f}, macro F1 {m['test_macro_f1']:.4f}{target}")
    if not a.no_write and not a.quick:
        command = "python benchmarks/bench_tag.py " + " ".join(
            shlex.quote(x) for x in (argv if argv is not None else sys.argv[1:]))
        kept = record(result, command.strip())
        name = Path(result["cfg"].data.corpus).stem
        RESULTS.mkdir(exist_ok=True)
        write_atomically(str(RESULTS / f"tag-{name}.json"), json.dumps(kept, indent=1) + "\n")
        records = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("tag-*.json"))]
        update_results(section(records), key="tag",
                       title="Part-of-speech tagging (bench_tag.py)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
