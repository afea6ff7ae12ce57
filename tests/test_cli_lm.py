"""The language-model command line as a user runs it: ``python -m rnnkit train | sample |
eval`` in a subprocess, on small text files of the user's own, multi-byte UTF-8 included.

Two tiny runs (one character level, one word level) are trained once for the module and
shared; every error case checks the exit code, the single stderr line and what is (not)
left on disk."""

import json
import math
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
CHAR_TINY = str(ROOT / "configs" / "charlm" / "tiny.toml")
WORD_TINY = str(ROOT / "configs" / "wordlm" / "tiny.toml")
STEPS = 10  # tiny.toml evaluates and checkpoints every 10 steps: one of each
UNSEEN = "Ж"  # a character the corpus lacks: it must map to <unk>, not fail

# Korean, emoji (one with a skin-tone modifier: two code points), accents, plain ASCII.
WORDS = ["안녕하세요", "세계", "🙂", "👍🏽", "café", "naïve", "the", "cat", "sat", "on",
         "a", "mat", "and", "dog", "ran", "to", "park", "birds", "sang"]


def _corpus_text() -> str:
    # a fixed pseudo-random sequence of WORDS, 8 to a line: no RNG, so no flakiness
    picks = [WORDS[(i * 7 + i // 5) % len(WORDS)] for i in range(8 * 120)]
    return "".join(" ".join(picks[i : i + 8]) + "\n" for i in range(0, len(picks), 8))


TEXT = _corpus_text()


def rnnkit(*args, cwd=None):
    """``python -m rnnkit ARGS``; UTF-8 both ways whatever the locale."""
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    return subprocess.run([sys.executable, "-m", "rnnkit", *map(str, args)],
                          capture_output=True, text=True, encoding="utf-8", env=env, cwd=cwd,
                          timeout=300)


def one_json(stdout: str) -> dict:
    """stdout must be exactly one strict JSON object (NaN is not JSON)."""
    lines = stdout.strip().splitlines()
    assert len(lines) == 1, stdout

    def refuse(name):
        raise AssertionError(f"non-JSON constant {name} in {stdout!r}")

    record = json.loads(lines[0], parse_constant=refuse)
    assert isinstance(record, dict)
    return record


def assert_usage_error(r, *fragments):
    """Exit code 2, one line on stderr naming the problem, nothing on stdout."""
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    for fragment in fragments:
        assert fragment in r.stderr, (fragment, r.stderr)
    assert r.stdout == ""


def train_split(text: str, valid=0.05, test=0.05) -> str:
    """The training text as the docs define it: the first 1 - valid - test, contiguous."""
    n = len(text)
    return text[: n - int(n * valid) - int(n * test)]


def held_out_test(text: str, valid=0.05, test=0.05) -> str:
    """The test text: the last `test` of it."""
    n = len(text)
    return text[n - int(n * test):]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    assert UNSEEN not in TEXT
    return path


@pytest.fixture(scope="module")
def char_run(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "char"
    r = rnnkit("train", "charlm", "--config", CHAR_TINY, "--data", corpus, "--out", out,
               "--max-steps", STEPS, "--json")
    assert r.returncode == 0, r.stderr
    return out, r


@pytest.fixture(scope="module")
def word_run(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "word"
    # --max-steps 3 then --train.max_steps: the dotted override comes last and wins
    r = rnnkit("train", "wordlm", "--config", WORD_TINY, "--data", corpus, "--out", out,
               "--max-steps", 3, f"--train.max_steps={STEPS}", "--json")
    assert r.returncode == 0, r.stderr
    return out, r


# -- train, sample, eval: what works ------------------------------------------------------


def test_train_charlm_json_summary_and_files(char_run):
    out, r = char_run
    summary = one_json(r.stdout)
    assert summary["step"] == STEPS and summary["out"] == str(out)
    assert math.isclose(summary["val_bpc"], summary["val_loss"] / math.log(2), rel_tol=1e-12)
    # the vocabulary: <unk> and every code point of the training split, emoji parts included
    assert summary["vocab_size"] == len(set(train_split(TEXT))) + 1
    # ten steps learn at least the character frequencies: below the uniform guess
    assert 0 < summary["val_loss"] < math.log(summary["vocab_size"])
    assert math.isfinite(summary["train_loss"]) and summary["train_loss"] > 0
    for name in ("checkpoint.pt", "best.pt", "metrics.jsonl", "config.toml", "loss.png"):
        assert (out / name).stat().st_size > 0, name
    # the summary's validation loss is the one the metrics log recorded at that step
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    val = [rec for rec in records if "val_loss" in rec]
    assert val[-1]["step"] == STEPS and val[-1]["val_loss"] == summary["val_loss"]
    assert f"max_steps = {STEPS}" in (out / "config.toml").read_text(encoding="utf-8")


def _sample(out, *args, length=300):
    r = rnnkit("sample", out, "--prompt", f"{UNSEEN}안", "--length", length, *args)
    assert r.returncode == 0, r.stderr
    assert r.stdout.endswith("\n")
    return r.stdout[:-1]  # print's newline


def test_sample_unseen_prompt_never_emits_unk(char_run):
    out, _ = char_run
    # a hot temperature makes every token likely, <unk> too, unless it is masked out
    text = _sample(out, "--temperature", 2.0, "--seed", 1, length=400)
    assert text.startswith(f"{UNSEEN}안")
    assert "<unk>" not in text
    assert len(text) == 2 + 400  # one code point per generated character
    assert set(text[2:]) <= set(TEXT)  # only characters of the vocabulary


def test_sample_seed_temperature_and_top_k(char_run):
    out, _ = char_run
    a, b, c = _sample(out, "--seed", 1), _sample(out, "--seed", 1), _sample(out, "--seed", 2)
    assert a == b and a != c
    greedy = _sample(out, "--temperature", 0, "--seed", 1)
    assert greedy == _sample(out, "--temperature", 0, "--seed", 7)  # the seed plays no part
    assert _sample(out, "--top-k", 1, "--seed", 3) == greedy  # one candidate: the likeliest
    assert "<unk>" not in a + c + greedy


def test_eval_test_split_and_other_file(char_run, tmp_path):
    out, train_r = char_run
    r = rnnkit("eval", out, "--json")
    assert r.returncode == 0, r.stderr
    m = one_json(r.stdout)
    test = held_out_test(TEXT)
    assert m["split"] == "test" and m["tokens"] == len(test)
    assert math.isclose(m["test_bpc"], m["test_loss"] / math.log(2), rel_tol=1e-12)
    assert 0 < m["test_loss"] < math.log(one_json(train_r.stdout)["vocab_size"])
    seen = set(train_split(TEXT))
    assert m["unknown_rate"] == pytest.approx(sum(ch not in seen for ch in test) / len(test))

    other = tmp_path / "other.txt"
    other_text = f"안녕하세요 cat {UNSEEN}{UNSEEN}\n" * 10
    other.write_text(other_text, encoding="utf-8")
    r = rnnkit("eval", out, "--data", other, "--json")
    assert r.returncode == 0, r.stderr
    m = one_json(r.stdout)
    assert m["split"] == str(other) and m["tokens"] == len(other_text)
    assert m["unknown_rate"] == pytest.approx(20 / len(other_text))  # the twenty Ж
    assert math.isclose(m["test_bpc"], m["test_loss"] / math.log(2), rel_tol=1e-12)


def test_train_wordlm_reports_perplexity(word_run):
    out, r = word_run
    summary = one_json(r.stdout)
    assert summary["step"] == STEPS
    assert math.isclose(summary["val_ppl"], math.exp(summary["val_loss"]), rel_tol=1e-9)
    words = {w for line in train_split(TEXT).splitlines() for w in line.split()}
    assert summary["vocab_size"] == len(words) + 2  # and <unk>, <eos>
    assert (out / "best.pt").exists()


def test_wordlm_sample_continues_the_prompt(word_run):
    out, _ = word_run
    r = rnnkit("sample", out, "--prompt", "the zebra", "--length", 30, "--temperature", 2.0)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("the zebra ")
    assert "<unk>" not in r.stdout  # no training word was rare: <unk> never a target
    assert "<eos>" not in r.stdout  # line ends are printed as line ends


def test_wordlm_with_a_clustered_softmax_trains_evaluates_and_samples(corpus, tmp_path):
    out = tmp_path / "clustered"
    r = rnnkit("train", "wordlm", "--config", WORD_TINY, "--data", corpus, "--out", out,
               "--max-steps", STEPS, "--model.softmax_cutoffs=[4, 12]", "--json")
    assert r.returncode == 0, r.stderr
    summary = one_json(r.stdout)
    assert math.isclose(summary["val_ppl"], math.exp(summary["val_loss"]), rel_tol=1e-9)
    r = rnnkit("eval", out, "--json")
    assert r.returncode == 0, r.stderr
    assert math.isfinite(one_json(r.stdout)["test_loss"])
    r = rnnkit("sample", out, "--prompt", "the cat", "--length", 10, "--seed", 1)
    assert r.returncode == 0 and r.stdout.startswith("the cat ")
    r = rnnkit("train", "wordlm", "--config", WORD_TINY, "--data", corpus, "--out",
               tmp_path / "too-wide", "--model.softmax_cutoffs=[4, 999]")
    assert_usage_error(r, "cutoffs must be increasing word counts between 0 and the "
                          "vocabulary size")
    assert not (tmp_path / "too-wide").exists()


def test_resume_continues_and_a_finished_run_reports_null(char_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(char_run[0], out)
    r = rnnkit("train", "charlm", "--out", out, "--resume", "--max-steps", STEPS + 2, "--json")
    assert r.returncode == 0, r.stderr
    summary = one_json(r.stdout)
    assert summary["step"] == STEPS + 2 and math.isfinite(summary["train_loss"])
    # already at max_steps: no step taken, so no train_loss; null, not NaN
    r = rnnkit("train", "charlm", "--out", out, "--resume", "--max-steps", STEPS + 2, "--json")
    assert r.returncode == 0, r.stderr
    assert one_json(r.stdout)["train_loss"] is None and "already at step 12" in r.stderr


# -- train: errors --------------------------------------------------------------------------

TRAIN_ERRORS = {
    # name: (file bytes or None for a missing file, extra arguments, words the message holds)
    "missing": (None, [], ["no such file"]),
    "empty": (b"", [], ["is empty"]),
    "binary": (b"text\x00\x01\x02 more", [], ["binary", "NUL"]),
    "latin-1": ("café naïve\n".encode("latin-1") * 50, [], ["not UTF-8", "offset 3"]),
    # 60 characters: 54 to train on, fewer than one window of 100
    "shorter than a window": (b"abcdefghij" * 6, ["--train.bptt=100"],
                              ["54 tokens", "BPTT window of 100"]),
    "too short to split": (b"tiny\n", [], ["valid split has 0 tokens"]),
    "unknown key": (TEXT.encode(), ["--model.hiden_size=8"],
                    ["model.hiden_size", "did you mean 'model.hidden_size'"]),
    "wrong type": (TEXT.encode(), ["--model.hidden_size=abc"],
                   ["model.hidden_size", "expected int", "'abc'"]),
    "zero size": (TEXT.encode(), ["--model.hidden_size=0"], ["hidden_size must be > 0"]),
    "negative lr": (TEXT.encode(), ["--train.lr=-1"], ["lr must be > 0"]),
    "fractions over 1": (TEXT.encode(), ["--data.valid_fraction=0.6",
                                         "--data.test_fraction=0.5"], ["must be < 1"]),
    "unknown option": (TEXT.encode(), ["--bogus"], ["unrecognized arguments: --bogus"]),
    "override without =": (TEXT.encode(), ["--model.hidden_size", "8"],
                           ["--model.hidden_size=VALUE"]),
}


@pytest.mark.parametrize("case", list(TRAIN_ERRORS))
def test_train_error_is_one_line_and_leaves_no_run(case, tmp_path):
    content, extra, fragments = TRAIN_ERRORS[case]
    data = tmp_path / "data.txt"
    if content is not None:
        data.write_bytes(content)
    out = tmp_path / "run"
    r = rnnkit("train", "charlm", "--config", CHAR_TINY, "--data", data, "--out", out,
               "--max-steps", 2, "--json", *extra)
    assert_usage_error(r, *fragments)
    assert not out.exists()  # checked before anything is written: no half-made run


def test_train_into_an_existing_run_asks_for_resume(char_run, corpus):
    out, _ = char_run
    before = (out / "checkpoint.pt").read_bytes()
    r = rnnkit("train", "charlm", "--config", CHAR_TINY, "--data", corpus, "--out", out,
               "--max-steps", 2, "--json")
    assert_usage_error(r, "already holds a run", "--resume")
    assert (out / "checkpoint.pt").read_bytes() == before


def test_resume_with_another_model_is_refused(char_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(char_run[0], out)
    before = (out / "checkpoint.pt").read_bytes()
    r = rnnkit("train", "charlm", "--out", out, "--resume", "--model.hidden_size=8", "--json")
    assert_usage_error(r, "another model", "model.hidden_size=32 in the run, 8 asked")
    assert (out / "checkpoint.pt").read_bytes() == before
    r = rnnkit("train", "wordlm", "--out", out, "--resume", "--json")
    assert_usage_error(r, "holds a charlm run, not wordlm")


def test_train_out_is_a_file(corpus, tmp_path):
    out = tmp_path / "a-file"
    out.write_text("mine")
    r = rnnkit("train", "charlm", "--config", CHAR_TINY, "--data", corpus, "--out", out,
               "--max-steps", 2)
    assert_usage_error(r, "is a file")
    assert out.read_text() == "mine"


# -- sample and eval: errors ----------------------------------------------------------------


class _WritesMarker:
    """Unpickling this calls open(marker, "w"): a stand-in for any code a pickle can run."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


class _Custom:
    """An arbitrary class: not plain data, so a checkpoint holding it is refused."""

    def __init__(self):
        self.weights = [1.0, 2.0]


def _truncated(path, char_run):
    data = (char_run[0] / "best.pt").read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garbage(path, char_run):
    path.write_bytes(bytes(range(256)) * 8)


def _custom_object(path, char_run):
    torch.save({"format": 1, "task": "charlm", "model": _Custom()}, path)


def _pickle_runs_code(path, char_run):
    path.write_bytes(pickle.dumps({"format": 1, "x": _WritesMarker(path.parent / "MARKER")}))


def _torch_pickle_runs_code(path, char_run):
    torch.save({"format": 1, "x": _WritesMarker(path.parent / "MARKER")}, path)


def _other_model(path, char_run):
    # the weights of the 32-unit run under a config that says 16 units
    ck = torch.load(char_run[0] / "best.pt", weights_only=True)
    ck["config"]["model"]["hidden_size"] = 16
    torch.save(ck, path)


CHECKPOINT_ERRORS = {
    "truncated": (_truncated, ["corrupt"]),
    "garbage": (_garbage, ["corrupt"]),
    "custom object": (_custom_object, ["not an rnnkit checkpoint"]),
    "pickle that runs code": (_pickle_runs_code, ["not an rnnkit checkpoint"]),
    "torch pickle that runs code": (_torch_pickle_runs_code,
                                    ["not an rnnkit checkpoint"]),
    "another model": (_other_model, ["does not fit the model its config describes"]),
}


def test_the_code_payload_is_live(tmp_path):
    # unpickled the unsafe way, the payload does write its marker: the refusals below
    # are what keeps it from running
    pickle.loads(pickle.dumps(_WritesMarker(tmp_path / "MARKER"))).close()
    assert (tmp_path / "MARKER").exists()


# sample and eval read a run the same way (lm_runs.load_run): both commands on the
# code-running pickle and the truncated file, one each on the rest, to keep the time down
@pytest.mark.parametrize("case, command", [
    ("truncated", "sample"), ("truncated", "eval"), ("garbage", "eval"),
    ("custom object", "sample"), ("pickle that runs code", "sample"),
    ("pickle that runs code", "eval"), ("torch pickle that runs code", "eval"),
    ("another model", "sample")])
def test_bad_checkpoint_is_refused(case, command, char_run, tmp_path):
    write, fragments = CHECKPOINT_ERRORS[case]
    out = tmp_path / "run"
    out.mkdir()
    write(out / "best.pt", char_run)
    r = rnnkit(command, out)
    assert_usage_error(r, str(out / "best.pt"), *fragments)
    assert not (out / "MARKER").exists()  # refused without running the pickle's code


@pytest.mark.parametrize("command", ["sample", "eval"])
def test_no_checkpoint_or_no_directory(command, tmp_path):
    r = rnnkit(command, tmp_path)
    assert_usage_error(r, "holds no checkpoint", "train a model there first")
    r = rnnkit(command, tmp_path / "nowhere")
    assert_usage_error(r, "no such run directory", str(tmp_path / "nowhere"))


@pytest.mark.parametrize("args, fragments", [
    (["--temperature", -1], ["temperature must be"]),
    (["--top-k", 0], ["top_k must be a positive integer"]),
    (["--top-p", 1.5], ["top_p must be in (0, 1]"]),
])
def test_bad_sampling_option(char_run, args, fragments):
    assert_usage_error(rnnkit("sample", char_run[0], *args), *fragments)


def test_eval_on_a_bad_file(char_run, tmp_path):
    bad = tmp_path / "latin.txt"
    bad.write_bytes("café\n".encode("latin-1"))
    assert_usage_error(rnnkit("eval", char_run[0], "--data", bad), "not UTF-8")


# -- help -----------------------------------------------------------------------------------


@pytest.mark.parametrize("command, options", [
    ([], ["train", "sample", "eval"]),
    (["train"], ["charlm", "wordlm", "--config", "--data", "--out", "--max-steps",
                 "--time-budget", "--resume", "--json", "--quiet"]),
    (["sample"], ["--prompt", "--length", "--temperature", "--top-k", "--top-p", "--seed"]),
    (["eval"], ["--data", "--json"]),
])
def test_help_mentions_every_option(command, options):
    r = rnnkit(*command, "--help")
    assert r.returncode == 0 and r.stderr == ""
    for option in options:
        assert option in r.stdout, option
    if command == ["train"]:
        from rnnkit.config import describe
        from rnnkit.tasks.lm import LMConfig

        keys = [key for key, _, _ in describe(LMConfig)]
        assert "model.hidden_size" in keys
        for key in keys:  # every config key, with its default
            assert f"--{key}=" in r.stdout, key
