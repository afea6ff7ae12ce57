"""The ``rnnkit`` command line. Errors in what the user gave: one line, exit code 2."""

from __future__ import annotations

import argparse
import sys

EXIT_USAGE = 2


def _demo(args: argparse.Namespace) -> int:
    from rnnkit.demo import DemoConfig, run_demo

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


def build_parser() -> argparse.ArgumentParser:
    from rnnkit.demo import DemoConfig

    defaults = DemoConfig()
    parser = argparse.ArgumentParser(
        prog="rnnkit", description="Recurrent neural networks on PyTorch.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = sub.add_parser(
        "demo", help="vanishing gradients: train a plain RNN and an LSTM on one task",
        description="Train a plain RNN and an LSTM to recall the first symbol of a long "
                    "sequence; print their accuracy and how ‖∂L/∂h_t‖ decays through time, "
                    "and save the gradient-flow plot.")
    demo.add_argument("--out", default="runs/demo", help="directory for the plot "
                      "(default: %(default)s)")
    demo.add_argument("--steps", type=int, default=defaults.steps,
                      help="sequence length T, the distance to remember (default: %(default)s)")
    demo.add_argument("--train-steps", type=int, default=defaults.train_steps,
                      help="optimisation steps per model (default: %(default)s)")
    demo.add_argument("--seed", type=int, default=defaults.seed,
                      help="random seed (default: %(default)s)")
    demo.set_defaults(func=_demo)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, ImportError) as e:
        print(f"rnnkit: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("rnnkit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
