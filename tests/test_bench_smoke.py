"""The engine benchmark runs end to end at tiny sizes (speed itself is never tested)."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_engine.py"


def test_quick_run_reports_every_row():
    r = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--no-write"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    for row in ("torch.nn.LSTM", "nn.LSTMCell loop", "rnnkit.LSTM auto",
                "LN+rdrop+zoneout LSTM fused", "rnnkit.LSTM fused, lengths"):
        assert f"| {row} |" in r.stdout
    # every targeted row carries a verdict
    for line in r.stdout.splitlines():
        if "≤ " in line:
            assert line.rstrip().endswith(("PASS |", "FAIL |"))


def test_results_section_is_replaced_not_appended(tmp_path, monkeypatch):
    sys.path.insert(0, str(SCRIPT.parent))
    import bench_engine

    monkeypatch.setattr(bench_engine, "HERE", str(tmp_path))
    (tmp_path / "RESULTS.md").write_text("# Results\n\nkeep me\n")
    bench_engine.update_results("first")
    bench_engine.update_results("second")
    text = (tmp_path / "RESULTS.md").read_text()
    assert "keep me" in text and "second" in text and "first" not in text
    assert text.count("<!-- engine:start -->") == 1
