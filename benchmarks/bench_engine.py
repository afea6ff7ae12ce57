"""Engine speed against torch.nn, measured as ratios in one run.

Every variant is timed on the same data, forward + backward, with the repeats
interleaved (variant A, B, C, A, B, C, ...) so that noise from a shared machine falls
on all of them alike; the median is reported with its ratio to the anchor timed in
the same run. Peak memory is measured in a fresh subprocess per variant.

    python benchmarks/bench_engine.py            # full run, writes RESULTS.md
    python benchmarks/bench_engine.py --quick --no-write
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import torch
from torch import nn

import rnnkit

HERE = os.path.dirname(os.path.abspath(__file__))
REGULARISED = dict(layer_norm=True, recurrent_dropout=0.25, zoneout=0.1)


class CellLoop(nn.Module):
    """A per-step loop of stacked nn.LSTMCell, optionally with layer norm: how people
    write an LSTM that torch.nn.LSTM cannot express."""

    def __init__(self, i: int, h: int, layers: int, layer_norm: bool = False):
        super().__init__()
        self.cells = nn.ModuleList(nn.LSTMCell(i if k == 0 else h, h) for k in range(layers))
        self.norms = nn.ModuleList(nn.LayerNorm(4 * h) for _ in range(layers * 2)) \
            if layer_norm else None
        self.h = h

    def forward(self, x):  # (T, B, I) -> (T, B, H)
        for k, cell in enumerate(self.cells):
            h = c = x.new_zeros(x.shape[1], self.h)
            outs = []
            for x_t in x:
                if self.norms is None:
                    h, c = cell(x_t, (h, c))
                else:
                    gates = self.norms[2 * k](x_t @ cell.weight_ih.t()) \
                        + self.norms[2 * k + 1](h @ cell.weight_hh.t()) + cell.bias_ih
                    i, f, g, o = gates.chunk(4, 1)
                    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                    h = torch.sigmoid(o) * torch.tanh(c)
                outs.append(h)
            x = torch.stack(outs)
        return x, None


def variants(a):
    """name -> (builder, uses lengths, anchor name, target ratio or None)."""
    I, H, L = a.input, a.hidden, a.layers
    lstm = lambda **kw: (lambda: rnnkit.LSTM(I, H, L, **kw))
    return {
        "torch.nn.LSTM": (lambda: nn.LSTM(I, H, L), False, None, None),
        "torch.nn.GRU": (lambda: nn.GRU(I, H, L), False, None, None),
        "torch.nn.RNN": (lambda: nn.RNN(I, H, L), False, None, None),
        "nn.LSTMCell loop": (lambda: CellLoop(I, H, L), False, "torch.nn.LSTM", None),
        "layer-norm LSTMCell loop": (lambda: CellLoop(I, H, L, True), False, "torch.nn.LSTM", None),
        "rnnkit.LSTM auto": (lstm(), False, "torch.nn.LSTM", 1.05),
        "rnnkit.GRU auto": (lambda: rnnkit.GRU(I, H, L), False, "torch.nn.GRU", 1.05),
        "rnnkit.RNN auto": (lambda: rnnkit.RNN(I, H, L), False, "torch.nn.RNN", 1.05),
        "rnnkit.LSTM fused": (lstm(backend="fused"), False, "torch.nn.LSTM", None),
        "rnnkit.GRU fused":
            (lambda: rnnkit.GRU(I, H, L, backend="fused"), False, "torch.nn.GRU", None),
        "rnnkit.LSTM reference": (lstm(backend="reference"), False, "torch.nn.LSTM", None),
        "LN+rdrop+zoneout LSTM fused":
            (lstm(backend="fused", **REGULARISED), False, "torch.nn.LSTM", 1.5),
        "LN+rdrop+zoneout LSTM reference":
            (lstm(backend="reference", **REGULARISED), False, "torch.nn.LSTM", None),
        "rnnkit.LSTM auto, lengths": (lstm(), True, "rnnkit.LSTM auto", 1.0),
        "rnnkit.LSTM fused, lengths": (lstm(backend="fused"), True, "rnnkit.LSTM fused", 1.0),
    }


def make_data(a):
    torch.manual_seed(0)
    x = torch.randn(a.steps, a.batch, a.input)
    lengths = torch.full((a.batch,), a.steps)
    lengths[: a.batch // 2] = a.steps // 2  # half the batch at half length
    return x, lengths


def iteration(model, x, lengths):
    out, _ = model(x, lengths=lengths) if lengths is not None else model(x)
    out.sum().backward()


def time_all(a, names):
    x, lengths = make_data(a)
    table = variants(a)
    models = {n: table[n][0]().train() for n in names}
    times = {n: [] for n in names}
    for n in names:  # warm-up
        for _ in range(a.warmup):
            iteration(models[n], x, lengths if table[n][1] else None)
    for _ in range(a.repeats):
        for n in names:
            for p in models[n].parameters():
                p.grad = None
            t0 = time.perf_counter()
            iteration(models[n], x, lengths if table[n][1] else None)
            times[n].append(time.perf_counter() - t0)
    return {n: statistics.median(v) for n, v in times.items()}


def _status_kib(field):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith(field + ":"))


def memory_probe(a, name):
    """Run in a fresh process: peak RSS growth (MiB) of one training iteration.

    Linux's peak-RSS mark (VmHWM) is reset just before the iteration (clear_refs 5), so
    the figure is the iteration's own peak above the memory held before it. It is the
    first iteration: after one, freed memory kept by the C allocator would hide reuse."""
    x, lengths = make_data(a)
    builder, uses_lengths = variants(a)[name][:2]
    model = builder().train()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status_kib("VmRSS")
    iteration(model, x, lengths if uses_lengths else None)
    return (_status_kib("VmHWM") - before) / 1024


def measure_memory(a, name):
    cmd = [sys.executable, os.path.abspath(__file__), "--_memory-probe", name] + size_args(a)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def size_args(a):
    return ["--batch", str(a.batch), "--steps", str(a.steps), "--input", str(a.input),
            "--hidden", str(a.hidden), "--layers", str(a.layers)]


def machine():
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "date": datetime.date.today().isoformat()}


def build_rows(a, medians):
    table, rows = variants(a), []
    for n, t in medians.items():
        anchor, target = table[n][2], table[n][3]
        ratio = t / medians[anchor] if anchor in medians else None
        verdict = "" if target is None or ratio is None else ("PASS" if ratio <= target else "FAIL")
        rows.append({"name": n, "ms": round(t * 1e3, 1), "anchor": anchor or "—",
                     "ratio": None if ratio is None else round(ratio, 2),
                     "target": target, "verdict": verdict})
    return rows


def markdown(result):
    a = result["config"]
    lines = [f"Command: `{result['command']}`  ",
             f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores, "
             f"{result['machine']['threads']} torch threads, torch {result['machine']['torch']}, "
             f"{result['machine']['date']}  ",
             f"Config: B={a['batch']}, T={a['steps']}, input {a['input']}, hidden {a['hidden']}, "
             f"{a['layers']} layers, float32, train mode, forward + backward; median of "
             f"{a['repeats']} interleaved repeats after {a['warmup']} warm-up. Lengths rows: half "
             "the batch at T/2.", "",
             "| variant | ms | ratio | to | target | |", "|---|---:|---:|---|---:|---|"]
    for r in result["rows"]:
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}"
        target = "" if r["target"] is None else f"≤ {r['target']}"
        cells = [r["name"], r["ms"], ratio, r["anchor"], target, r["verdict"]]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    if result.get("memory"):
        m = result["memory"]
        lines += ["", "Peak memory of one training iteration (growth of the process's peak RSS, "
                  "fresh process each), MiB:", "", "| variant | MiB |", "|---|---:|"]
        lines += [f"| {k} | {v:.1f} |" for k, v in m.items()]
    return "\n".join(lines)


def write_atomically(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path))
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def update_results(section):
    path = os.path.join(HERE, "RESULTS.md")
    start, end = "<!-- engine:start -->", "<!-- engine:end -->"
    text = "# Benchmark results\n"
    if os.path.exists(path):
        with open(path) as f:
            text = f.read()
    block = f"{start}\n## Engine speed (bench_engine.py)\n\n{section}\n{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    write_atomically(path, text)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=32, help="batch size B (default: %(default)s)")
    p.add_argument("--steps", type=int, default=100,
                   help="sequence length T (default: %(default)s)")
    p.add_argument("--input", type=int, default=128, help="input size (default: %(default)s)")
    p.add_argument("--hidden", type=int, default=256, help="hidden size (default: %(default)s)")
    p.add_argument("--layers", type=int, default=2, help="stacked layers (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=7, help="timed repeats (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=2,
                   help="warm-up iterations (default: %(default)s)")
    p.add_argument("--quick", action="store_true", help="tiny sizes and 2 repeats: a smoke check")
    p.add_argument("--only", default="", help="time only variants whose name contains this")
    p.add_argument("--no-write", action="store_true", help="print only; write no files")
    p.add_argument("--_memory-probe", dest="memory_probe", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.quick:
        a.batch, a.steps, a.input, a.hidden, a.layers, a.repeats, a.warmup = 4, 8, 8, 16, 2, 2, 1
    return a


def main(argv=None):
    a = parse_args(argv)
    if a.memory_probe:
        print(memory_probe(a, a.memory_probe))
        return
    names = [n for n in variants(a) if a.only in n]
    names = list(dict.fromkeys([variants(a)[n][2] for n in names if variants(a)[n][2]] + names))
    medians = time_all(a, names)
    mem_names = [n for n in ("LN+rdrop+zoneout LSTM fused", "LN+rdrop+zoneout LSTM reference",
                             "rnnkit.LSTM fused", "rnnkit.LSTM reference", "torch.nn.LSTM")
                 if n in names]
    command = " ".join(["python benchmarks/bench_engine.py", *(argv or sys.argv[1:])])
    result = {"command": command,
              "machine": machine(), "config": {k: getattr(a, k) for k in
              ("batch", "steps", "input", "hidden", "layers", "repeats", "warmup")},
              "rows": build_rows(a, medians),
              "memory": {n: measure_memory(a, n) for n in mem_names}}
    section = markdown(result)
    print(section)
    if not a.no_write:
        write_atomically(os.path.join(HERE, "results", "engine.json"), json.dumps(result, indent=1))
        update_results(section)


if __name__ == "__main__":
    main()
