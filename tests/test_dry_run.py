"""The dry run: a GPU plan rehearsed on a CPU with Ray's logical GPUs (study/search/dry_run.py)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import assert_one_line_error
from fake_cifar import write_fake_cifar100
from study.search import dry_run
from study.search.spec import DryRun, StudySpec
from study.config import TrainConfig
from study.presets import PRESETS

REPO = Path(__file__).resolve().parent.parent
TUNE = [sys.executable, str(REPO / "study" / "tune.py")]


@pytest.fixture(scope="module")
def study_data(tmp_path_factory):
    return write_fake_cifar100(tmp_path_factory.mktemp("cifar"), train_per_class=12, test_per_class=2)


def test_four_trials_share_one_simulated_gpu(study_data, tmp_path):
    """The full preset's plan, 0.25 GPU per trial on one simulated GPU: four trials of a head run at once (measured
    from the trials' own start and end times), and the analysis refuses the run."""
    # The full preset's resources (0.25 GPU and 2 CPUs per trial); 8 trials of 10 epochs instead of its 16 of 30,
    # to keep CI short: two waves of four, the second on reused workers.
    result = subprocess.run([*TUNE, "--head", "softmax", "--preset", "full", "--dry-run", "--num-samples", "8",
                             "--epochs", "10", "--data-dir", str(study_data), "--storage", str(tmp_path),
                             "--name", "dry"], capture_output=True, text=True, timeout=900, cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run_dir = tmp_path / "dry"
    study = json.loads((run_dir / "study.json").read_text())
    assert study["preset"] == "full" and study["dry_run"]["gpus"] == 1 and study["gpus_per_trial"] == 0.25
    assert study["cpus_per_trial"] == PRESETS["full"].cpus_per_trial and study["dry_run"]["cpus"] == max(
        8, os.cpu_count())  # four trials of 2 CPUs on the one GPU
    assert study["num_samples"] == 8 and study["train"]["optim"]["epochs"] == 10
    summary = json.loads((run_dir / "softmax" / "summary.json").read_text())
    assert len(summary["trials"]) == 8
    intervals = [(t["started_at"], t["ended_at"]) for t in summary["trials"]]
    overlap = max(sum(start <= moment < end for start, end in intervals) for moment, _ in intervals)
    assert overlap >= 4 and summary["peak_concurrent_trials"] >= 4, intervals
    assert "planned: 4 trials at once per GPU" in result.stdout
    assert "final models: 5 (1 heads x 5 seeds) as Ray tasks of 0.25 GPU each, 4 at a time" in result.stdout
    assert "this was a dry run" in result.stdout and "# softmax-study results" not in result.stdout
    refused = subprocess.run([sys.executable, "-m", "analysis", str(run_dir)], capture_output=True, text=True,
                             timeout=300, cwd=REPO)
    assert_one_line_error(refused.returncode, refused.stderr, f"{run_dir} is a dry run")


@pytest.mark.parametrize("preset", ["smoke", "smoke-frozen", "quick", "frozen", "frozen-gpu", "full"])
def test_every_preset_shrinks_to_seconds(preset):
    real = PRESETS[preset].train
    dry = dry_run.shrink(real)
    assert dry.data.subset == dry_run.DRY_TRAIN_IMAGES and dry.model.backbone_knobs == {"width": 8}
    assert dry.run.device == "cpu" and dry.frozen.enabled == real.frozen.enabled
    assert dry.optim.epochs == real.optim.epochs  # ASHA's rungs stay the real run's
    assert TrainConfig.from_dict(dry.to_dict()) == dry


@pytest.mark.parametrize("gpus,per_trial,cpus,expected", [(1, 0.25, 2, 8), (2, 0.25, 1, 8), (1, 0.5, 1, 2),
                                                          (1, 0, 1, None)])
def test_logical_cpus_let_the_gpus_bound_concurrency(gpus, per_trial, cpus, expected, monkeypatch):
    monkeypatch.setattr(dry_run.os, "cpu_count", lambda: 2)
    assert dry_run.logical_cpus(gpus, per_trial, cpus) == (expected or 2)


def test_plan_lines_by_hand():
    spec = StudySpec(name="dry", heads=("softmax", "taylor"), preset="full", dry_run=DryRun(gpus=2.0, cpus=16),
                     num_samples=16, gpus_per_trial=0.25, cpus_per_trial=2, final_seeds=5)
    summaries = [{"head": "softmax", "trials": [{}] * 16, "peak_concurrent_trials": 8, "median_setup_s": 1.5},
                 {"head": "taylor", "trials": [{}] * 16, "peak_concurrent_trials": 6, "median_setup_s": None}]
    lines = dry_run.plan_lines(spec, summaries)
    assert "planned: 4 trials at once per GPU" in lines
    assert "  softmax: 16 trials, measured peak 8 at once, 4.00 per GPU, median trial set-up 1.50 s" in lines
    assert "  taylor: 16 trials, measured peak 6 at once, 3.00 per GPU, median trial set-up n/a" in lines
    # 10 final models, 0.25 GPU each on 2 GPUs: 8 at a time, so 2 waves.
    assert any(line.startswith("final models: 10 (2 heads x 5 seeds) as Ray tasks of 0.25 GPU each, 8 at a time, "
                               "in 2 wave(s)") for line in lines)
