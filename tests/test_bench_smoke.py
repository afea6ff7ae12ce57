"""The engine benchmark runs end to end at tiny sizes (speed itself is never tested)."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_engine.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_engine", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_run_reports_every_row(bench):
    r = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--no-write"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    names = list(bench.variants(bench.parse_args(["--quick"]))) + list(bench.MEMORY)
    for name in names:
        assert f"| {name} |" in r.stdout, f"row {name!r} missing from:\n{r.stdout}"
    # every targeted row carries a verdict
    rows = [line for line in r.stdout.splitlines() if line.startswith("| ") and "≤ " in line]
    assert len(rows) == 10
    for line in rows:
        verdicts = line.rstrip().rsplit("|", 2)[-2].strip().split(" / ")
        targets = line.split("|")[5].count("≤")
        assert len(verdicts) == targets and set(verdicts) <= {"PASS", "FAIL"}, line


def test_two_targets_get_two_verdicts(bench):
    rows = bench.build_rows({"a": 1.0, "b": 1.2}, {"a": ("a", None), "b": ("a", (1.5, 1.0))},
                            "ms", 1e3)
    assert rows[1]["verdict"] == "PASS / FAIL"
    assert "| ≤ 1.5 / ≤ 1.0 | PASS / FAIL |" in bench.table(rows, "ms", "ms")[-1]


def test_generate_quick_run_times_every_variant():
    script = SCRIPT.parent / "bench_generate.py"
    r = subprocess.run([sys.executable, str(script), "--quick", "--no-write"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if line.startswith("| ") and "µs" not in line
            and "---" not in line]
    assert len(rows) == 6 and rows[0].startswith("| torch.nn.LSTM |")
    assert all(float(line.split("|")[2]) > 0 for line in rows)
    assert rows[2].rstrip().endswith(("| PASS |", "| FAIL |"))


def test_unavailable_rows_get_no_ratio_or_verdict(bench):
    spec = {"a": ("a", None), "b": ("a", 1.0), "c": ("b", 1.0)}
    rows = bench.build_rows({"a": 2.0, "b": "unavailable (ImportError: x)", "c": 1.0},
                            spec, "ms", 1e3)
    assert [(r["ms"], r["ratio"], r["verdict"]) for r in rows] == [
        (2000.0, 1.0, ""), ("unavailable (ImportError: x)", None, "unavailable"),
        (1000.0, None, "—")]


def test_results_section_is_replaced_not_appended(bench, tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "HERE", str(tmp_path))
    (tmp_path / "RESULTS.md").write_text("# Results\n\nkeep me\n\n<!-- other -->\n")
    bench.update_results("first")
    bench.update_results("second")
    text = (tmp_path / "RESULTS.md").read_text()
    assert "keep me" in text and "second" in text and "first" not in text
    assert text.count("<!-- engine:start -->") == 1
    assert list(tmp_path.iterdir()) == [tmp_path / "RESULTS.md"]  # no temp file left


# -- bench_wordlm.py: its bookkeeping, without the example, the network or training -------

WORDLM = SCRIPT.parent / "bench_wordlm.py"


@pytest.fixture(scope="module")
def wordlm():
    if str(SCRIPT.parent) not in sys.path:  # it imports bench_engine, as a script would
        sys.path.insert(0, str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("bench_wordlm", WORDLM)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_wordlm_epoch_geometry_matches_rnnkit_streams(wordlm):
    import torch

    from rnnkit.data.streams import batchify, num_windows, windows

    for n in (3688, 835524, 20 * 36 + 7):
        g = wordlm.epoch_geometry(n, 20, 35)
        streams = batchify(torch.zeros(n, dtype=torch.long), 20)
        assert g["steps"] == num_windows(streams, 35)
        seen, it = 0, windows(streams, 35)
        for step in range(1, 2 * g["steps"] + 3):
            seen += next(it).targets.numel()
            assert wordlm.words_seen(step, g) == seen, (n, step)
        assert wordlm.words_seen(g["steps"], g) == g["words"]


def test_wordlm_reads_the_example_log(wordlm):
    line = ("| epoch {:3d} | {:5d}/{:5d} batches | lr {:02.2f} | ms/batch {:5.2f} | "
            "loss {:5.2f} | ppl {:8.2f}")
    log = "\n".join([
        "Using device: cpu",
        line.format(1, 200, 1193, 20, 250.0, 6.5, 665.1),
        line.format(1, 400, 1193, 20, 250.0, 6.0, 403.4),
        "-" * 89,
        "| end of epoch   1 | time: 301.20s | valid loss  5.10 | valid ppl   164.02",
        "-" * 89,
        "Exiting from training early",
        "=" * 89,
        "| End of training | test loss  4.99 | test ppl   147.30",
        "=" * 89])
    got = wordlm.parse_example_log(log, 200, 20, 35)
    assert got["words_per_s"] == pytest.approx(401 * 700 / 100.0)  # 0.25 s/batch × 2 × 200
    assert got["epochs"] == [{"epoch": 1, "time_s": 301.2, "valid_ppl": 164.02}]
    assert (got["test_ppl"], got["test_loss"], got["interrupted"]) == (147.3, 4.99, True)


def test_wordlm_words_per_s_leaves_out_validation(wordlm):
    g = wordlm.epoch_geometry(20 * 351, 20, 35)  # 10 full windows an epoch
    metrics = [{"step": 5, "tokens_per_s": 1.0, "elapsed_s": 5.0},
               {"step": 10, "tokens_per_s": 1.0, "elapsed_s": 10.0},
               {"step": 10, "val_loss": 5.0, "elapsed_s": 30.0},
               {"step": 15, "tokens_per_s": 1.0, "elapsed_s": 35.0}]  # validation in 10-15
    assert wordlm.rnnkit_words_per_s(metrics, g, 10) == pytest.approx(700.0)


def test_wordlm_tiny_data_has_one_vocabulary(wordlm, tmp_path, monkeypatch):
    full = tmp_path / "cache" / "brown-lm"
    full.mkdir(parents=True)
    (full / "train.txt").write_text("a b c\n" * 200 + "d a\n")
    (full / "valid.txt").write_text("a z b\n")
    (full / "test.txt").write_text("y c\n")
    monkeypatch.setenv("RNNKIT_CACHE", str(tmp_path / "cache"))
    folder = wordlm.prepare_data(tmp_path / "out", tiny=True)
    assert folder.name == "brown-lm" and folder.parent.parent == tmp_path / "out"
    assert (folder / "valid.txt").read_text() == "a <unk> b\n"  # z is not in tiny train
    assert (folder / "test.txt").read_text() == "<unk> c\n"
    stats = wordlm.corpus_stats(folder)
    assert stats["train"]["tokens_example"] == stats["train"]["tokens_rnnkit"] == 150 * 4


def test_wordlm_markdown_gives_verdicts(wordlm):
    ex = {"words_per_s": 2800.0, "test_ppl": 147.3, "wall_s": 300.0, "epochs": [{}] * 5,
          "interrupted": True, "interrupted_at_s": 1801.0}
    rk = {"words_per_s": 4500.0, "test_ppl": 140.0, "wall_s": 200.0,
          "summary": {"step": 5000, "elapsed_s": 1800.0}}
    result = {"command": "python benchmarks/bench_wordlm.py", "tiny": False,
              "machine": {"cpu": "X", "cores": 2, "threads": 2, "torch": "2", "python": "3",
                          "date": "d"},
              "example_source": {"commit": "abc"},
              "data": {"train": {"tokens_example": 835524}, "vocab": 14115},
              "same": {"epochs": 1, "train_words": 835500, "example": ex,
                       "rnnkit": {"off": {**rk, "words_per_s": 3500.0},  # one row per precision
                                  "bf16": rk}},
              "best": {"budget_s": 1800.0, "example": ex, "rnnkit_config": "default.toml",
                       "rnnkit": {**rk, "test_ppl": 120.0}}}
    text = wordlm.markdown(result)
    assert "| rnnkit, float32 | 3500 | 1.25 |" in text and "| speed FAIL, ppl PASS |" in text
    assert "| rnnkit, bf16 autocast | 4500 | 1.61 |" in text  # 4500 / 2800, 140 < 147.3
    assert "| speed PASS, ppl PASS |" in text
    assert text.rstrip().endswith("| 0.81 | ≤ 0.85 | PASS |")  # 120 / 147.3
