"""The ``rnnkit`` command line. Errors in what the user gave: one line, exit code 2.

    rnnkit train charlm [--config FILE] [--data FILE] [--out DIR] [--max-steps N]
                        [--time-budget S] [--resume] [--json] [--section.key=value …]
    rnnkit sample DIR [--prompt TEXT] [--length N] [--temperature T] [--top-k K]
                      [--top-p P] [--seed S]
    rnnkit train classify [--data FILE|DIR] [--text-column C] [--label-column C] …
    rnnkit eval DIR [--data FILE] [--json]
    rnnkit predict DIR [TEXT …] [--input FILE] [--output FILE] [--json]
    rnnkit vanishing [--out DIR] …    vanishing gradients: a plain RNN against an LSTM

``eval`` and ``predict`` read the task from the run's checkpoint and hand the run to that
task's run module (see TASKS).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import math
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

EXIT_USAGE = 2
log = logging.getLogger("rnnkit")


@dataclass(frozen=True)
class Task:
    """How the command line reaches one task.

    ``runs`` names the task's run module, which exposes ``train(task, cfg, out, *,
    resume, progress) -> summary``, ``evaluate(out, data, **columns) -> metrics``,
    ``read_run_checkpoint(path) -> checkpoint`` and, for a task that predicts,
    ``predict(out, texts) -> [{"label", "probability", "probabilities", …}]``.
    ``config`` is its config class (``module:Class``); ``data_key`` the config key that
    ``--data`` sets. A new task plugs in with one more entry in TASKS."""

    runs: str
    config: str
    data_key: str

    def module(self):
        return importlib.import_module(self.runs)

    def config_class(self):
        module, name = self.config.split(":")
        return getattr(importlib.import_module(module), name)


TASKS = {
    "charlm": Task("rnnkit.tasks.lm_runs", "rnnkit.tasks.lm:LMConfig", "data.corpus"),
    "wordlm": Task("rnnkit.tasks.lm_runs", "rnnkit.tasks.lm:LMConfig", "data.corpus"),
    "classify": Task("rnnkit.tasks.classify_runs",
                     "rnnkit.tasks.classify:ClassifyConfig", "data.train"),
    "tag": Task("rnnkit.tasks.tag_runs", "rnnkit.tasks.tag:TagConfig", "data.corpus"),
}
COLUMN_TASKS = ("classify",)  # the tasks that read --text-column / --label-column


class _Parser(argparse.ArgumentParser):
    """argparse with rnnkit's usage errors: one line on stderr, exit code 2."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _print_json(record: dict) -> None:
    """One strict JSON object: NaN and infinities (no value: a resumed run that took no
    step has no train_loss) become null, which every JSON reader accepts."""
    clean = {k: None if isinstance(v, float) and not math.isfinite(v) else v
             for k, v in record.items()}
    print(json.dumps(clean, allow_nan=False))


def _main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _train(args: argparse.Namespace, overrides: list[str]) -> int:
    from rnnkit import config as configs

    task = TASKS[args.task]
    runs, cls = task.module(), task.config_class()
    out = Path(args.out or f"runs/{args.task}")
    given = []  # the options first, so that --section.key=value overrides come last
    if args.data is not None:
        given.append(f"{task.data_key}={args.data}")
    for option, key in (("text_column", "data.text_column"), ("label_column", "data.label_column")):
        if getattr(args, option) is not None:
            if args.task not in COLUMN_TASKS:
                raise ValueError(f"--{option.replace('_', '-')} is for {', '.join(COLUMN_TASKS)}, "
                                 f"not {args.task}")
            given.append(f"{key}={getattr(args, option)}")
    if args.max_steps is not None:
        given.append(f"train.max_steps={args.max_steps}")
    if args.time_budget is not None:
        given.append(f"train.time_budget={args.time_budget}")
    given += overrides
    if args.resume:  # the run's own config, then what this command line changes
        if args.config:
            log.warning("--resume keeps the run's own settings; --config %s is ignored "
                        "(change settings with --section.key=value)", args.config)
        ck = runs.read_run_checkpoint(out / "checkpoint.pt")
        cfg = configs.load(cls, None, given, base=configs.from_dict(cls, ck["config"]))
    else:
        cfg = configs.load(cls, args.config or default_config(args.task), given)
    summary = runs.train(args.task, cfg, out, resume=args.resume,
                         progress=not args.json and not args.quiet)
    if not _main_process():
        return 0
    if args.json:
        _print_json(summary)
    else:
        from rnnkit.cli_summaries import print_summary

        print_summary(args.task, summary, cfg, out, runs)
    return 0


def default_config(task: str) -> str | None:
    """``configs/<task>/default.toml``: the source tree's, else the one an installed
    wheel put under ``<prefix>/share/rnnkit``; None (the dataclass defaults) if neither."""
    for root in (Path(__file__).resolve().parents[2], Path(sys.prefix) / "share" / "rnnkit"):
        path = root / "configs" / task / "default.toml"
        if path.exists():
            return str(path)
    return None


def _sample(args: argparse.Namespace, overrides: list[str]) -> int:
    from rnnkit.tasks import lm_runs

    _no_overrides(overrides)
    print(lm_runs.sample(Path(args.dir), prompt=args.prompt, length=args.length,
                         temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                         seed=args.seed))
    return 0


def _run_task(directory: Path) -> str:
    """The task of the run in ``directory``, read from its checkpoint."""
    from rnnkit.training import load_checkpoint
    from rnnkit.training.trainer import BEST, LAST

    if not directory.exists():
        raise ValueError(f"no such run directory: {directory}")
    if not directory.is_dir():
        raise ValueError(f"{directory} is a file; give the run directory (train's --out)")
    path = directory / BEST if (directory / BEST).exists() else directory / LAST
    if not path.exists():
        raise ValueError(f"{directory} holds no checkpoint ({BEST} or {LAST}); train a model "
                         "there first")
    task = load_checkpoint(path).get("task")
    if task not in TASKS:
        raise ValueError(f"{path} is a {task!r} checkpoint; rnnkit runs {', '.join(TASKS)}")
    return task


def _eval(args: argparse.Namespace, overrides: list[str]) -> int:
    _no_overrides(overrides)
    task = _run_task(Path(args.dir))
    columns = {k: getattr(args, k) for k in ("text_column", "label_column")
               if getattr(args, k) is not None}
    if columns and task not in COLUMN_TASKS:
        raise ValueError(f"--text-column and --label-column are for {', '.join(COLUMN_TASKS)} "
                         f"runs; {args.dir} is a {task} run")
    metrics = TASKS[task].module().evaluate(Path(args.dir), args.data, **columns)
    if args.json:
        _print_json(metrics)
        return 0
    for key, value in metrics.items():
        if key == "per_class":
            for label, pr in value.items():
                print(f"  {label:20} precision {pr['precision']:.4f}  recall {pr['recall']:.4f}")
        elif key == "per_tag":
            for tag, pr in value.items():
                print(f"  {tag:20} precision {pr['precision']:.4f}  recall {pr['recall']:.4f}"
                      f"  F1 {pr['f1']:.4f}  support {pr['support']}")
        else:
            print(f"{key:14} {value:.4f}" if isinstance(value, float) else f"{key:14} {value}")
    return 0


def _predict(args: argparse.Namespace, overrides: list[str]) -> int:
    from rnnkit.data.tables import texts_of
    from rnnkit.tasks.classify_report import check_output, write_predictions

    _no_overrides(overrides)
    task = _run_task(Path(args.dir))
    runs = TASKS[task].module()
    if not hasattr(runs, "predict"):
        raise ValueError(f"{args.dir} is a {task} run, which generates text rather than "
                         f"predicting labels: use rnnkit sample {args.dir}")
    if bool(args.texts) == bool(args.input):
        raise ValueError("give the texts to classify as arguments or as --input FILE (one of them)")
    if args.output and task == "tag":
        raise ValueError("--output is for classifier runs; a tagger prints its tags")
    if args.output:
        check_output(Path(args.output))
    texts = texts_of(args.input, args.text_column or "text") if args.input else args.texts
    rows = runs.predict(Path(args.dir), texts)
    if task == "tag":  # a tag per token: word/TAG, a line per text
        if args.json:
            _print_json({"predictions": [{"tokens": [w for w, _ in r], "tags": [t for _, t in r]}
                                         for r in rows]})
        else:
            print("\n".join(" ".join(f"{w}/{t}" for w, t in r) for r in rows))
        return 0
    if args.output:
        write_predictions(Path(args.output), rows)
        counts: dict[str, int] = {}
        for row in rows:
            counts[row["label"]] = counts.get(row["label"], 0) + 1
        if args.json:
            _print_json({"output": args.output, "texts": len(rows), "labels": counts})
        else:
            print(f"wrote {len(rows)} predictions to {args.output}: "
                  + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    elif args.json:
        _print_json({"predictions": rows})
    else:
        for row in rows:
            print(f"{row['label']}\t{row['probability']:.4f}\t{' '.join(row['text'].split())}")
    return 0


def _vanishing(args: argparse.Namespace, overrides: list[str]) -> int:
    from rnnkit.demo import DemoConfig, run_demo

    _no_overrides(overrides)
    if args.steps < 2 or args.train_steps < 1:
        raise ValueError(f"--steps must be >= 2 and --train-steps >= 1, got "
                         f"{args.steps} and {args.train_steps}")
    cfg = DemoConfig(steps=args.steps, train_steps=args.train_steps, seed=args.seed)
    print(f"Training a plain RNN and an LSTM to recall the first of {cfg.steps} symbols "
          f"({cfg.train_steps} steps each; chance is {1 / cfg.symbols:.0%})...")
    results = run_demo(args.out, cfg)
    print(f"\n{'model':6} {'accuracy':>9}  ‖∂L/∂h_t‖ / ‖∂L/∂h_T‖ at t = 0, T/2 (trained)")
    for r in results:
        f = r["flow_after"]
        last = float(f[-1]) or 1.0
        print(f"{r['kind']:6} {r['accuracy']:9.1%}  {float(f[0]) / last:.2e}, "
              f"{float(f[len(f) // 2]) / last:.2e}")
    print(f"\nGradient flow plot: {results[0]['plot']}")
    return 0


def _no_overrides(overrides: list[str]) -> None:
    if overrides:
        raise ValueError(f"unrecognized arguments: {' '.join(overrides)}")


def _config_keys() -> str:
    from rnnkit.config import describe

    blocks, seen = [], set()
    for task in TASKS.values():
        if task.config in seen:
            continue
        seen.add(task.config)
        names = "/".join(n for n, t in TASKS.items() if t.config == task.config)
        rows = [f"  --{key}={default}  {help}" for key, default, help
                in describe(task.config_class())]
        blocks.append(f"{names} config keys (set in the TOML file or as --section.key=value):\n"
                      + "\n".join(rows))
    return "\n\n".join(blocks)


def build_parser() -> argparse.ArgumentParser:
    from rnnkit.cli_args import add_eval, add_predict, add_sample, add_train, add_vanishing

    parser = _Parser(
        prog="rnnkit", description="Recurrent neural networks on PyTorch: train, sample, "
                                   "evaluate and predict with recurrent models from the "
                                   "command line.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_train(sub, _train, list(TASKS), _config_keys)
    add_sample(sub, _sample)
    add_eval(sub, _eval)
    add_predict(sub, _predict)
    add_vanishing(sub, _vanishing)
    return parser


def main(argv=None) -> int:
    from rnnkit.training.distributed import exit_worker

    logging.basicConfig(level=logging.WARNING, format="rnnkit: %(message)s")
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    overrides = [a for a in rest if a.startswith("--") and "=" in a and "." in a.split("=")[0]]
    unknown = [a for a in rest if a not in overrides]
    if unknown:
        dotted = next((a for a in unknown if a.startswith("--") and "." in a), None)
        hint = (f"; write config overrides with '=': {dotted}=VALUE" if dotted
                else f" (see rnnkit {args.command} --help)")
        print(f"rnnkit {args.command}: error: unrecognized arguments: {' '.join(unknown)}{hint}",
              file=sys.stderr)
        return EXIT_USAGE
    code = _run(args, overrides)
    exit_worker(code)  # under torchrun: leave without the interpreter's teardown
    return code


def _run(args, overrides) -> int:
    from rnnkit.training import StopTraining

    try:
        return args.func(args, overrides)
    except StopTraining as e:
        print(f"rnnkit: stopped: {e}", file=sys.stderr)
        return e.exit_code
    except (ValueError, TypeError, ImportError, OSError) as e:  # OSError: --out unwritable
        # one plain line, whatever the message holds (torch's carry newlines and colours)
        message = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", str(e)).split()) or type(e).__name__
        print(f"rnnkit: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("rnnkit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
