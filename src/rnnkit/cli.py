"""The ``rnnkit`` command line. Errors in what the user gave: one line, exit code 2.

    rnnkit train charlm [--config FILE] [--data FILE] [--out DIR] [--max-steps N]
                        [--time-budget S] [--resume] [--json] [--section.key=value …]
    rnnkit sample DIR [--prompt TEXT] [--length N] [--temperature T] [--top-k K]
                      [--top-p P] [--seed S]
    rnnkit eval DIR [--data FILE] [--json]
    rnnkit vanishing [--out DIR] …    vanishing gradients: a plain RNN against an LSTM
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import sys
from pathlib import Path

EXIT_USAGE = 2
TASKS = ("charlm", "wordlm")
log = logging.getLogger("rnnkit")


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
    from rnnkit.tasks import lm_runs
    from rnnkit.tasks.lm import LMConfig

    out = Path(args.out or f"runs/{args.task}")
    given = []  # the options first, so that --section.key=value overrides come last
    if args.data is not None:
        given.append(f"data.corpus={args.data}")
    if args.max_steps is not None:
        given.append(f"train.max_steps={args.max_steps}")
    if args.time_budget is not None:
        given.append(f"train.time_budget={args.time_budget}")
    given += overrides
    if args.resume:  # the run's own config, then what this command line changes
        if args.config:
            log.warning("--resume keeps the run's own settings; --config %s is ignored "
                        "(change settings with --section.key=value)", args.config)
        ck = lm_runs.read_run_checkpoint(out / "checkpoint.pt")
        cfg = configs.load(LMConfig, None, given, base=configs.from_dict(LMConfig, ck["config"]))
    else:
        cfg = configs.load(LMConfig, args.config or default_config(args.task), given)
    summary = lm_runs.train(args.task, cfg, out, resume=args.resume,
                            progress=not args.json and not args.quiet)
    if not _main_process():
        return 0
    if args.json:
        _print_json(summary)
        return 0
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
    return 0


def default_config(task: str) -> str | None:
    """``configs/<task>/default.toml`` in the source tree, when there is one."""
    here = Path(__file__).resolve().parents[2] / "configs" / task / "default.toml"
    return str(here) if here.exists() else None


def _sample(args: argparse.Namespace, overrides: list[str]) -> int:
    from rnnkit.tasks import lm_runs

    _no_overrides(overrides)
    print(lm_runs.sample(Path(args.dir), prompt=args.prompt, length=args.length,
                         temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                         seed=args.seed))
    return 0


def _eval(args: argparse.Namespace, overrides: list[str]) -> int:
    from rnnkit.tasks import lm_runs

    _no_overrides(overrides)
    metrics = lm_runs.evaluate(Path(args.dir), args.data)
    if args.json:
        _print_json(metrics)
    else:
        for key, value in metrics.items():
            print(f"{key:14} {value:.4f}" if isinstance(value, float) else f"{key:14} {value}")
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
    from rnnkit.tasks.lm import LMConfig

    rows = [f"  --{key}={default}  {help}" for key, default, help in describe(LMConfig)]
    return "config keys (set in the TOML file or as --section.key=value):\n" + "\n".join(rows)


def build_parser() -> argparse.ArgumentParser:
    from rnnkit.cli_args import add_eval, add_sample, add_train, add_vanishing

    parser = _Parser(
        prog="rnnkit", description="Recurrent neural networks on PyTorch: train, sample "
                                   "and evaluate recurrent models from the command line.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_train(sub, _train, TASKS, _config_keys)
    add_sample(sub, _sample)
    add_eval(sub, _eval)
    add_vanishing(sub, _vanishing)
    return parser


def main(argv=None) -> int:
    from rnnkit.training import StopTraining

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
