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
    assert len(rows) == 8
    for line in rows:
        assert line.rstrip().endswith(("| PASS |", "| FAIL |", "| unavailable |")), line


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
