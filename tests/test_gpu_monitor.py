"""The GPU sampler behind the study's 'GPU busy %' column, driven by a stand-in nvidia-smi (CI has no GPU)."""
import stat
import time

import pytest

from study.search.gpu_monitor import CSV_HEADER, GpuMonitor, parse_sample
from study.search.report import gpu_columns

FAKE_NVIDIA_SMI = """#!/bin/sh
# Prints what `nvidia-smi --query-gpu=index,utilization.gpu,memory.used --format=csv,noheader,nounits` does,
# for two GPUs, until it is terminated; a warning line and an [N/A] field are thrown in.
echo "WARNING: this line is not a sample"
while true; do
  echo "0, 80, 1000"
  echo "1, 100, 2000"
  echo "1, [N/A], 2000"
  sleep 0.05
done
"""


def fake_nvidia_smi(folder):
    path = folder / "nvidia-smi"
    path.write_text(FAKE_NVIDIA_SMI)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_samples_are_averaged_and_written_as_they_arrive(tmp_path):
    csv = tmp_path / "gpu_utilisation.csv"
    with GpuMonitor(csv, interval_s=0.05, command=fake_nvidia_smi(tmp_path)) as monitor:
        deadline = time.time() + 30
        while len(monitor.samples) < 6 and time.time() < deadline:
            time.sleep(0.05)
        assert csv.read_text().count("\n") > 1  # rows are on disk before the block ends
    summary = monitor.summary()
    assert summary["gpus"] == 2 and summary["gpu_peak_memory_mib"] == 2000
    per_gpu = {gpu: [s[2] for s in monitor.samples if s[1] == gpu] for gpu in (0, 1)}
    assert set(per_gpu[0]) == {80.0} and set(per_gpu[1]) == {100.0}
    expected = (80 * len(per_gpu[0]) + 100 * len(per_gpu[1])) / (len(per_gpu[0]) + len(per_gpu[1]))
    assert summary["gpu_busy_pct"] == pytest.approx(expected)
    lines = csv.read_text().splitlines()
    assert lines[0] + "\n" == CSV_HEADER and len(lines) - 1 == summary["samples"]
    assert gpu_columns(summary)["GPU peak MiB"] == "2000"


def test_no_nvidia_smi_means_no_samples_and_no_file(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing called nvidia-smi there
    with GpuMonitor(tmp_path / "gpu.csv") as monitor:
        pass
    assert not monitor.available and monitor.summary() is None and not (tmp_path / "gpu.csv").exists()
    assert gpu_columns(None) == {}


def test_disabled_monitor_starts_nothing(tmp_path):
    with GpuMonitor(tmp_path / "gpu.csv", command=fake_nvidia_smi(tmp_path), enabled=False) as monitor:
        pass
    assert monitor.summary() is None and not (tmp_path / "gpu.csv").exists()


def test_summary_by_hand(tmp_path):
    monitor = GpuMonitor(tmp_path / "gpu.csv", enabled=False)
    monitor.samples = [(0.0, 0, 50.0, 100.0), (0.5, 1, 90.0, 300.0), (1.0, 0, 70.0, 250.0), (1.5, 1, 10.0, 200.0)]
    summary = monitor.summary()
    assert summary["gpu_busy_pct"] == 55.0  # (50 + 90 + 70 + 10) / 4: every sample of every GPU alike
    assert summary["gpu_peak_memory_mib"] == 300.0 and summary["gpus"] == 2 and summary["samples"] == 4


def test_parse_sample():
    assert parse_sample("0, 87, 10240\n") == (0, 87.0, 10240.0)
    assert parse_sample("0, [N/A], 10240") is None
    assert parse_sample("No devices were found") is None
