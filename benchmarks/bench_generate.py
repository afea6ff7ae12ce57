"""Generation latency: a stacked LSTM stepped one token at a time, batch 1.

What a sampler or a streaming model does: call the layer on one time step, carry its
state into the next call. Per-token latency (median) of each variant, eval mode, no
gradients, timed in interleaved rounds, with its ratio to stepping ``torch.nn.LSTM``.

    python benchmarks/bench_generate.py            # writes its RESULTS.md section
    python benchmarks/bench_generate.py --quick --no-write
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time

import torch
from torch import nn

import rnnkit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_engine import machine, update_results  # noqa: E402

ANCHOR = "torch.nn.LSTM"


class CellStack(nn.Module):
    """Stacked nn.LSTMCell, the per-step way of writing a generator."""

    def __init__(self, size: int, layers: int):
        super().__init__()
        self.cells = nn.ModuleList(nn.LSTMCell(size, size) for _ in range(layers))

    def forward(self, x, state=None):  # x (1, B, H); state: a list of (h, c) per layer
        x = x[0]
        state = state or [None] * len(self.cells)
        new = []
        for cell, s in zip(self.cells, state):
            h, c = cell(x, s)
            new.append((h, c))
            x = h
        return x.unsqueeze(0), new


def variants(size: int, layers: int):
    """name -> (model, target ratio to the anchor or None)."""
    torch.manual_seed(0)
    native = nn.LSTM(size, size, layers)
    same = lambda **kw: rnnkit.LSTM(size, size, layers, **kw)
    table = {ANCHOR: (native, None), "nn.LSTMCell stack": (CellStack(size, layers), None),
             "rnnkit.LSTM auto": (same(), 1.0), "rnnkit.LSTM fused": (same(backend="fused"), None),
             "layer-norm LSTM fused": (same(backend="fused", layer_norm=True), None),
             "LN+zoneout LSTM fused (eval)": (same(backend="fused", layer_norm=True, zoneout=0.1),
                                              None)}
    for name in ("rnnkit.LSTM auto", "rnnkit.LSTM fused"):
        table[name][0].load_state_dict(native.state_dict())
    return {n: (m.eval(), t) for n, (m, t) in table.items()}


def per_token(models, size: int, tokens: int, rounds: int) -> dict:
    """name -> median seconds per token, the rounds interleaved across variants."""
    x = torch.randn(1, 1, size)
    states = dict.fromkeys(models)
    times = {n: [] for n in models}

    def run(name, n):
        for _ in range(n):
            t0 = time.perf_counter()
            _, states[name] = models[name](x, states[name])
            times[name].append(time.perf_counter() - t0)

    with torch.no_grad():
        for name in models:  # warm-up: loads lazy code paths, fills caches
            run(name, max(5, tokens // 10))
            times[name].clear()
        order = list(models)
        for r in range(rounds):
            for name in order[r % len(order):] + order[: r % len(order)]:
                run(name, tokens)
    return {n: statistics.median(v) for n, v in times.items()}


def markdown(a, medians, targets, command) -> str:
    m = machine()
    lines = [f"Command: `{command}`  ",
             f"Machine: {m['cpu']}, {m['cores']} cores, {m['threads']} torch threads, "
             f"torch {m['torch']}, {m['date']}  ",
             f"Config: {a.layers}-layer LSTM, {a.size} units, batch 1, one token per call with "
             f"the state carried, eval mode, no gradients; median per-token latency over "
             f"{a.rounds} interleaved rounds of {a.tokens} tokens.", "",
             "| variant | µs per token | ratio to torch.nn.LSTM | target | |",
             "|---|---:|---:|---:|---|"]
    base = medians[ANCHOR]
    for name, value in medians.items():
        ratio = value / base
        target = targets[name]
        verdict = "" if target is None else "PASS" if ratio <= target else "FAIL"
        lines.append(f"| {name} | {value * 1e6:.0f} | {ratio:.2f} | "
                     f"{'' if target is None else f'≤ {target}'} | {verdict} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=512, help="input and hidden size (default: 512)")
    p.add_argument("--layers", type=int, default=2, help="stacked layers (default: 2)")
    p.add_argument("--tokens", type=int, default=100, help="tokens per round (default: 100)")
    p.add_argument("--rounds", type=int, default=10, help="interleaved rounds (default: 10)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke check")
    p.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md")
    a = p.parse_args(argv)
    if a.quick:
        a.size, a.tokens, a.rounds = 16, 5, 2
    table = variants(a.size, a.layers)
    medians = per_token({n: m for n, (m, _) in table.items()}, a.size, a.tokens, a.rounds)
    argv = sys.argv[1:] if argv is None else argv
    command = shlex.join(["python", os.path.relpath(__file__), *argv])
    section = markdown(a, medians, {n: t for n, (_, t) in table.items()}, command)
    print(section)
    if not a.no_write:
        update_results(section, key="generate", title="Generation latency (bench_generate.py)")


if __name__ == "__main__":
    main()
