"""The command line as a user runs it: exit codes, messages, files."""

import subprocess
import sys


def _run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "rnnkit", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def test_vanishing_runs_and_writes_plot(tmp_path):
    out = tmp_path / "demo"
    r = _run("vanishing", "--out", str(out), "--steps", "6", "--train-steps", "3")
    assert r.returncode == 0, r.stderr
    assert "RNN" in r.stdout and "LSTM" in r.stdout
    assert (out / "gradient_flow.png").stat().st_size > 1000


def test_bad_value_is_one_line_exit_2(tmp_path):
    r = _run("vanishing", "--out", str(tmp_path), "--steps", "1")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0 and "--steps must be >= 2" in r.stderr


def test_help_lists_every_option():
    r = _run("vanishing", "--help")
    assert r.returncode == 0
    for option in ("--out", "--steps", "--train-steps", "--seed"):
        assert option in r.stdout
