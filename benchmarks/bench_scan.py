"""Training time of minGRU/minLSTM by parallel scan against torch.nn.LSTM and a loop.

For each sequence length T, every variant is timed on the same data, one forward +
backward in train mode (loss = output.sum()), its repeats interleaved with the others'
(the order rotating each round) so that noise from a shared machine falls on all alike;
the median is reported with two ratios taken in the same run: to ``torch.nn.LSTM`` and
to a per-step loop of the same min cell (``MinGRUCell``/``MinLSTMCell`` called once a
step, as one writes it without a scan).

    python benchmarks/bench_scan.py                 # T = 128, 512, 2048; writes RESULTS.md
    python benchmarks/bench_scan.py --quick --no-write
    python benchmarks/bench_scan.py --device cuda   # on a GPU (its own RESULTS.md section)
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time

import torch
from bench_engine import HERE, machine, update_results, write_atomically
from torch import nn

import rnnkit
from rnnkit.layers.minimal import SCANS

SIZES = (("batch", 16, "batch size B"), ("input", 256, "input size"),
         ("hidden", 256, "hidden size"))


class CellLoop(nn.Module):
    """A min cell called once per time step: the sequential baseline of the scan."""

    def __init__(self, cell: nn.Module):
        super().__init__()
        self.cell = cell

    def forward(self, x):  # (T, B, I) -> (T, B, H)
        h, outs = None, []
        for x_t in x:
            h = self.cell(x_t, h)
            outs.append(h)
        return torch.stack(outs), h


def variants(a):
    """name -> (builder, the loop it is compared with, or None); each scan's row is named
    from the very value it passes, so a changed default cannot mislabel a row."""
    I, H = a.input, a.hidden
    table = {"torch.nn.LSTM": (lambda: nn.LSTM(I, H), None)}
    for layer, cell in ((rnnkit.MinGRU, rnnkit.MinGRUCell), (rnnkit.MinLSTM, rnnkit.MinLSTMCell)):
        loop = f"{cell.__name__} loop"
        table[loop] = (lambda cell=cell: CellLoop(cell(I, H)), None)
        for scan in SCANS:
            table[f"{layer.__name__} scan={scan!r}"] = \
                (lambda layer=layer, scan=scan: layer(I, H, scan=scan), loop)
    return table


def iteration(model, x):
    out, _ = model(x)
    out.sum().backward()


def sync(device: str) -> None:
    """Wait for the device's queued work, so a host clock times it (a no-op on CPU)."""
    if device == "cuda":
        torch.cuda.synchronize()


def time_all(a, steps: int) -> dict[str, float]:
    """name -> median seconds of one forward + backward at sequence length ``steps``."""
    torch.manual_seed(0)
    x = torch.randn(steps, a.batch, a.input, device=a.device)  # (T, B, I)
    models = {n: build().to(a.device).train() for n, (build, _) in variants(a).items()}
    for model in models.values():
        for _ in range(max(1, a.warmup)):
            iteration(model, x)
    order, times = list(models), {n: [] for n in models}
    for r in range(a.repeats):
        for n in order[r % len(order):] + order[: r % len(order)]:
            for p in models[n].parameters():
                p.grad = None
            sync(a.device)
            t0 = time.perf_counter()
            iteration(models[n], x)
            sync(a.device)
            times[n].append(time.perf_counter() - t0)
    return {n: statistics.median(v) for n, v in times.items()}


def build_rows(a, medians: dict[int, dict[str, float]]) -> list[dict]:
    spec = variants(a)
    rows = []
    for steps, by_name in medians.items():
        for n, seconds in by_name.items():
            loop = spec[n][1]
            rows.append({"steps": steps, "name": n, "ms": round(seconds * 1e3, 1),
                         "vs_lstm": round(seconds / by_name["torch.nn.LSTM"], 3),
                         "loop": loop,
                         "speedup": None if loop is None else round(by_name[loop] / seconds, 1)})
    return rows


def markdown(result) -> str:
    a, m = result["config"], result["machine"]
    where = (f"{m['gpu']}, torch {m['torch']}, {m['date']}  " if "gpu" in m else
             f"{m['cpu']}, {m['cores']} cores, {m['threads']} torch threads, "
             f"torch {m['torch']} CPU, {m['date']}. The machine was shared with other work "
             "while this ran: absolute times drift, the ratios (taken within one run, "
             "repeats interleaved) are the figures to read.  ")
    lines = [f"Command: `{result['command']}`  ", f"Machine: {where}",
             f"Config: B={a['batch']}, input {a['input']}, hidden {a['hidden']}, 1 layer, "
             "float32, train mode, forward + backward (loss = output.sum()); median of "
             f"{a['repeats']} interleaved repeats after {a['warmup']} warm-up, per T.",
             "", "| T | variant | ms | × torch.nn.LSTM | speed-up over the cell loop |",
             "|---:|---|---:|---:|---:|"]
    for r in result["rows"]:
        speedup = "" if r["speedup"] is None else f"{r['speedup']:.1f}×"
        lines.append(f"| {r['steps']} | {r['name']} | {r['ms']} | {r['vs_lstm']:.2f} | "
                     f"{speedup} |")
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for name, default, what in SIZES:
        p.add_argument(f"--{name}", type=int, default=default, help=f"{what} (default: {default})")
    p.add_argument("--steps", default="128,512,2048",
                   help="sequence lengths T, comma-separated (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=7,
                   help="timed repeats per variant, interleaved (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=2,
                   help="untimed iterations per variant, at least 1 (default: %(default)s)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads (default: torch's own choice); on a shared machine "
                        "1 thread is the steadiest, as no thread waits on a descheduled one")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="where to train (default: cpu); cuda times with synchronisation")
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes (B=2, T=8,32, 8/16), 1 warm-up, 2 repeats: a smoke check")
    p.add_argument("--no-write", action="store_true",
                   help="print the table only; write neither RESULTS.md nor the JSON")
    a = p.parse_args(argv)
    if a.quick:
        a.batch, a.input, a.hidden, a.steps, a.repeats, a.warmup = 2, 8, 16, "8,32", 2, 1
    a.steps = [int(s) for s in str(a.steps).split(",")]
    return a


def main(argv=None):
    a = parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    medians = {steps: time_all(a, steps) for steps in a.steps}
    argv = sys.argv if argv is None else [os.path.relpath(__file__), *argv]
    python = os.path.relpath(sys.executable) if sys.executable.startswith(os.getcwd()) else "python"
    info = machine()
    if a.device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
    result = {"command": shlex.join([python, *argv]), "machine": info,
              "config": {k: getattr(a, k) for k in
                         [s[0] for s in SIZES] + ["steps", "repeats", "warmup"]},
              "rows": build_rows(a, medians)}
    section = markdown(result)
    print(section)
    if not a.no_write:
        key = "scan" if a.device == "cpu" else "scan-cuda"
        write_atomically(os.path.join(HERE, "results", f"{key}.json"),
                         json.dumps(result, indent=1, ensure_ascii=False) + "\n")
        title = "Parallel-scan cells (bench_scan.py)" + (", GPU" if a.device == "cuda" else "")
        update_results(section, key=key, title=title)


if __name__ == "__main__":
    main()
