"""The benchmark scripts at a tiny size on the CPU, so they cannot rot (their figures come from real runs)."""
import json
import subprocess
import sys

import pandas as pd

from study.bench.heads import crossovers, slopes
from study.heads import list_heads


def test_bench_heads_runs_and_writes_csv_and_plot(tmp_path):
    out = tmp_path / "bench.csv"
    result = subprocess.run([sys.executable, "-m", "study.bench.heads", "--device", "cpu", "--classes", "10,100",
                             "--dim", "16", "--batch", "32", "--repeats", "2", "--warmup", "1", "--out", str(out)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    frame = pd.read_csv(out)
    assert set(frame["head"]) == set(list_heads()) and set(frame["K"]) == {10, 100}
    assert (frame["median_ms"] > 0).all() and set(frame["phase"]) == {"train", "inference"}
    assert out.with_suffix(".png").is_file()
    assert "fitted log-log slopes" in result.stdout and "beats softmax" in result.stdout


def test_slopes_and_crossovers_on_known_numbers():
    rows = []
    for k in (100, 1000, 10000):
        rows += [{"head": "softmax", "K": k, "phase": "train", "median_ms": k / 100},
                 {"head": "hierarchical", "K": k, "phase": "train", "median_ms": 5.0}]
    frame = pd.DataFrame(rows)
    fitted = slopes(frame).set_index("head")["slope"]
    assert abs(fitted["softmax"] - 1.0) < 1e-9 and abs(fitted["hierarchical"]) < 1e-9
    assert crossovers(frame) == {"hierarchical": 1000}  # 5 ms < 10 ms from K = 1000 on


def test_bench_heads_bad_head_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "study.bench.heads", "--device", "cpu", "--heads", "bogus",
                             "--out", str(tmp_path / "b.csv")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "unknown head 'bogus'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def run_bench(module: str, *args) -> dict:
    """Run a benchmark module on the CPU; returns the JSON summary it prints last."""
    result = subprocess.run([sys.executable, "-m", module, *args, "--device", "cpu"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_bench_epoch_runs_on_cpu():
    summary = run_bench("study.bench.epoch", "--backbone", "tinyvgg", "--images", "256", "--batch-size", "64",
                        "--epochs", "2")
    assert summary["epochs_timed"] == 1 and summary["median_epoch_time_s"] > 0


def test_bench_eval_runs_on_cpu():
    summary = run_bench("study.bench.eval", "--backbone-knob", "width=8", "--images", "200", "--batch-sizes", "100,32",
                        "--repeats", "1")
    assert [row["batch_size"] for row in summary["rows"]] == [100, 32]
    assert all(row["median_s"] > 0 for row in summary["rows"])


def test_bench_memory_measures_each_role_and_the_saved_file():
    """study.bench.memory's two roles in this process (the command runs each in a process of its own, for its own
    peak memory), at a small K: the figures it prints are there, and a final model's saved file is compact."""
    from study.bench.memory import build_parser, run_role

    for role in ("trial", "final"):
        found = run_role(build_parser().parse_args(["--classes", "20", "--dim", "8", "--role", role]))
        assert found["role"] == role and found["classes"] == 20 and found["peak_rss_mb"] > 0
        assert found["train_rows"] == 900  # a final model trains on the trial's rows (the tuning split's)
    assert 0 < found["saved_bytes"] < 200 * 64 + 2000 and found["eval_rows"] == 200
