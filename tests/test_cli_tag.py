"""The tagger on the command line as a user runs it: ``python -m rnnkit train tag | eval |
predict`` in a subprocess, on small tagged files; errors are one line on stderr, exit code
2, and nothing left on disk."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs" / "tag" / "tiny.toml")
POS = str(ROOT / "tests" / "fixtures" / "tag" / "toy_pos.txt")


def rnnkit(*args):
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    return subprocess.run([sys.executable, "-m", "rnnkit", *map(str, args)],
                          capture_output=True, text=True, encoding="utf-8", env=env,
                          timeout=300)


def one_json(stdout: str) -> dict:
    lines = stdout.strip().splitlines()
    assert len(lines) == 1, stdout
    return json.loads(lines[0], parse_constant=lambda name: pytest.fail(f"{name} in JSON"))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "pos"
    r = rnnkit("train", "tag", "--config", TINY, "--data", POS, "--out", out,
               "--max-steps", 60, "--train.eval_every=30", "--json")
    assert r.returncode == 0, r.stderr
    return out, one_json(r.stdout)


def test_train_json_summary(run):
    _, summary = run
    assert summary["step"] == 60 and summary["val_accuracy"] >= 0.95
    assert summary["val_unknown_accuracy"] is None  # no unseen word in validation: null


def test_eval_json_and_text(run):
    out, _ = run
    r = rnnkit("eval", out, "--json")
    assert r.returncode == 0, r.stderr
    m = one_json(r.stdout)
    assert m["test_accuracy"] >= 0.95 and m["per_tag"]["NOUN"]["support"] > 0
    r = rnnkit("eval", out)
    assert r.returncode == 0 and "test_accuracy" in r.stdout
    assert any(line.split()[0] == "NOUN" and "F1" in line for line in r.stdout.splitlines())


def test_predict_prints_each_token_with_its_tag(run):
    out, _ = run
    r = rnnkit("predict", out, "The big dog sat under a tree.", "a cat slept")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "The/DET big/ADJ dog/NOUN sat/VERB under/ADP a/DET tree/NOUN ./.",
        "a/DET cat/NOUN slept/VERB"]
    r = rnnkit("predict", out, "a cat slept", "--json")
    assert one_json(r.stdout) == {"predictions": [{"tokens": ["a", "cat", "slept"],
                                                   "tags": ["DET", "NOUN", "VERB"]}]}


def test_long_text_is_truncated_with_a_warning(run):
    out, _ = run
    r = rnnkit("predict", out, "the cat sat " * 100)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.split()) == 250
    assert "truncated" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_malformed_line_is_one_line_exit_2_nothing_written(tmp_path):
    bad = tmp_path / "bad.conll"
    bad.write_text("The DT\ncat NN\nsat\n")
    r = rnnkit("train", "tag", "--config", TINY, "--data", bad, "--out", tmp_path / "out")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"rnnkit: error: {bad}:3: expected 2 columns like the lines before, got 1: 'sat'"]
    assert not (tmp_path / "out").exists()


def test_predict_refuses_output_file_and_missing_run(run, tmp_path):
    out, _ = run
    r = rnnkit("predict", out, "a cat", "--output", tmp_path / "tags.jsonl")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "rnnkit: error: --output is for classifier runs; a tagger prints its tags"]
    assert not (tmp_path / "tags.jsonl").exists()
    r = rnnkit("eval", tmp_path / "nothing")
    assert r.returncode == 2 and "no such run directory" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
