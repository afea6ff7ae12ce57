"""Brown word LM: rnnkit against pytorch/examples' word_language_model, in one run.

Both read the same three files (``train.txt``, ``valid.txt``, ``test.txt``: Brown,
Bengio et al.'s split, rare words as ``<unk>``, one sentence a line, ``<eos>`` added at
each line's end by each program). The example is not copied here: it is run from a
checkout of pytorch/examples (``--example-dir``; by default ``word_language_model`` is
extracted with ``git archive`` from a local mirror into a temporary directory) with its
own command-line flags only, ``--data`` pointing at the prepared folder.

- ``same``: the example's default (2×200 LSTM, embedding 200, dropout 0.2, untied,
  batch 20, BPTT 35, SGD lr 20, clip 0.25, lr ÷ 4 when validation does not improve)
  for ``--epochs`` epochs, against rnnkit with the same model and optimiser for the same
  number of training words (validation at the same points), once in float32 and once
  with bf16 autocast (``--amp``; the output layer's products and torch's LSTM kernel in
  bf16, the loss in float32). Words/s of each (training
  only: validation and checkpoints excluded), their ratio (target ≥ 1.5) and test
  perplexity (target: no worse).
- ``best``: the best of each under one wall-clock budget: the example's default for as
  many epochs as fit (it is sent Ctrl-C when the budget is spent, and then tests its
  best saved model, as it does itself), against ``configs/wordlm/default.toml`` with
  ``--train.time_budget``. Target: rnnkit's test perplexity ≤ 0.85 × the example's.

The runs are sequential (each uses every core), so the words/s ratio carries the
machine's drift between them; the load average before each run is recorded.

    python benchmarks/bench_wordlm.py                 # full run, ~75 min on 2 cores
    python benchmarks/bench_wordlm.py --only same --epochs 1
    python benchmarks/bench_wordlm.py --tiny          # smoke check, well under a minute
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from bench_engine import machine, write_atomically

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

DEFAULT_MIRROR = os.environ.get("PYTORCH_EXAMPLES_GIT_DIR")  # a bare clone, if you keep one
EXAMPLE = "word_language_model"
EXAMPLE_FILES = ("main.py", "data.py", "model.py")
# The example's defaults, as flags (the same values it has when they are left out).
EXAMPLE_DEFAULT = dict(model="LSTM", emsize=200, nhid=200, nlayers=2, lr=20.0, clip=0.25,
                       batch_size=20, bptt=35, dropout=0.2)
# rnnkit with the example's model and optimiser.
SAME_AS_EXAMPLE = {
    "model.cell": "lstm", "model.embedding_size": 200, "model.hidden_size": 200,
    "model.num_layers": 2, "model.dropout": 0.2, "model.tie_weights": "false",
    "train.batch_size": 20, "train.bptt": 35, "train.optimizer": "sgd", "train.lr": 20.0,
    "train.clip": 0.25, "train.schedule": "plateau", "train.plateau_factor": 4.0,
    "train.warmup_steps": 0, "train.momentum": 0.0, "train.weight_decay": 0.0,
}
SPEED_TARGET, PPL_TARGET_SAME, PPL_TARGET_BEST = 1.5, 1.0, 0.85
TINY = dict(train=150, valid=40, test=40, budget=4.0, log_interval=2)

LOG_LINE = re.compile(r"\|\s*epoch\s+(\d+)\s*\|\s*(\d+)/\s*(\d+) batches.*?ms/batch\s+([\d.]+)")
EPOCH_END = re.compile(r"end of epoch\s+(\d+)\s*\|\s*time:\s*([\d.]+)s\s*\|\s*valid loss\s+"
                       r"([\d.]+)\s*\|\s*valid ppl\s+([\d.]+)")
TEST_LINE = re.compile(r"End of training\s*\|\s*test loss\s+([\d.]+)\s*\|\s*test ppl\s+([\d.]+)")


# -- data -----------------------------------------------------------------------------

def prepare_data(out: Path, tiny: bool) -> Path:
    """A folder named ``brown-lm`` with train/valid/test.txt. Full: rnnkit's own cache
    folder (``$RNNKIT_CACHE/brown-lm``, prepared there if missing, as rnnkit does).
    Tiny: the first few hundred sentences of each split, with valid/test words unseen in
    that small train set as ``<unk>`` (so both programs have the same vocabulary)."""
    from rnnkit.data.brown import prepare_brown_lm, unk_rare
    from rnnkit.data.cache import cache_dir

    full = cache_dir() / "brown-lm"
    if not (full / "test.txt").exists():
        full.mkdir(parents=True, exist_ok=True)
        prepare_brown_lm(full)
    if not tiny:
        return full
    folder = out / "data" / "brown-lm"
    folder.mkdir(parents=True, exist_ok=True)
    splits = {s: [line.split() for line in (full / f"{s}.txt").read_text("utf-8").splitlines()
                  if line.strip()][: TINY[s]] for s in ("train", "valid", "test")}
    train, (valid, test) = unk_rare(splits["train"], (splits["valid"], splits["test"]),
                                    min_count=1)
    for name, split in (("train", train), ("valid", valid), ("test", test)):
        (folder / f"{name}.txt").write_text("".join(" ".join(s) + "\n" for s in split), "utf-8")
    return folder


def corpus_stats(folder: Path) -> dict:
    """Tokens per split as each program counts them: rnnkit skips blank lines, the
    example gives every line an ``<eos>``; they agree when there are no blank lines."""
    stats = {}
    for s in ("train", "valid", "test"):
        lines = (folder / f"{s}.txt").read_text("utf-8").splitlines()
        words = sum(len(line.split()) for line in lines)
        stats[s] = {"lines": len(lines), "words": words,
                    "tokens_example": words + len(lines),
                    "tokens_rnnkit": words + sum(1 for line in lines if line.strip())}
    vocab = {w for line in (folder / "train.txt").read_text("utf-8").splitlines()
             for w in line.split()} | {"<eos>", "<unk>"}
    stats["vocab"] = len(vocab)
    return stats


def epoch_geometry(tokens: int, batch: int, bptt: int) -> dict:
    """Steps per epoch and training words (targets) per epoch, the same for both
    programs: B streams of L = N // B rows, windows of ``bptt`` over L - 1 targets."""
    rows = tokens // batch
    steps = -(-(rows - 1) // bptt)
    last = (rows - 1) - (steps - 1) * bptt
    return {"rows": rows, "steps": steps, "last_window": last, "words": (rows - 1) * batch,
            "batch": batch, "bptt": bptt}


def words_seen(step: int, g: dict) -> int:
    """Training targets after ``step`` steps (the last window of each pass is short)."""
    return g["batch"] * (g["bptt"] * step - (g["bptt"] - g["last_window"]) * (step // g["steps"]))


# -- the example ------------------------------------------------------------------------

def example_source(a, tmp: Path) -> tuple[Path, dict]:
    """The folder holding the example's main.py, and where it came from."""
    if a.example_dir:
        d = Path(a.example_dir).resolve()
        d = d / EXAMPLE if (d / EXAMPLE / "main.py").exists() else d
        if not (d / "main.py").exists():
            raise SystemExit(f"--example-dir {a.example_dir}: no main.py (nor {EXAMPLE}/main.py)")
        rev = subprocess.run(["git", "-C", str(d), "rev-parse", "HEAD"], capture_output=True,
                             text=True)
        return d, {"dir": str(d), "commit": rev.stdout.strip() if rev.returncode == 0 else None}
    mirror = Path(a.example_mirror or "")
    if not a.example_mirror or not mirror.exists():
        raise SystemExit(f"no --example-dir given and no git directory at {mirror}: pass "
                         "the path of a pytorch/examples checkout (git clone "
                         "https://github.com/pytorch/examples)")
    git = ["git", f"--git-dir={mirror}"]
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()
    tar = subprocess.run([*git, "archive", "--format=tar", commit,
                          *(f"{EXAMPLE}/{f}" for f in EXAMPLE_FILES)],
                         capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        if hasattr(tarfile, "data_filter"):
            t.extractall(tmp, filter="data")
        else:
            t.extractall(tmp)
    return tmp / EXAMPLE, {"mirror": str(mirror), "commit": commit}


def example_command(src: Path, data: Path, run: Path, epochs: int, a) -> list[str]:
    cmd = [sys.executable, str(src / "main.py"), "--data", str(data), "--epochs", str(epochs),
           "--save", str(run / "model.pt")]
    for k, v in EXAMPLE_DEFAULT.items():
        cmd += [f"--{k}", str(v)]
    if a.tiny:
        cmd += ["--log-interval", str(TINY["log_interval"])]
    if a.device == "cuda":
        cmd.append("--accel")
    return cmd


def parse_example_log(text: str, log_interval: int, batch: int, bptt: int) -> dict:
    """Words/s from the ms/batch lines (training only; each epoch's first line covers
    batches 0 … interval, the others ``interval`` batches each), the epochs completed and
    the test perplexity."""
    words = seconds = 0.0
    for m in LOG_LINE.finditer(text):
        b, ms = int(m.group(2)), float(m.group(4))
        n = log_interval + 1 if b == log_interval else log_interval
        words += n * batch * bptt
        seconds += ms * log_interval / 1000  # the example divides by the interval
    epochs = [{"epoch": int(m.group(1)), "time_s": float(m.group(2)),
               "valid_ppl": float(m.group(4))} for m in EPOCH_END.finditer(text)]
    test = TEST_LINE.search(text)
    return {"words_per_s": words / seconds if seconds else None, "epochs": epochs,
            "test_loss": float(test.group(1)) if test else None,
            "test_ppl": float(test.group(2)) if test else None,
            "interrupted": "Exiting from training early" in text}


STOP_GRACE_S = 600  # time for the example to test its model after Ctrl-C


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_example(cmd, run: Path, budget: float | None, env) -> dict:
    """Run the example, logging to run/example.log; with a budget, Ctrl-C (SIGINT) when
    it is spent: the example then tests the best model it saved."""
    run.mkdir(parents=True, exist_ok=True)
    log = run / "example.log"
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    saved = run / "model.pt"
    with open(log, "w") as f:
        # A process started in the background inherits SIGINT ignored, and Python then
        # never turns Ctrl-C into KeyboardInterrupt: restore the default in the child.
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=run,
                             preexec_fn=_default_sigint)
        interrupted_at = None
        while p.poll() is None:
            time.sleep(0.2)
            if budget is None or time.perf_counter() - t0 < budget:
                continue
            # Not before its first epoch is saved (it would have no model to test), nor
            # while it is writing one (the file would be cut short): the budget can be
            # overrun by that much, and the overrun is recorded.
            if saved.exists() and time.time() - saved.stat().st_mtime > 2.0:
                interrupted_at = time.perf_counter() - t0
                p.send_signal(signal.SIGINT)
                try:
                    p.wait(timeout=STOP_GRACE_S)  # it tests its saved model, then exits
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
                    raise SystemExit(f"the example ignored Ctrl-C for {STOP_GRACE_S} s; "
                                     f"killed it (log: {log})") from None
    wall = time.perf_counter() - t0
    text = log.read_text(errors="replace")
    if p.returncode != 0:
        print(f"example exited with {p.returncode}; its log ({log}) ends:\n"
              + "\n".join(text.splitlines()[-15:]), file=sys.stderr)
    return {"returncode": p.returncode, "wall_s": round(wall, 1), "load_before": load,
            "interrupted_at_s": None if interrupted_at is None else round(interrupted_at, 1),
            "log": str(log), "text": text}


# -- rnnkit -----------------------------------------------------------------------------

def rnnkit_env(data: Path) -> dict:
    env = dict(os.environ, RNNKIT_CACHE=str(data.parent))  # rnnkit reads $RNNKIT_CACHE/brown-lm
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"),
                                                      env.get("PYTHONPATH")]))
    return env


def run_rnnkit(overrides: dict, run: Path, data: Path, a, extra=()) -> dict:
    """Train (``--json``), then ``rnnkit eval`` its best checkpoint on the test split."""
    if run.exists() and (run / "checkpoint.pt").exists():
        raise SystemExit(f"{run} already holds a rnnkit run; remove it or choose another --out")
    run.mkdir(parents=True, exist_ok=True)
    env = rnnkit_env(data)
    flags = [f"--{k}={v}" for k, v in overrides.items()] + list(extra)
    train = [sys.executable, "-m", "rnnkit", "train", "wordlm", "--data", "brown", "--out",
             str(run), "--json", *flags]
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    done = subprocess.run(train, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    (run / "train.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"rnnkit train failed ({done.returncode}):\n{done.stderr[-3000:]}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    ev = subprocess.run([sys.executable, "-m", "rnnkit", "eval", str(run), "--json"],
                        capture_output=True, text=True, env=env, cwd=ROOT)
    if ev.returncode != 0:
        raise SystemExit(f"rnnkit eval failed ({ev.returncode}):\n{ev.stderr[-3000:]}")
    test = json.loads(ev.stdout.strip().splitlines()[-1])
    return {"command": shlex.join(["python", *train[1:]]), "summary": summary,
            "test_ppl": test["test_ppl"], "test_loss": test["test_loss"],
            "wall_s": round(wall, 1), "load_before": load,
            "metrics": [json.loads(line) for line in
                        (run / "metrics.jsonl").read_text().splitlines() if line.strip()]}


def rnnkit_words_per_s(metrics: list[dict], g: dict, pauses: int) -> float | None:
    """Training words/s from metrics.jsonl, like the example's ms/batch. Record i sits
    at its ``elapsed_s`` where written, else at seen_i / tokens_per_s (that rate is
    cumulative since training began); intervals in which a validation or checkpoint ran
    (after every step that is a multiple of ``pauses``) are left out."""
    points = [(0, 0.0)]
    for r in metrics:
        if "tokens_per_s" in r and r["tokens_per_s"] > 0:
            t = r.get("elapsed_s") or words_seen(r["step"], g) / r["tokens_per_s"]
            points.append((r["step"], t))
    words = seconds = 0.0
    for (s0, t0), (s1, t1) in zip(points, points[1:]):
        if any(e % pauses == 0 for e in range(max(s0, 1), s1)):
            continue
        words += words_seen(s1, g) - words_seen(s0, g)
        seconds += t1 - t0
    return words / seconds if seconds > 0 else None


# -- the two comparisons ----------------------------------------------------------------

def bench_same(a, src, data, stats, out) -> dict:
    B, T = EXAMPLE_DEFAULT["batch_size"], EXAMPLE_DEFAULT["bptt"]
    g = epoch_geometry(stats["train"]["tokens_rnnkit"], B, T)
    steps = a.epochs * g["steps"]
    ex_cmd = example_command(src, data, out / "runs" / "same-example", a.epochs, a)
    ex = run_example(ex_cmd, out / "runs" / "same-example", None, None)
    interval = TINY["log_interval"] if a.tiny else 200
    ex.update(parse_example_log(ex.pop("text"), interval, B, T))
    ex["command"] = shlex.join(["python", *ex_cmd[1:]])
    runs = {}
    for amp in a.amp:  # float32, then bf16 autocast (the output layer's products)
        overrides = {**SAME_AS_EXAMPLE, "train.max_steps": steps, "train.eval_every": g["steps"],
                     "train.checkpoint_every": g["steps"], "train.log_every": 1 if a.tiny else 10,
                     "train.device": a.device, "train.amp": amp}
        name = "same-rnnkit" + ("" if amp == "off" else f"-{amp}")
        rk = runs[amp] = run_rnnkit(overrides, out / "runs" / name, data, a)
        rk["words_per_s"] = rnnkit_words_per_s(rk.pop("metrics"), g, g["steps"])
    return {"epochs": a.epochs, "steps": steps, "train_words": a.epochs * g["words"],
            "geometry": g, "example": ex, "rnnkit": runs}


def bench_best(a, src, data, out) -> dict:
    budget = TINY["budget"] if a.tiny else a.budget
    ex_cmd = example_command(src, data, out / "runs" / "best-example", 40, a)
    ex = run_example(ex_cmd, out / "runs" / "best-example", budget, None)
    ex.update(parse_example_log(ex.pop("text"), TINY["log_interval"] if a.tiny else 200,
                                EXAMPLE_DEFAULT["batch_size"], EXAMPLE_DEFAULT["bptt"]))
    ex["command"] = shlex.join(["python", *ex_cmd[1:]])
    overrides = {"train.time_budget": budget, "train.max_steps": 10**9,
                 "train.device": a.device}
    rk = run_rnnkit(overrides, out / "runs" / "best-rnnkit", data, a, a.rnnkit_arg)
    rk.pop("metrics")
    return {"budget_s": budget, "example": ex, "rnnkit": rk,
            "rnnkit_config": "configs/wordlm/default.toml"
                             + "".join(f" {x}" for x in a.rnnkit_arg)}


# -- report -----------------------------------------------------------------------------

def verdict(ok) -> str:
    return "—" if ok is None else "PASS" if ok else "FAIL"


def ratio(x, y):
    return x / y if isinstance(x, (int, float)) and isinstance(y, (int, float)) and y else None


def fmt(x, spec=".1f"):
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def markdown(result) -> str:
    m = result["machine"]
    lines = [f"Command: `{result['command']}`  ",
             f"Machine: {m['cpu']}, {m['cores']} cores, {m['threads']} torch threads, "
             f"torch {m['torch']}, Python {m['python']}, {m['date']}  ",
             f"Example: pytorch/examples {EXAMPLE} at "
             f"{(result['example_source'].get('commit') or 'unknown')[:12]}, run with its own "
             f"flags; data: Brown ({result['data']['train']['tokens_example']:,} training "
             f"tokens with `<eos>`, vocabulary {result['data']['vocab']:,})"
             + (" — **tiny smoke run, figures meaningless**" if result["tiny"] else "")]
    s = result.get("same")
    if s:
        ex = s["example"]
        lines += ["", f"Same configuration (2×200 LSTM, untied, dropout 0.2, batch 20, BPTT 35, "
                      f"SGD lr 20, clip 0.25, ÷4 on plateau): {s['epochs']} epoch(s), "
                      f"{s['train_words']:,} training words each. Words/s: training only.", "",
                  "| run | words/s | ratio | test ppl | ratio | wall s | target | |",
                  "|---|---:|---:|---:|---:|---:|---|---|",
                  f"| example (torch.nn.LSTM) | {fmt(ex['words_per_s'], '.0f')} | 1.00 | "
                  f"{fmt(ex['test_ppl'], '.1f')} | 1.00 | {ex['wall_s']} | (anchor) | |"]
        for amp, rk in s["rnnkit"].items():
            sp = ratio(rk["words_per_s"], ex["words_per_s"])
            pp = ratio(rk["test_ppl"], ex["test_ppl"])
            label = "rnnkit, float32" if amp == "off" else f"rnnkit, {amp} autocast"
            lines.append(f"| {label} | {fmt(rk['words_per_s'], '.0f')} | {fmt(sp, '.2f')} | "
                         f"{fmt(rk['test_ppl'], '.1f')} | {fmt(pp, '.2f')} | {rk['wall_s']} | "
                         f"speed ≥ {SPEED_TARGET}, ppl ≤ {PPL_TARGET_SAME} | speed "
                         f"{verdict(None if sp is None else sp >= SPEED_TARGET)}, ppl "
                         f"{verdict(None if pp is None else pp <= PPL_TARGET_SAME)} |")
    b = result.get("best")
    if b:
        ex, rk = b["example"], b["rnnkit"]
        pp = ratio(rk["test_ppl"], ex["test_ppl"])
        n_ep = len(ex["epochs"])
        lines += ["", f"Best configuration in {b['budget_s']:g} s of wall clock "
                      "(the example: from its launch, Ctrl-C at the budget, then it tests its "
                      "best saved epoch; rnnkit: `--train.time_budget`, from its first step).", "",
                  "| run | configuration | trained | stopped at s | test ppl | ratio | target | |",
                  "|---|---|---|---:|---:|---:|---|---|",
                  f"| example | its default (2×200 LSTM, dropout 0.2) | {n_ep} epoch(s)"
                  f"{' + part' if ex['interrupted'] else ''} | "
                  f"{fmt(ex['interrupted_at_s'] or ex['wall_s'])} | {fmt(ex['test_ppl'], '.1f')} | "
                  "1.00 | (anchor) | |",
                  f"| rnnkit | {b['rnnkit_config']} | {rk['summary']['step']} steps | "
                  f"{fmt(rk['summary'].get('elapsed_s'))} | "
                  f"{fmt(rk['test_ppl'], '.1f')} | {fmt(pp, '.2f')} | ≤ {PPL_TARGET_BEST} | "
                  f"{verdict(None if pp is None else pp <= PPL_TARGET_BEST)} |"]
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", choices=("same", "best"), help="run one comparison only")
    p.add_argument("--epochs", type=int, default=1,
                   help="same: epochs of each (default: %(default)s)")
    p.add_argument("--amp", type=lambda v: v.split(","), default=["off", "bf16"],
                   help="same: rnnkit's precisions, each a run (train.amp values, "
                        "comma-separated; default: off,bf16)")
    p.add_argument("--budget", type=float, default=1800.0,
                   help="best: wall-clock seconds for each (default: %(default)s)")
    p.add_argument("--rnnkit-arg", action="append", default=[], metavar="--SECTION.KEY=V",
                   help="best: an override for rnnkit on top of configs/wordlm/default.toml "
                        "(e.g. --rnnkit-arg=--model.weight_drop=0.2); repeatable")
    p.add_argument("--example-dir", help="a pytorch/examples checkout (or its "
                                         f"{EXAMPLE} folder)")
    p.add_argument("--example-mirror", default=DEFAULT_MIRROR,
                   help="without --example-dir: a git directory of pytorch/examples to "
                        "extract the example from (default: $PYTORCH_EXAMPLES_GIT_DIR)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="both on this device (cuda: the example's --accel; default: cpu)")
    p.add_argument("--tiny", action="store_true",
                   help=f"smoke check: {TINY['train']} training sentences, 1 epoch, "
                        f"a {TINY['budget']:g} s budget")
    p.add_argument("--out", help="output folder (default: benchmarks/out/wordlm, "
                                 "benchmarks/out/wordlm-tiny with --tiny)")
    a = p.parse_args(argv)
    if a.epochs < 1 or a.budget <= 0:
        p.error("--epochs must be >= 1 and --budget > 0")
    if a.tiny:
        a.epochs = 1
    a.out = Path(a.out or HERE / "out" / ("wordlm-tiny" if a.tiny else "wordlm")).resolve()
    return a


def main(argv=None):
    a = parse_args(argv)
    out = a.out
    if a.tiny:  # a smoke run's output is disposable
        shutil.rmtree(out / "runs", ignore_errors=True)
    elif (out / "runs").exists():
        raise SystemExit(f"{out}/runs exists (an earlier run): remove it or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    # runs/ (checkpoints, logs) and data/ are large or derived; results.* are the record
    write_atomically(str(out / ".gitignore"), "runs/\ndata/\n")
    argv = sys.argv if argv is None else [os.path.relpath(__file__), *argv]
    python = os.path.relpath(sys.executable) if sys.executable.startswith(os.getcwd()) \
        else "python"
    data = prepare_data(out, a.tiny)
    stats = corpus_stats(data)
    result = {"command": shlex.join([python, *argv]), "machine": machine(), "tiny": a.tiny,
              "data": {"folder": str(data), **stats}}

    def save():
        write_atomically(str(out / "results.json"),
                         json.dumps(result, indent=1, ensure_ascii=False) + "\n")

    with tempfile.TemporaryDirectory(prefix="wordlm-example-") as tmp:
        src, result["example_source"] = example_source(a, Path(tmp))
        if a.only in (None, "same"):
            result["same"] = bench_same(a, src, data, stats, out)
            save()
        if a.only in (None, "best"):
            result["best"] = bench_best(a, src, data, out)
            save()
    section = markdown(result)
    result["markdown"] = section
    save()
    write_atomically(str(out / "results.md"), section + "\n")
    print(section)


if __name__ == "__main__":
    main()
