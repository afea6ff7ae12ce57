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


def test_default_config_from_an_installed_wheel(tmp_path, monkeypatch):
    """Without a source tree, the configs a wheel installed under <prefix>/share are used."""
    from rnnkit import cli

    here = cli.default_config("charlm")
    assert here is not None and here.endswith("configs/charlm/default.toml")
    monkeypatch.setattr(cli, "__file__", str(tmp_path / "site" / "rnnkit" / "cli.py"))
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "venv"))
    assert cli.default_config("charlm") is None  # neither: the dataclass defaults
    shared = tmp_path / "venv" / "share" / "rnnkit" / "configs" / "charlm" / "default.toml"
    shared.parent.mkdir(parents=True)
    shared.write_text("[train]\nmax_steps = 7\n")
    assert cli.default_config("charlm") == str(shared)
