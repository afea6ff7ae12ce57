"""Part-of-speech tagging quality: Brown in the universal tagset, token accuracy on the
test split against the target of 96.5%.

One run of ``rnnkit.tasks.tag_runs.train`` with ``configs/tag/default.toml`` (a word
BiLSTM over word embeddings and a character BiLSTM per word, softmax output; the
sentences split 80/10/10 by ``data.split_seed``), then ``tag_runs.evaluate`` on the test
split: token accuracy, accuracy on words outside the training vocabulary, macro F1 and
per-tag F1. The figures go to the ``tag`` section of RESULTS.md with the command, the
machine and the date.

    python benchmarks/bench_tag.py                    # default.toml, one torch thread
    python benchmarks/bench_tag.py --set train.max_steps=4000 --set model.crf=true
    python benchmarks/bench_tag.py --quick --no-write # a smoke check on a fixture, seconds
"""

from __future__ import annotations

import argparse
import logging
import shlex
import shutil
import sys
from pathlib import Path

import torch
from bench_engine import HERE, machine, update_results

ROOT = Path(HERE).resolve().parent
TARGET = 0.965  # test token accuracy, Brown universal POS


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


def section(result: dict, command: str) -> str:
    cfg, s, m = result["cfg"], result["summary"], result["metrics"]
    mc, tc, info = cfg.model, cfg.train, machine()
    acc = m["test_accuracy"]
    verdict = "PASS" if acc >= TARGET else "FAIL"
    tags = sorted(m["per_tag"].items(), key=lambda kv: -kv[1]["support"])
    per_tag = ", ".join(f"{t} {v['f1']:.3f}" for t, v in tags)
    return "\n".join([
        f"Command: `{command}`  ",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['threads']} torch thread(s), "
        f"torch {info['torch']}, {info['date']}  ",
        f"Data: `{cfg.data.corpus}`, universal tagset, split 80/10/10 by seed "
        f"{cfg.data.split_seed}; vocabulary {s['vocab_size']:,} words, {s['tags']} tags.  ",
        f"Model: word embedding {mc.word_embedding}, character BiLSTM {mc.char_embedding}→"
        f"2×{mc.char_hidden}, word Bi{mc.cell.upper()} {mc.num_layers}×2×{mc.hidden_size}, "
        f"dropout {mc.dropout}, word dropout {mc.word_dropout}, "
        f"{'CRF' if mc.crf else 'softmax'} output; {tc.optimizer} lr {tc.lr}, {tc.schedule}, "
        f"batch {tc.batch_size} sentences.",
        "",
        "| steps | train time | val accuracy | test accuracy | unknown-word accuracy "
        "| macro F1 | target | |",
        "|---:|---:|---:|---:|---:|---:|---|---|",
        f"| {s['step']:,} | {s['elapsed_s']:.0f} s | {s['val_accuracy']:.4f} | {acc:.4f} | "
        f"{m['test_unknown_accuracy']:.4f} ({m['unknown_tokens']:,} of {m['tokens']:,} "
        f"tokens) | {m['test_macro_f1']:.4f} | ≥ {TARGET} | {verdict} |",
        "",
        f"Per-tag F1 on the test split, most frequent first: {per_tag}.",
    ])


def main(argv=None) -> int:
    a = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    result = run(a)
    m = result["metrics"]
    print(f"test accuracy {m['test_accuracy']:.4f}, unknown words "
          f"{m['test_unknown_accuracy']:.4f}, macro F1 {m['test_macro_f1']:.4f} "
          f"(target {TARGET}: {'PASS' if m['test_accuracy'] >= TARGET else 'FAIL'})")
    if not a.no_write and not a.quick:
        command = "python benchmarks/bench_tag.py " + " ".join(
            shlex.quote(x) for x in (argv if argv is not None else sys.argv[1:]))
        update_results(section(result, command.strip()), key="tag",
                       title="Brown part-of-speech tagging, universal tagset (bench_tag.py)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
