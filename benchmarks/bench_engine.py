"""Engine speed and memory against torch.nn, measured as ratios in one run.

Every variant is timed on the same data, forward + backward in train mode, each in a
process of its own, with the repeats interleaved (A, B, C, then B, C, A, ...: the order
rotates each round) so that noise from a shared machine falls on all of them alike; the
median is reported with its ratio to the anchor timed in the same run. Peak memory is
measured in a fresh subprocess per variant (the hidden ``--_memory-probe NAME`` option).

    python benchmarks/bench_engine.py            # full run, writes RESULTS.md and JSON
    python benchmarks/bench_engine.py --quick --no-write
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import nn

import rnnkit
from rnnkit.backends._heap import keep_freed_memory

HERE = os.path.dirname(os.path.abspath(__file__))
SIZES = (("batch", 32, "batch size B"), ("steps", 100, "sequence length T"),
         ("input", 128, "input size"), ("hidden", 256, "hidden size"),
         ("layers", 2, "stacked layers"))
#: Seconds between two processes' turns: the last one's OpenMP threads spin for a few ms
#: after its step, and would otherwise take the cores from the next (B=8 ran 1.5x slower).
TURN_PAUSE = 0.05
#: A turn runs as many iterations as take about this long (one at least), and counts
#: their mean: a turn's first iteration after another process's pays for the caches
#: that process emptied, which at B=8 (10-15 ms an iteration) moved a row by ±30%.
TURN_SECONDS = 0.1
REGULARISED = dict(layer_norm=True, recurrent_dropout=0.25, zoneout=0.1)
# What a backend that is missing or half-written raises: its row reads "unavailable".
UNAVAILABLE = (ImportError, AttributeError, NotImplementedError)
# Peak memory rows: name -> (anchor, target ratio or None). A row anchored to itself is
# shown as 1.00, a reference point.
MEMORY = {
    "LN+rdrop+zoneout LSTM fused": ("LN+rdrop+zoneout LSTM reference", 1.0),
    "LN+rdrop+zoneout LSTM reference": ("LN+rdrop+zoneout LSTM reference", None),
    "rnnkit.LSTM fused": ("rnnkit.LSTM reference", 1.0),
    "rnnkit.LSTM reference": ("rnnkit.LSTM reference", None),
    "torch.nn.LSTM": ("torch.nn.LSTM", None),
}


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
    """name -> (builder, uses lengths, anchor name, target ratio(s) or None).

    Targets: the engine's (``auto`` at native speed, the regularised LSTM within 1.5,
    lengths no slower than padded) and, as a second figure, the fused backend's speed
    targets (plain LSTM and GRU at 0.9 of native, the regularised LSTM at 1.0)."""
    I, H, L = a.input, a.hidden, a.layers
    lstm = lambda **kw: (lambda: rnnkit.LSTM(I, H, L, **kw))
    gru = lambda **kw: (lambda: rnnkit.GRU(I, H, L, **kw))
    return {
        "torch.nn.LSTM": (lambda: nn.LSTM(I, H, L), False, "torch.nn.LSTM", None),
        "torch.nn.GRU": (lambda: nn.GRU(I, H, L), False, "torch.nn.GRU", None),
        "torch.nn.RNN": (lambda: nn.RNN(I, H, L), False, "torch.nn.RNN", None),
        **{f"torch.nn.{kind}, freed memory kept":
           (lambda kind=kind: kept_heap(getattr(nn, kind)(I, H, L)), False, f"torch.nn.{kind}",
            None) for kind in ("LSTM", "GRU", "RNN")},
        "nn.LSTMCell loop": (lambda: CellLoop(I, H, L), False, "torch.nn.LSTM", None),
        "layer-norm LSTMCell loop": (lambda: CellLoop(I, H, L, True), False, "torch.nn.LSTM", None),
        "rnnkit.LSTM auto": (lstm(), False, "torch.nn.LSTM", 1.05),
        "rnnkit.GRU auto": (gru(), False, "torch.nn.GRU", 1.05),
        "rnnkit.RNN auto": (lambda: rnnkit.RNN(I, H, L), False, "torch.nn.RNN", 1.05),
        "rnnkit.LSTM fused": (lstm(backend="fused"), False, "torch.nn.LSTM", 0.9),
        "rnnkit.GRU fused": (gru(backend="fused"), False, "torch.nn.GRU", 0.9),
        "rnnkit.RNN fused":
            (lambda: rnnkit.RNN(I, H, L, backend="fused"), False, "torch.nn.RNN", None),
        "rnnkit.LSTM reference": (lstm(backend="reference"), False, "torch.nn.LSTM", None),
        "LN+rdrop+zoneout LSTM fused":
            (lstm(backend="fused", **REGULARISED), False, "torch.nn.LSTM", (1.5, 1.0)),
        "LN+rdrop+zoneout LSTM reference":
            (lstm(backend="reference", **REGULARISED), False, "torch.nn.LSTM", None),
        "LN+rdrop+zoneout GRU fused":
            (gru(backend="fused", **REGULARISED), False, "torch.nn.GRU", None),
        "rnnkit.LSTM auto, lengths": (lstm(), True, "rnnkit.LSTM auto", 1.0),
        "rnnkit.LSTM fused, lengths": (lstm(backend="fused"), True, "rnnkit.LSTM fused", 1.0),
    }


def kept_heap(model):
    """``model`` in a process where glibc keeps freed memory, as it does once rnnkit's CPU
    kernels have loaded (``rnnkit.backends._heap``): what part of a fused row's lead over
    its ``torch.nn`` anchor is that setting rather than the kernels (each variant runs in
    a process of its own, so it reaches this row only)."""
    keep_freed_memory()
    return model


def make_data(a):
    torch.manual_seed(0)
    x = torch.randn(a.steps, a.batch, a.input)  # (T, B, I)
    lengths = torch.full((a.batch,), a.steps)
    lengths[: a.batch // 2] = a.steps // 2  # half the batch at half length
    return x, lengths


def iteration(model, x, lengths=None):
    out, _ = model(x, lengths=lengths) if lengths is not None else model(x)
    out.sum().backward()


def unavailable(e: Exception) -> str:
    return f"unavailable ({type(e).__name__}: {e})"


def time_all(a, names):
    """name -> median seconds per forward + backward, or the reason it could not run.

    The variants measured against one anchor (``torch.nn.LSTM``, ``torch.nn.GRU``,
    ``torch.nn.RNN``, directly or through another row) are timed together, one family
    after another: with all seventeen processes alive at once, ``torch.nn.LSTM``'s
    iterations, which fault 16,000 pages in each, took 136-173 ms in four runs against
    111-122 in most runs of its own family (the same number of faults, each dearer)."""
    spec = variants(a)
    root = {}
    for n in names:
        anchor = n
        while spec[anchor][2] != anchor:
            anchor = spec[anchor][2]
        root[n] = anchor
    results = {}
    for family in dict.fromkeys(root.values()):
        results.update(_time_family(a, [n for n in names if root[n] == family]))
    return {n: results[n] for n in names}


def _time_family(a, names):
    """name -> median seconds (or the reason it could not run) for variants timed together.

    Each variant runs in a process of its own (forked before any computation here), so
    that one variant's allocations do not shape another's heap: in one shared process,
    whether glibc can reuse freed memory or has to grow the heap again and fault its
    pages in depended on which variants ran before. The processes take turns (about
    :data:`TURN_SECONDS` of iterations each) in the rotating order."""
    ctx = multiprocessing.get_context("fork")
    workers, results = {}, {}
    for n in names:  # built and warmed up one after another, each alone on the machine
        here, there = ctx.Pipe()
        proc = ctx.Process(target=_timing_worker, args=(a, n, there), daemon=True)
        proc.start()
        reply = _receive(here, n)
        if reply == "ready":
            workers[n] = (proc, here)
        else:
            results[n] = reply
            proc.join()
    order, times = list(workers), {n: [] for n in workers}
    for r in range(a.repeats if order else 0):
        for n in order[r % len(order):] + order[: r % len(order)]:
            time.sleep(TURN_PAUSE)
            workers[n][1].send(True)
            times[n].append(_receive(workers[n][1], n))
    for proc, conn in workers.values():
        conn.send(False)
        proc.join()
    results.update({n: statistics.median(v) for n, v in times.items()})
    return results


def _receive(conn, name):
    try:
        reply = conn.recv()
    except EOFError:
        raise RuntimeError(f"the timing process of {name!r} died") from None
    if isinstance(reply, dict):  # an error other than an unavailable backend
        raise RuntimeError(f"{name!r} failed:\n{reply['error']}")
    return reply


def _timing_worker(a, name, conn):
    """One variant: build, warm up (at least once: that is where a backend loads), say
    "ready" (or why it is unavailable), then at each request time a turn of iterations
    (:data:`TURN_SECONDS`) and send their mean."""
    try:
        x, lengths = make_data(a)
        builder, uses_lengths = variants(a)[name][:2]
        lengths = lengths if uses_lengths else None
        try:
            model = builder().train()
            for _ in range(max(1, a.warmup)):
                t0 = time.perf_counter()
                iteration(model, x, lengths)
                took = time.perf_counter() - t0
        except UNAVAILABLE as e:
            conn.send(unavailable(e))
            return
        conn.send("ready")
        per_turn = max(1, round(TURN_SECONDS / took))
        while conn.recv():
            t0 = time.perf_counter()
            for _ in range(per_turn):
                for p in model.parameters():
                    p.grad = None
                iteration(model, x, lengths)
            conn.send((time.perf_counter() - t0) / per_turn)
    except Exception:  # noqa: BLE001 - reported by the parent
        conn.send({"error": traceback.format_exc()})


def _status_kib(field):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith(field + ":"))


def memory_probe(a, name):
    """Run in a fresh process: peak RSS growth (MiB) of one training iteration.

    A tiny iteration (T=2, B=1) first loads lazy code paths and allocates the parameter
    gradients, so neither is counted. Then Linux's peak-RSS mark (VmHWM) is reset
    (clear_refs 5) and the figure is the full iteration's peak above the RSS before it.
    Where the mark cannot be reset, ru_maxrss growth is used: a lower bound, since
    importing torch may already have set a higher peak."""
    x, lengths = make_data(a)
    builder, uses_lengths = variants(a)[name][:2]
    try:
        model = builder().train()
        iteration(model, x[:2, :1], lengths[:1].clamp(max=2) if uses_lengths else None)
    except UNAVAILABLE as e:
        return {"unavailable": unavailable(e)}
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        method, before = "VmHWM", _status_kib("VmRSS")
    except OSError:
        method, before = "ru_maxrss", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    iteration(model, x, lengths if uses_lengths else None)
    peak = _status_kib("VmHWM") if method == "VmHWM" else \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"mib": (peak - before) / 1024, "method": method}


def measure_memory(a, names):
    """name -> MiB or the reason; one fresh process each, run side by side (each
    process's RSS is its own, and no timing runs meanwhile)."""
    def probe(name):
        cmd = [sys.executable, os.path.abspath(__file__), "--_memory-probe", name, *size_args(a)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"memory probe {name!r} failed:\n{r.stderr}")
        out = json.loads(r.stdout.strip().splitlines()[-1])
        return out.get("unavailable") or out["mib"], out.get("method")

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        found = dict(zip(names, pool.map(probe, names)))
    methods = {m for _, m in found.values() if m}
    return {n: v for n, (v, _) in found.items()}, ", ".join(sorted(methods))


def size_args(a):
    return [arg for name, _, _ in SIZES for arg in (f"--{name}", str(getattr(a, name)))]


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


def _verdict(ratio, target):
    targets = target if isinstance(target, tuple) else (target,)
    return " / ".join("PASS" if ratio <= t else "FAIL" for t in targets)


def _target_text(target):
    if target is None:
        return ""
    return " / ".join(f"≤ {t}" for t in (target if isinstance(target, tuple) else (target,)))


def build_rows(values, spec, key, scale, digits=1):
    """values: name -> figure or reason; spec: name -> (anchor, target). The verdict is
    PASS or FAIL per target where there is one, "unavailable" where the row could not run.
    Figures are rounded to ``digits`` decimals after ``scale``."""
    rows = []
    for n, v in values.items():
        anchor, target = spec[n]
        base = values.get(anchor)
        ok = isinstance(v, float) and isinstance(base, float)
        ratio = v / base if ok else None
        verdict = "unavailable" if isinstance(v, str) else "" if target is None else \
            "—" if ratio is None else _verdict(ratio, target)
        rows.append({"name": n, key: round(v * scale, digits) if isinstance(v, float) else v,
                     "anchor": anchor, "ratio": None if ratio is None else round(ratio, 2),
                     "target": target, "verdict": verdict})
    return rows


def table(rows, key, unit):
    lines = [f"| variant | {unit} | ratio | to | target | |", "|---|---:|---:|---|---:|---|"]
    for r in rows:
        value = r[key] if isinstance(r[key], float) else "unavailable"
        cells = [r["name"], value, "" if r["ratio"] is None else f"{r['ratio']:.2f}",
                 "(anchor)" if r["anchor"] == r["name"] else r["anchor"],
                 _target_text(r["target"]), r["verdict"]]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return lines


def markdown(result):
    a, m = result["config"], result["machine"]
    lines = [f"Command: `{result['command']}`  ",
             f"Machine: {m['cpu']}, {m['cores']} cores, {m['threads']} torch threads, "
             f"torch {m['torch']}, {m['date']}  ",
             f"Config: B={a['batch']}, T={a['steps']}, input {a['input']}, hidden {a['hidden']}, "
             f"{a['layers']} layers, float32, train mode, forward + backward (loss = sum); "
             f"median of {a['repeats']} interleaved repeats after {a['warmup']} warm-up. "
             "Lengths rows: half the batch at T/2, against the same backend on the padded "
             "batch.", "", *table(result["rows"], "ms", "ms")]
    if result["memory"]:
        lines += ["", "Peak memory of one training iteration, MiB: growth of the process's "
                  f"peak RSS ({result['memory_method']}), a fresh process each, after a tiny "
                  "warm-up iteration.", "", *table(result["memory"], "mib", "MiB")]
    reasons = dict.fromkeys(f"- {r['name']}: {r[key]}" for rows, key in
                            ((result["rows"], "ms"), (result["memory"], "mib"))
                            for r in rows if isinstance(r[key], str))
    return "\n".join(lines + ["", *reasons] if reasons else lines)


def write_atomically(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be read
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def update_results(section, key="engine", title="Engine speed (bench_engine.py)"):
    """Replace the ``key`` section of RESULTS.md (between its ``<!-- key:start -->`` and
    ``<!-- key:end -->`` marks), keeping the rest of the file."""
    path = os.path.join(HERE, "RESULTS.md")
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    text = "# Benchmark results\n"
    if os.path.exists(path):
        with open(path) as f:
            text = f.read()
    block = f"{start}\n## {title}\n\n{section}\n{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    write_atomically(path, text)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for name, default, what in SIZES:
        p.add_argument(f"--{name}", type=int, default=default, help=f"{what} (default: {default})")
    p.add_argument("--repeats", type=int, default=7,
                   help="timed repeats per variant, interleaved (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=2,
                   help="untimed iterations per variant, at least 1 (default: %(default)s)")
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes (B=4, T=8, 8/16), 1 warm-up, 2 repeats: a smoke check")
    p.add_argument("--only", default="", metavar="PATTERN",
                   help="run only variants whose name contains PATTERN (their anchors too)")
    p.add_argument("--no-write", action="store_true",
                   help="print the tables only; write neither RESULTS.md nor the JSON")
    p.add_argument("--_memory-probe", dest="memory_probe", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.quick:
        a.batch, a.steps, a.input, a.hidden, a.layers, a.repeats, a.warmup = 4, 8, 8, 16, 2, 2, 1
    return a


def with_anchors(names, spec):
    """Names plus the anchors their ratios need, in the order of ``spec``."""
    wanted = set(names) | {spec[n][0] for n in names}
    return [n for n in spec if n in wanted]


def main(argv=None):
    a = parse_args(argv)
    if a.memory_probe:
        print(json.dumps(memory_probe(a, a.memory_probe)))
        return
    speed = {n: v[2:] for n, v in variants(a).items()}
    names = with_anchors([n for n in speed if a.only in n], speed)
    mem_names = with_anchors([n for n in MEMORY if a.only in n], MEMORY)
    medians = time_all(a, names)
    memory, method = measure_memory(a, mem_names) if mem_names else ({}, "")
    argv = sys.argv if argv is None else [os.path.relpath(__file__), *argv]
    python = os.path.relpath(sys.executable) if sys.executable.startswith(os.getcwd()) else "python"
    result = {"command": shlex.join([python, *argv]),
              "machine": machine(), "config": {k: getattr(a, k) for k in
              [s[0] for s in SIZES] + ["repeats", "warmup", "only"]},
              "rows": build_rows(medians, speed, "ms", 1e3),
              "memory": build_rows(memory, MEMORY, "mib", 1.0), "memory_method": method}
    section = markdown(result)
    print(section)
    if not a.no_write:
        sizes = {k: getattr(a, k) for k, _, _ in SIZES}
        default = sizes == {k: d for k, d, _ in SIZES}
        tag = "" if default else "-" + "-".join(f"{k[0]}{v}" for k, v in sizes.items())
        write_atomically(os.path.join(HERE, "results", f"engine{tag}.json"),
                         json.dumps(result, indent=1, ensure_ascii=False) + "\n")
        title = "Engine speed (bench_engine.py)" if default else \
            f"Engine speed at B={a.batch}, H={a.hidden} (bench_engine.py)"
        update_results(section, key=f"engine{tag}", title=title)


if __name__ == "__main__":
    main()
