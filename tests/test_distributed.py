"""Training in two processes with torchrun (DistributedDataParallel over gloo, loopback
only) equals training in one process on the same global batch, and its checkpoint
resumes in one process."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rnnkit.training import load_checkpoint

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "charlm" / "tiny.toml"
TEXT = ("To be, or not to be, that is the question:\n"
        "Whether 'tis nobler in the mind to suffer\n"
        "The slings and arrows of outrageous fortune,\n") * 12
STEPS, MORE = 30, 36
# 8 streams of about 150 training characters: windows of 10, so 30 steps make two
# passes (a state reset mid-run); clip 0.3 clips most steps (their norms are 0.2-0.5)
OVERRIDES = ["--train.batch_size=8", "--train.bptt=10", f"--train.max_steps={STEPS}",
             "--train.log_every=1", "--train.eval_every=10", "--train.checkpoint_every=10",
             "--train.eval_tokens=400", "--train.clip=0.3", "--train.device=cpu",
             "--model.dropout=0", "--data.valid_fraction=0.1", "--data.test_fraction=0.1"]

# Float32 sums in another order: one process takes the mean loss over 160 targets and
# backpropagates it once; two take it over 80 each and DDP averages their gradients
# (an allreduce). Each step thus differs by float32 rounding, and Adam carries the
# differences on from step to step. Measured over 36 steps: losses, norms and
# validation losses within 2e-7 relative, weights within 3e-7 absolute (near-zero
# weights make relative errors meaningless, hence the atol). 1e-5 leaves room for other
# CPUs and kernels and is far below what a real bug changes (a wrong column, gradients
# not averaged, a norm summed over processes: 1e-2 and more).
RTOL, ATOL = 1e-5, 1e-5

# torchrun's agent listens for its rendezvous store (a TCPStore) on every interface: the
# store binds a wildcard address whatever --master_addr says. So this runs torchrun's own
# main with that store handed a socket already bound to 127.0.0.1 (TCPStore's documented
# master_listen_fd). Binding here also leaves no gap between finding a free port and
# using it. The workers only connect to that store; gloo binds GLOO_SOCKET_IFNAME=lo.
LAUNCHER = """
import socket, sys
from torch.distributed.elastic.rendezvous import static_tcp_rendezvous as rdzv
from torch.distributed.run import main

sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.bind(("127.0.0.1", 0))
sock.listen(64)
tcp_store = rdzv.TCPStore
rdzv.TCPStore = lambda *a, **k: tcp_store(*a, master_listen_fd=sock.fileno(), **k)
main(["--nnodes=1", "--nproc_per_node=2", "--rdzv_backend=static",
      "--master_addr=127.0.0.1", f"--master_port={sock.getsockname()[1]}", *sys.argv[1:]])
"""


def _run(args, processes=1):
    """``rnnkit train charlm`` (under torchrun for 2 processes); its JSON summary."""
    launch = [sys.executable, "-c", LAUNCHER] if processes == 2 else [sys.executable]
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "MASTER_ADDR": "127.0.0.1",
           # torchrun gives each worker one thread; the one process gets the same
           "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    r = subprocess.run([*launch, "-m", "rnnkit", "train", "charlm", "--json", *args],
                       capture_output=True, text=True, env=env, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def _metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _train_log(out):
    return [(r["step"], r["train_loss"], r["grad_norm"]) for r in _metrics(out)
            if "train_loss" in r]


def _close(actual, expected):
    torch.testing.assert_close(torch.tensor(actual, dtype=torch.float64),
                               torch.tensor(expected, dtype=torch.float64),
                               rtol=RTOL, atol=ATOL)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same run in two processes and in one: their run directories."""
    tmp = tmp_path_factory.mktemp("distributed")
    corpus = tmp / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    common = ["--config", str(CONFIG), "--data", str(corpus), *OVERRIDES]
    two, one = tmp / "two", tmp / "one"
    _run([*common, "--out", str(two)], processes=2)
    _run([*common, "--out", str(one)])
    return two, one


def test_two_processes_ran_and_logged_each_step_once(runs):
    two, _ = runs
    assert len(load_checkpoint(two / "checkpoint.pt")["rng"]) == 2  # one per process
    assert [step for step, _, _ in _train_log(two)] == list(range(1, STEPS + 1))


def test_training_losses_and_gradient_norms_agree(runs):
    two, one = runs
    a, b = _train_log(two), _train_log(one)
    assert [s for s, _, _ in a] == [s for s, _, _ in b]
    _close([loss for _, loss, _ in a], [loss for _, loss, _ in b])
    _close([norm for _, _, norm in a], [norm for _, _, norm in b])


def test_validation_losses_agree(runs):
    a, b = ([(r["step"], r["val_loss"]) for r in _metrics(out) if "val_loss" in r]
            for out in runs)
    assert [s for s, _ in a] == [s for s, _ in b] == [10, 20, 30]
    _close([v for _, v in a], [v for _, v in b])


def test_saved_weights_agree(runs):
    two, one = runs
    a = load_checkpoint(two / "checkpoint.pt")
    b = load_checkpoint(one / "checkpoint.pt")
    assert a["step"] == b["step"] == STEPS
    assert a["model"].keys() == b["model"].keys()
    for name in a["model"]:
        torch.testing.assert_close(a["model"][name], b["model"][name], rtol=RTOL, atol=ATOL,
                                   msg=lambda m, name=name: f"{name}: {m}")
    # the carried state, gathered from both processes into global column order
    for x, y in zip(a["state"], b["state"]):
        torch.testing.assert_close(x, y, rtol=RTOL, atol=ATOL)


def test_two_process_checkpoint_resumes_in_one_process(runs, tmp_path):
    """Resumed in one process, the two-process run goes on as the one-process run does
    (resumed the same way): the state was gathered in the right column order."""
    resumed = {}
    for name, out in zip(("two", "one"), runs):
        copy = tmp_path / name  # the other tests read the original directories
        shutil.copytree(out, copy)
        summary = _run(["--out", str(copy), "--resume", "--max-steps", str(MORE)])
        assert summary["step"] == MORE
        resumed[name] = [r for r in _train_log(copy) if r[0] > STEPS]
    a, b = resumed["two"], resumed["one"]
    assert [s for s, _, _ in a] == list(range(STEPS + 1, MORE + 1))
    _close([loss for _, loss, _ in a], [loss for _, loss, _ in b])
    _close([norm for _, _, norm in a], [norm for _, _, norm in b])


def test_a_worker_exits_with_the_commands_code_and_its_message(tmp_path):
    """A process that joined a process group leaves without the interpreter's teardown
    (exit_worker): the exit code and what it printed must still come out."""
    code = ("import sys, rnnkit.training.distributed as d; d._joined = True\n"
            "from rnnkit.cli import main\n"
            f"main(['eval', {str(tmp_path / 'missing')!r}])\n"
            "print('not reached')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2
    assert r.stderr.startswith("rnnkit: error:") and "missing" in r.stderr
    assert "not reached" not in r.stdout
