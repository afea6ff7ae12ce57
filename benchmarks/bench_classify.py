"""Text classification quality on the three registry data sets, each against a
bag-of-words logistic regression on the same split.

For each data set (``mr``: movie-review sentiment, ``spam``: SpamAssassin, ``bbc``: BBC
News topics) the script trains ``rnnkit train classify`` with ``configs/classify/
<set>.toml`` (``default.toml`` for ``mr``) into ``benchmarks/out/classify/<set>`` and
reads the test split's accuracy and macro-F1 (and spam F1) from the run's report. The
baseline is scikit-learn's TF-IDF of words and word pairs into a logistic regression,
fitted on the same training split, its C picked on the same validation split, scored on
the same test split. A TF-IDF logistic regression measures 78.5% on MR in 5-fold
cross-validation; the targets are MR ≥ 80%, spam F1 ≥ 0.98, BBC ≥ 96%.

    python benchmarks/bench_classify.py                  # all three, writes RESULTS.md
    python benchmarks/bench_classify.py --sets spam       # one set; the others' rows stay
    python benchmarks/bench_classify.py --sets mr --budget 300 --no-write
    python benchmarks/bench_classify.py --quick --no-write   # a smoke check, ~1 minute

Each set's figures are kept in ``benchmarks/out/classify/results.json`` with the date,
command and commit that measured them, so the sets can be measured one at a time; the
RESULTS.md table shows every set measured so far.

Needs scikit-learn (``pip install 'rnnkit[bench]'``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from bench_engine import HERE, machine, update_results

ROOT = Path(HERE).parent
CONFIGS = {"mr": "default.toml", "spam": "spam.toml", "bbc": "bbc.toml"}
TITLES = {"mr": "MR movie-review sentiment", "spam": "SpamAssassin ham/spam",
          "bbc": "BBC News topics"}
TARGETS = {"mr": ("accuracy", 0.80), "spam": ("spam_f1", 0.98), "bbc": ("accuracy", 0.96)}


def baseline(splits, labels) -> dict:
    """TF-IDF (words and word pairs, sublinear tf) → logistic regression; C by validation."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from rnnkit.tasks.classify_report import scores

    index = {label: i for i, label in enumerate(labels)}
    xy = {s: ([e.text for e in ex], [index[e.label] for e in ex]) for s, ex in splits.items()}
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True)
    train_x = vectorizer.fit_transform(xy["train"][0])
    best = None
    for c in (1.0, 3.0, 10.0, 30.0):
        model = LogisticRegression(C=c, max_iter=2000).fit(train_x, xy["train"][1])
        valid = scores(xy["valid"][1], model.predict(vectorizer.transform(xy["valid"][0])),
                       len(labels))["accuracy"]
        if best is None or valid > best[0]:
            best = (valid, c, model)
    _, c, model = best
    s = scores(xy["test"][1], model.predict(vectorizer.transform(xy["test"][0])), len(labels))
    return {"C": c, **_summary(s, labels)}


def _summary(s: dict, labels) -> dict:
    out = {"accuracy": s["accuracy"], "macro_f1": s["macro_f1"]}
    if "spam" in labels:
        out["spam_f1"] = s["f1"][labels.index("spam")]
    return out


def run_rnnkit(name: str, budget: float | None, quick: bool, threads: int,
               fold: int | None = None) -> dict:
    """Train ``name`` as ``rnnkit train classify --config <its config>`` would (with
    ``--data.fold=<fold>`` when given); called in a process of its own."""
    torch.set_num_threads(threads)
    from rnnkit import config as configs
    from rnnkit.tasks import classify_runs
    from rnnkit.tasks.classify import ClassifyConfig
    from rnnkit.tasks.classify_report import scores

    out = Path(HERE) / "out" / "classify" / (name if fold is None else f"{name}-fold{fold}")
    shutil.rmtree(out, ignore_errors=True)
    overrides = [f"train.time_budget={budget}"] if budget else []
    if fold is not None:
        overrides.append(f"data.fold={fold}")
    if quick:
        overrides += ["train.max_steps=20", "train.eval_every=10", "model.hidden_size=16"]
    cfg = configs.load(ClassifyConfig, ROOT / "configs" / "classify" / CONFIGS[name], overrides)
    started = time.perf_counter()
    summary = classify_runs.train("classify", cfg, out, progress=False)
    seconds = time.perf_counter() - started
    report = json.loads((out / "report" / "metrics.json").read_text())
    labels = report["labels"]
    truth = [i for i, row in enumerate(report["confusion"]) for _ in range(sum(row))]
    predicted = [j for row in report["confusion"] for j, n in enumerate(row) for _ in range(n)]
    s = scores(truth, predicted, len(labels))
    parts = {f"{part}_{k}": v for part, m in report.get("parts", {}).items()
             for k, v in m.items()}  # with model.ngrams: the network's and the n-grams'
    return {"steps": summary["step"], "seconds": round(seconds, 1),
            "val_accuracy": summary.get("val_accuracy"), **_summary(s, labels), **parts,
            "config": f"configs/classify/{CONFIGS[name]}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", default="mr,spam,bbc", help="comma-separated: mr,spam,bbc")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds of training per set (default: the config's steps)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    parser.add_argument("--folds", type=int, default=1,
                        help="cross-validate: train and score on folds 0 … N-1 "
                             "(data.fold; N = 10 covers every example with the 10%% test "
                             "split) and report the mean (default: 1, the one split)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="folds trained at once, each on --threads threads")
    parser.add_argument("--quick", action="store_true", help="a 20-step smoke check")
    parser.add_argument("--no-write", action="store_true", help="leave RESULTS.md as it is")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from rnnkit.tasks.classify import DataConfig
    from rnnkit.tasks.classify_runs import load_splits

    path = Path(HERE) / "out" / "classify" / "results.json"
    kept = json.loads(path.read_text())["results"] if path.exists() else {}
    results = {k: v for k, v in kept.items() if "command" in v}  # each set says how it ran
    command = " ".join(["python", "benchmarks/bench_classify.py", *sys.argv[1:]])
    for name in args.sets.split(","):
        if name not in CONFIGS:
            sys.exit(f"unknown set {name!r}; choose among {', '.join(CONFIGS)}")
        if args.folds > 1:
            result = cross_validate(name, args)
        else:
            splits, labels = load_splits(DataConfig(train=name))
            result = {"sizes": {s: len(v) for s, v in splits.items()},
                      "baseline": baseline(splits, labels),
                      "rnnkit": _in_own_process(run_rnnkit, name, args.budget, args.quick,
                                                args.threads)}
        result.update({"date": datetime.date.today().isoformat(), "command": command,
                       "commit": _commit(), "machine": machine()})
        print(json.dumps({name: result}), flush=True)
        if not args.quick:  # a smoke check's figures are not kept
            results[name] = result
    if args.quick:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"results": results}, indent=1) + "\n")
    if not args.no_write:
        update_results(markdown(results), key="classify", title="Text classification "
                                                                "(bench_classify.py)")


def cross_validate(name: str, args) -> dict:
    """Both models on each fold's split (``data.fold``), ``args.jobs`` folds training at
    once; the mean and standard deviation over folds of each figure, and every fold's."""
    from rnnkit.tasks.classify import DataConfig
    from rnnkit.tasks.classify_runs import load_splits

    folds = range(args.folds)
    with multiprocessing.get_context("spawn").Pool(args.jobs, maxtasksperchild=1) as pool:
        runs = [pool.apply_async(run_rnnkit, (name, args.budget, args.quick, args.threads,
                                              k)) for k in folds]
        baselines, sizes = [], None
        for k in folds:
            splits, labels = load_splits(DataConfig(train=name, fold=k))
            sizes = sizes or {s: len(v) for s, v in splits.items()}
            baselines.append(baseline(splits, labels))
        ours = [r.get() for r in runs]

    def mean(per_fold: list[dict]) -> dict:
        keys = [k for k, v in per_fold[0].items() if isinstance(v, float) and k != "C"]
        out = {k: statistics.fmean(f[k] for f in per_fold) for k in keys}
        out.update({f"{k}_sd": statistics.stdev(f[k] for f in per_fold) for k in keys})
        return out

    return {"sizes": sizes, "folds": args.folds,
            "baseline": {**mean(baselines), "C": "by fold", "per_fold": baselines},
            "rnnkit": {**mean(ours), "steps": ours[0]["steps"],  # mean(): seconds too
                       "config": ours[0]["config"], "per_fold": ours}}


def _in_own_process(fn, *args):
    """``fn(*args)`` in a fresh process, so that each set trains as a run of its own
    would: training one set after another in one process gave other figures (spam F1
    0.979 against 0.987, BBC 92.8% against 96.9%, the same configs and seeds)."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args)


def _commit() -> str | None:
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None


def markdown(results: dict) -> str:
    """The table of every set measured so far, in mr, spam, bbc order, and how each was
    measured."""
    rows = ["| set | train / valid / test | metric | rnnkit | TF-IDF logistic regression "
            "| target | steps, seconds |", "|---|---|---|---|---|---|---|"]
    how = []
    for name in (n for n in CONFIGS if n in results):
        r = results[name]
        metric, target = TARGETS[name]
        ours, base = r["rnnkit"][metric], r["baseline"][metric]
        sizes = " / ".join(str(r["sizes"][s]) for s in ("train", "valid", "test"))
        folds = r.get("folds", 1)
        if folds > 1:  # the mean over folds, with its spread
            what = f"test {metric.replace('_', ' ')}, mean of {folds} folds ± sd"
            ours_text = f"**{ours:.4f}** ± {r['rnnkit'][metric + '_sd']:.4f}"
            base_text = f"{base:.4f} ± {r['baseline'][metric + '_sd']:.4f} (C by fold)"
        else:
            what = f"test {metric.replace('_', ' ')}"
            ours_text, base_text = f"**{ours:.4f}**", f"{base:.4f} (C={r['baseline']['C']})"
        rows.append(f"| {TITLES[name]} | {sizes} | {what} | {ours_text} | {base_text} | "
                    f"≥ {target} {'met' if ours >= target else 'not met'} | "
                    f"{r['rnnkit']['steps']}, {r['rnnkit']['seconds']:.0f} |")
        m = r["machine"]
        how.append(f"- {TITLES[name]}: `{r['command']}` on {r['date']}, "
                   f"{r['rnnkit']['config']}, commit {r.get('commit')}; {m['cpu']} "
                   f"({m['cores']} cores, {m['threads']} torch thread), torch {m['torch']}.")
        if "network_accuracy" in r["rnnkit"]:
            how.append(f"- {TITLES[name]}, the average's parts alone: the network "
                       f"{r['rnnkit']['network_accuracy']:.4f}, the n-gram regression "
                       f"{r['rnnkit']['ngram_accuracy']:.4f} (test accuracy"
                       f"{', mean over folds' if folds > 1 else ''}).")
    return "\n".join([
        "Splits: 80/10/10 by class, seed 0 (`data.split_seed`); each model is chosen on "
        "the validation split and scored once on the test split. A row measured with "
        "`--folds 10` is 10-fold cross-validation: fold k (`data.fold=k`) tests the k-th "
        "tenth of each class and validates on the next, so every example is tested once; "
        "the seconds are a fold's.", "", *rows, "",
        "Measured:", "", *how, ""])


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
