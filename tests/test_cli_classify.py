"""The classification command line as a user runs it: ``python -m rnnkit train classify |
eval | predict`` in a subprocess on the user's own CSV/TSV/JSONL/folder, with the one-line
errors (exit code 2, nothing written) the issue lists.

One tiny word-level run is trained once for the module and shared."""

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch
from test_cli_lm import assert_usage_error, one_json, rnnkit

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs" / "classify" / "tiny.toml")
FIXTURE = ROOT / "tests" / "fixtures" / "classify" / "reviews.csv"
COLUMNS = ["--text-column", "review", "--label-column", "sentiment"]
LABELS = ["bad", "good", "so-so, 그저 그래"]
STEPS = 30


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "classify"
    r = rnnkit("train", "classify", "--config", TINY, "--data", FIXTURE, *COLUMNS,
               "--out", out, "--max-steps", STEPS, "--json")
    assert r.returncode == 0, r.stderr
    return out, one_json(r.stdout)


def test_train_summary_reports_validation_and_test_scores(run):
    out, summary = run
    assert summary["step"] == STEPS and summary["classes"] == LABELS
    # 180 examples, 10% + 10% held out class by class: 18 validate, 18 test
    for split in ("val", "test"):
        assert 0.8 <= summary[f"{split}_accuracy"] <= 1  # keywords decide the class
        assert 0.8 <= summary[f"{split}_macro_f1"] <= 1
    metrics = json.loads((out / "report" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["examples"] == 18 and metrics["labels"] == LABELS
    assert metrics["accuracy"] == summary["test_accuracy"]
    assert [sum(row) for row in metrics["confusion"]] == [6, 6, 6]
    wrong = [json.loads(line) for line in
             (out / "report" / "misclassified.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(wrong) == round(18 * (1 - metrics["accuracy"]))
    assert all(w["label"] != w["predicted"] for w in wrong)
    assert (out / "report" / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    ck = torch.load(out / "best.pt", weights_only=True)
    assert ck["task"] == "classify" and ck["labels"] == LABELS
    assert ck["tokenizer"]["kind"] == "word"


def test_eval_reads_the_task_from_the_checkpoint(run, tmp_path):
    out, summary = run
    r = rnnkit("eval", out, "--json")
    assert r.returncode == 0, r.stderr
    m = one_json(r.stdout)
    assert m["split"] == "test" and m["examples"] == 18
    assert m["test_accuracy"] == summary["test_accuracy"]
    assert set(m["per_class"]) == set(LABELS)
    # another file, as JSON lines with other column names than the run's
    other = tmp_path / "more.jsonl"
    other.write_text(json.dumps({"text": "loved it, great 최고", "label": "good"}) + "\n"
                     + json.dumps({"text": "awful and boring", "label": "bad"}) + "\n")
    assert_usage_error(rnnkit("eval", out, "--data", other), "no text column 'review'")
    m = one_json(rnnkit("eval", out, "--data", other, "--text-column", "text",
                        "--label-column", "label", "--json").stdout)
    assert m["examples"] == 2 and m["test_accuracy"] == 1.0
    assert (out / "report-more" / "metrics.json").exists()


def test_predict_texts_and_files(run, tmp_path):
    out, _ = run
    r = rnnkit("predict", out, "loved it, wonderful", "awful, hated it", "--json")
    assert r.returncode == 0, r.stderr
    rows = one_json(r.stdout)["predictions"]
    assert [row["label"] for row in rows] == ["good", "bad"]
    for row in rows:
        assert sum(row["probabilities"].values()) == pytest.approx(1, abs=1e-6)
        assert row["probability"] == max(row["probabilities"].values())
    plain = rnnkit("predict", out, "loved it, wonderful")
    assert plain.stdout.startswith("good\t") and plain.returncode == 0

    texts = tmp_path / "in.txt"
    texts.write_text("great film\n\nboring plot\n최악\n", encoding="utf-8")
    result = tmp_path / "pred.csv"
    r = rnnkit("predict", out, "--input", texts, "--output", result, "--json")
    assert r.returncode == 0, r.stderr
    assert one_json(r.stdout)["texts"] == 3
    with open(result, encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert [t["text"] for t in table] == ["great film", "boring plot", "최악"]
    assert [t["label"] for t in table] == ["good", "bad", "bad"]
    assert list(table[0])[3:] == [f"p({label})" for label in LABELS]
    r = rnnkit("predict", out, "--input", FIXTURE, "--text-column", "review",
               "--output", tmp_path / "all.jsonl")
    assert r.returncode == 0 and "wrote 180 predictions" in r.stdout
    assert len((tmp_path / "all.jsonl").read_text(encoding="utf-8").splitlines()) == 180


def test_long_texts_are_cut_with_a_warning(run):
    out, _ = run
    r = rnnkit("predict", out, "great " * 100, "--json")  # tiny.toml: max_length = 64
    assert r.returncode == 0, r.stderr
    assert "1 of 1 texts are longer than tokenizer.max_length=64" in r.stderr
    assert one_json(r.stdout)["predictions"][0]["label"] == "good"


def test_resume_continues(run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(run[0], out)
    r = rnnkit("train", "classify", "--out", out, "--resume", "--max-steps", STEPS + 10,
               "--json", *COLUMNS)
    assert r.returncode == 0, r.stderr
    assert one_json(r.stdout)["step"] == STEPS + 10


def test_folder_data_with_bpe_and_attention(tmp_path):
    # (word and char tokens, the other poolings: tests/test_classify.py, without a process)
    kind, pooling = "bpe", "attention"
    pytest.importorskip("tokenizers")
    with open(FIXTURE, encoding="utf-8") as f:
        for i, row in enumerate(csv.DictReader(f)):
            folder = tmp_path / "data" / row["sentiment"]
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{i}.txt").write_text(row["review"], encoding="utf-8")
    out = tmp_path / "run"
    r = rnnkit("train", "classify", "--config", TINY, "--data", tmp_path / "data",
               "--out", out, "--max-steps", 20, f"--tokenizer.kind={kind}",
               f"--model.pooling={pooling}", "--tokenizer.max_length=200", "--json")
    assert r.returncode == 0, r.stderr
    summary = one_json(r.stdout)
    assert summary["classes"] == LABELS and 0 <= summary["test_accuracy"] <= 1
    assert torch.load(out / "best.pt", weights_only=True)["tokenizer"]["kind"] == kind
    r = rnnkit("predict", out, "고양이 Ж", "--json")  # unseen characters: <unk>, no failure
    assert r.returncode == 0, r.stderr
    assert one_json(r.stdout)["predictions"][0]["label"] in LABELS


TRAIN_ERRORS = {
    "missing column": ("text,label\n", "text,sentiment\n" + "a,b\n" * 20, [],
                       ["no label column 'label'", "its columns are: text, sentiment"]),
    "empty label": (None, "text,label\n" + "a,x\nb,y\n" * 10 + "c, \n", [],
                    ["line 22: empty label"]),
    "one class": (None, "text,label\n" + "a,x\n" * 20, [],
                  ["every example has the label 'x'", "at least two classes"]),
    "no validation": (None, "text,label\n" + "a,x\nb,y\n" * 10, ["--data.valid_fraction=0"],
                      ["no valid examples"]),
    "unknown test label": (None, "text,label\n" + "a,x\nb,y\n" * 10,
                           ["--data.test=TESTFILE"], ["labels the training data lacks: 'z'"]),
    "bad pooling": (None, "text,label\n" + "a,x\nb,y\n" * 10, ["--model.pooling=sum"],
                    ["model.pooling", "expected one of"]),
    "column for a language model": (None, "", ["--task-wordlm"], ["is for classify"]),
}


@pytest.mark.parametrize("case", list(TRAIN_ERRORS))
def test_train_error_is_one_line_and_leaves_no_run(case, tmp_path):
    _, content, extra, fragments = TRAIN_ERRORS[case]
    data = tmp_path / "data.csv"
    data.write_text(content, encoding="utf-8")
    (tmp_path / "test.csv").write_text("text,label\nq,z\n")
    extra = [a.replace("TESTFILE", str(tmp_path / "test.csv")) for a in extra]
    task = "wordlm" if "--task-wordlm" in extra else "classify"
    extra = [a for a in extra if a != "--task-wordlm"]
    out = tmp_path / "run"
    r = rnnkit("train", task, "--config", TINY, "--data", data, "--out", out,
               "--label-column", "label", "--max-steps", 2, "--json", *extra)
    assert_usage_error(r, *fragments)
    assert not out.exists()


def test_predict_errors(run, tmp_path):
    out, _ = run
    assert_usage_error(rnnkit("predict", out), "give the texts to classify")
    assert_usage_error(rnnkit("predict", out, "x", "--output", tmp_path / "p.xlsx"),
                       ".jsonl, .csv or .tsv")
    assert not (tmp_path / "p.xlsx").exists()
    assert_usage_error(rnnkit("predict", tmp_path / "nowhere", "x"), "no such run directory")


def test_predict_on_a_language_model_points_to_sample(tmp_path):
    out = tmp_path / "lm"
    out.mkdir()
    torch.save({"format": 1, "task": "charlm"}, out / "best.pt")
    assert_usage_error(rnnkit("predict", out, "x"), "generates text", "rnnkit sample")


def test_help_lists_classify_options_and_keys():
    r = rnnkit("train", "--help")
    for text in ("classify", "--text-column", "--label-column", "--tokenizer.kind=",
                 "--model.pooling=", "--data.split_seed="):
        assert text in r.stdout, text
    r = rnnkit("predict", "--help")
    for text in ("--input", "--output", "--json", "--text-column"):
        assert text in r.stdout, text
