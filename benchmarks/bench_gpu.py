"""GPU speed and memory against cuDNN, measured as ratios in one run.

The config of PyTorch's own fastrnns benchmark: T=100, B=64, input 512, hidden 512,
1 layer, forward + backward (loss = sum), train mode. Each variant is timed with CUDA
events around ``--inner`` iterations, the repeats interleaved (the order rotates each
round) and the median reported with its ratio to cuDNN's ``torch.nn`` layer timed in the
same run. Peak memory is ``torch.cuda.max_memory_allocated`` over one iteration, above
what was allocated before it (parameters, gradients and data), each variant alone.

``graphed`` rows capture the whole forward and backward in CUDA graphs with
:func:`rnnkit.graphed` (``torch.cuda.make_graphed_callables`` underneath) and replay them.

    python benchmarks/bench_gpu.py                       # float32 and bf16, writes RESULTS.md
    python benchmarks/bench_gpu.py --dtype float32 --only LSTM --no-write
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import warnings

import torch
from torch import nn

import rnnkit

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_engine import (  # noqa: E402
    REGULARISED,
    CellLoop,
    build_rows,
    table,
    update_results,
)

SIZES = (("batch", 64, "batch size B"), ("steps", 100, "sequence length T"),
         ("input", 512, "input size"), ("hidden", 512, "hidden size"),
         ("layers", 1, "stacked layers"))
DTYPES = {"float32": torch.float32, "bf16": torch.bfloat16}
#: memory rows: name -> (anchor, target)
MEMORY = {
    "torch.nn.LSTM": ("torch.nn.LSTM", None),
    "rnnkit.LSTM fused": ("torch.nn.LSTM", 1.0),
    "LN+rdrop+zoneout LSTM fused": ("torch.nn.LSTM", 1.0),
    "LN+rdrop+zoneout LSTM fused, graphed": ("torch.nn.LSTM", 1.0),
    "LN+rdrop+zoneout LSTM reference": ("torch.nn.LSTM", None),
    "rnnkit.LSTM fused, graphed": ("torch.nn.LSTM", None),
}


def variants(a):
    """name -> (builder, uses lengths, graphed, anchor, target or None)."""
    I, H, L = a.input, a.hidden, a.layers
    lstm = lambda **kw: (lambda: rnnkit.LSTM(I, H, L, **kw))
    gru = lambda **kw: (lambda: rnnkit.GRU(I, H, L, **kw))
    rnn = lambda **kw: (lambda: rnnkit.RNN(I, H, L, **kw))
    reg = dict(backend="fused", **REGULARISED)
    return {
        "torch.nn.LSTM": (lambda: nn.LSTM(I, H, L), False, False, "torch.nn.LSTM", None),
        "rnnkit.LSTM auto": (lstm(), False, False, "torch.nn.LSTM", 1.05),
        "rnnkit.LSTM fused": (lstm(backend="fused"), False, False, "torch.nn.LSTM", None),
        "rnnkit.LSTM fused, graphed":
            (lstm(backend="fused"), False, True, "torch.nn.LSTM", None),
        "LN+rdrop+zoneout LSTM fused": (lstm(**reg), False, False, "torch.nn.LSTM", 1.3),
        "LN+rdrop+zoneout LSTM fused, graphed": (lstm(**reg), False, True, "torch.nn.LSTM", 1.3),
        "LN+rdrop+zoneout LSTM reference":
            (lstm(backend="reference", **REGULARISED), False, False, "torch.nn.LSTM", None),
        "layer-norm LSTMCell loop":
            (lambda: CellLoop(I, H, L, True), False, False, "torch.nn.LSTM", None),
        "rnnkit.LSTM fused, lengths":
            (lstm(backend="fused"), True, False, "rnnkit.LSTM fused", None),
        "rnnkit.LSTM auto, lengths": (lstm(), True, False, "rnnkit.LSTM auto", None),
        "torch.nn.GRU": (lambda: nn.GRU(I, H, L), False, False, "torch.nn.GRU", None),
        "rnnkit.GRU fused": (gru(backend="fused"), False, False, "torch.nn.GRU", None),
        "rnnkit.GRU fused, graphed": (gru(backend="fused"), False, True, "torch.nn.GRU", None),
        "LN+rdrop+zoneout GRU fused, graphed": (gru(**reg), False, True, "torch.nn.GRU", None),
        "torch.nn.RNN": (lambda: nn.RNN(I, H, L), False, False, "torch.nn.RNN", None),
        "rnnkit.RNN fused": (rnn(backend="fused"), False, False, "torch.nn.RNN", None),
        "rnnkit.RNN fused, graphed": (rnn(backend="fused"), False, True, "torch.nn.RNN", None),
    }


def make_data(a, dtype):
    torch.manual_seed(0)
    x = torch.randn(a.steps, a.batch, a.input, device="cuda", dtype=dtype)
    lengths = torch.full((a.batch,), a.steps)
    lengths[: a.batch // 2] = a.steps // 2  # half the batch at half length
    return x.requires_grad_(), lengths


def build(spec, x, dtype):
    """The model to time: a callable doing one forward + backward."""
    builder, uses_lengths, graphed = spec[:3]
    model = builder().to(device="cuda", dtype=dtype).train()
    lengths = spec[5] if len(spec) > 5 else None
    if graphed:
        model = rnnkit.graphed(model, x)

    def step():
        out = model(x, lengths=lengths)[0] if uses_lengths else model(x)[0]
        out.sum().backward()
    step.model = model
    return step


def time_all(a, dtype, names):
    x, lengths = make_data(a, dtype)
    table_ = variants(a)
    steps, results = {}, {}
    for n in names:
        spec = table_[n] + ((lengths,) if table_[n][1] else ())
        try:
            steps[n] = build(spec, x, dtype)
            with warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always")
                for _ in range(a.warmup):
                    steps[n]()
            for w in dict.fromkeys(str(w.message).split(".")[0] for w in seen):
                print(f"warning in {n}: {w}", file=sys.stderr)
            torch.cuda.synchronize()
        except Exception as e:  # a variant that cannot run here says why in its row
            steps.pop(n, None)
            results[n] = f"unavailable ({type(e).__name__}: {str(e).splitlines()[0][:120]})"
    order, times = list(steps), {n: [] for n in steps}
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for r in range(a.repeats if order else 0):
        for n in order[r % len(order):] + order[: r % len(order)]:
            begin.record()
            for _ in range(a.inner):
                x.grad = None
                steps[n]()
            end.record()
            end.synchronize()
            times[n].append(begin.elapsed_time(end) / a.inner / 1e3)
    results.update({n: statistics.median(v) for n, v in times.items()})
    return {n: results[n] for n in names}


def peak_memory(a, dtype, names):
    """name -> peak MiB of building the model and training it for ``warmup`` + 1
    iterations, above what was allocated before (the data): parameters, gradients,
    everything the iterations keep and, for graphed rows, the graphs' memory pools."""
    x, lengths = make_data(a, dtype)
    table_ = variants(a)
    found = {}
    for n in names:
        spec = table_[n] + ((lengths,) if table_[n][1] else ())
        x.grad = None
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        try:
            step = build(spec, x, dtype)
            for _ in range(a.warmup + 1):
                step()
            torch.cuda.synchronize()
            found[n] = (torch.cuda.max_memory_allocated() - before) / 2**20
            del step
        except Exception as e:
            found[n] = f"unavailable ({type(e).__name__}: {str(e).splitlines()[0][:120]})"
    return found


def machine():
    p = torch.cuda.get_device_properties(0)
    import triton
    return {"gpu": p.name, "sms": p.multi_processor_count, "torch": torch.__version__,
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "triton": triton.__version__, "date": datetime.date.today().isoformat()}


def markdown(result):
    a, m = result["config"], result["machine"]
    lines = [f"Command: `{result['command']}`  ",
             f"Machine: {m['gpu']} ({m['sms']} SMs), torch {m['torch']}, CUDA {m['cuda']}, "
             f"cuDNN {m['cudnn']}, Triton {m['triton']}, {m['date']}  ",
             f"Config: T={a['steps']}, B={a['batch']}, input {a['input']}, hidden {a['hidden']}, "
             f"{a['layers']} layer(s), train mode, forward + backward (loss = sum); median of "
             f"{a['repeats']} interleaved repeats of {a['inner']} iterations each (CUDA events) "
             f"after {a['warmup']} warm-up. "
             + ("TF32 off everywhere. " if a["no_tf32"] else "torch's TF32 defaults (cuDNN "
                "in TF32, the other float32 products in float32). ")
             + "Lengths rows: half the batch at T/2, "
             "against the same backend on the padded batch."]
    for dt, res in result["dtypes"].items():
        lines += ["", f"**{dt}**", "", *table(res["rows"], "ms", "ms")]
        if res["memory"]:
            lines += ["", f"Peak memory of training ({dt}), MiB: building the model and "
                      f"{a['warmup'] + 1} iterations, above what was allocated before (the "
                      "data); parameters and gradients included, and the graphs' memory "
                      "pools in graphed rows:", "", *table(res["memory"], "mib", "MiB")]
    reasons = dict.fromkeys(f"- {dt} {r['name']}: {r[k]}" for dt, res in result["dtypes"].items()
                            for rs, k in ((res["rows"], "ms"), (res["memory"], "mib"))
                            for r in rs if isinstance(r[k], str))
    return "\n".join(lines + ["", *reasons] if reasons else lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for name, default, what in SIZES:
        p.add_argument(f"--{name}", type=int, default=default, help=f"{what} (default: {default})")
    p.add_argument("--dtype", default="float32,bf16", help="comma-separated: float32, bf16")
    p.add_argument("--repeats", type=int, default=11, help="timed repeats (default: 11)")
    p.add_argument("--inner", type=int, default=10, help="iterations per timed repeat")
    p.add_argument("--warmup", type=int, default=3, help="untimed iterations per variant")
    p.add_argument("--only", default="", metavar="PATTERN",
                   help="only variants whose name contains PATTERN (and their anchors)")
    p.add_argument("--no-write", action="store_true", help="print only; write no RESULTS.md")
    p.add_argument("--json", help="also write the results here as JSON")
    p.add_argument("--no-tf32", action="store_true",
                   help="float32 products in float32 everywhere (default: torch's defaults, "
                        "cuDNN in TF32, other products in float32)")
    return p.parse_args(argv)


def main(argv=None):
    a = parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit("bench_gpu.py: no CUDA device")
    if a.no_tf32:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    spec = variants(a)
    names = [n for n in spec if a.only in n]
    names = [n for n in spec if n in set(names) | {spec[n][3] for n in names}]
    result = {"command": "python benchmarks/bench_gpu.py " + " ".join(argv or sys.argv[1:]),
              "machine": machine(), "config": vars(a), "dtypes": {}}
    for dt in a.dtype.split(","):
        dtype = DTYPES[dt]
        times = time_all(a, dtype, names)
        mem_names = [n for n in MEMORY if n in names]
        mem = peak_memory(a, dtype, mem_names) if mem_names else {}
        result["dtypes"][dt] = {
            "rows": build_rows(times, {n: spec[n][3:5] for n in names}, "ms", 1e3, digits=3),
            "memory": build_rows(mem, MEMORY, "mib", 1.0, digits=1)}
        print(f"\n{dt}:\n" + "\n".join(table(result["dtypes"][dt]["rows"], "ms", "ms")), flush=True)
        if mem:
            print("\n".join(table(result["dtypes"][dt]["memory"], "mib", "MiB")), flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)
    if not a.no_write:
        update_results(markdown(result), key="gpu", title="GPU speed (bench_gpu.py)")


if __name__ == "__main__":
    main()
