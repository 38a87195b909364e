"""The dry run: a GPU plan rehearsed on a CPU with Ray's logical GPUs (study/search/dry_run.py)."""
import dataclasses
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
    # The full preset's resources (0.25 GPU and 2 CPUs per trial); one search of 8 trials of 4 epochs instead of
    # its 4 searches of 4 trials of 30, to keep CI short: two waves of four, the second on reused workers.
    result = subprocess.run([*TUNE, "--head", "softmax", "--preset", "full", "--dry-run", "--num-samples", "8",
                             "--searches", "1", "--epochs", "4", "--data-dir", str(study_data),
                             "--storage", str(tmp_path), "--name", "dry"],
                            capture_output=True, text=True, timeout=900, cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run_dir = tmp_path / "dry"
    study = json.loads((run_dir / "study.json").read_text())
    assert study["preset"] == "full" and study["dry_run"]["gpus"] == 1 and study["gpus_per_trial"] == 0.25
    assert study["cpus_per_trial"] == PRESETS["full"].cpus_per_trial and study["dry_run"]["cpus"] == max(
        8, os.cpu_count())  # four trials of 2 CPUs on the one GPU
    assert study["num_samples"] == 8 and study["train"]["optim"]["epochs"] == 4
    summary = json.loads((run_dir / "softmax" / "summary.json").read_text())
    assert len(summary["trials"]) == 8
    intervals = [(t["started_at"], t["ended_at"]) for t in summary["trials"]]
    overlap = max(sum(start <= moment < end for start, end in intervals) for moment, _ in intervals)
    assert overlap >= 4 and summary["peak_concurrent_trials"] >= 4, intervals
    assert "planned: 4 trials at once per GPU" in result.stdout
    assert ("final models: 2 (1 heads x 1 search(es) x 2 seeds) as Ray tasks of 0.25 GPU each, 4 at a time"
            in result.stdout)
    assert "this was a dry run" in result.stdout and "# softmax-study results" not in result.stdout
    refused = subprocess.run([sys.executable, "-m", "analysis", str(run_dir)], capture_output=True, text=True,
                             timeout=300, cwd=REPO)
    assert_one_line_error(refused.returncode, refused.stderr, f"{run_dir} is a dry run")


# Dry runs of every preset but `full` (run above), one after another in one Python process: each is the command's
# own main() with its own run directory, as `python study/tune.py ... --dry-run` would run it, without paying
# Python's, torch's and Ray's start-up five times. Consecutive presets that declare the same logical resources to
# Ray share one local Ray (main() joins the one already started); a preset that declares others gets a new one.
# After each run the script prints the run's name and the resources its Ray had, checked against study.json below.
EVERY_PRESET_SCRIPT = """
import json, sys
import ray
from study.search import dry_run
from study.presets import PRESETS
from study.tune import main

data, storage, presets = sys.argv[1], sys.argv[2], sys.argv[3:]
declared = None
for name in presets:
    preset = PRESETS[name]
    cpus = dry_run.logical_cpus(1.0, preset.gpus_per_trial, preset.cpus_per_trial)
    if cpus != declared:
        ray.shutdown()
        declared = cpus
    print("=== dry run of preset " + name, flush=True)
    main(["--head", "softmax", "--preset", name, "--dry-run", "--num-samples", "1", "--searches", "1", "--epochs", "1",
          "--data-dir", data, "--storage", storage, "--name", name, "--no-analysis"])
    resources = ray.cluster_resources()
    print("=== ray " + json.dumps({"preset": name, "cpus": resources.get("CPU"), "gpus": resources.get("GPU")}),
          flush=True)
ray.shutdown()
"""


def test_dry_run_works_with_every_preset(study_data, tmp_path):
    """Issue 13's "--dry-run works with every preset": each of the others (the full preset's is above) runs its
    search, one trial of one epoch, and ends with the dry run's plan; its run directory is marked as a dry run."""
    # Ordered by the resources they declare, so that presets sharing them share one Ray (two starts, not three).
    presets = sorted((name for name in PRESETS if name != "full"),
                     key=lambda name: dry_run.logical_cpus(1.0, PRESETS[name].gpus_per_trial,
                                                           PRESETS[name].cpus_per_trial))
    result = subprocess.run([sys.executable, "-c", EVERY_PRESET_SCRIPT, str(study_data), str(tmp_path), *presets],
                            capture_output=True, text=True, timeout=900, cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    outputs = result.stdout.split("=== dry run of preset ")[1:]
    assert [output.split()[0] for output in outputs] == presets
    for name, output in zip(presets, outputs):
        study = json.loads((tmp_path / name / "study.json").read_text())
        gpus_per_trial = PRESETS[name].gpus_per_trial
        assert study["preset"] == name and study["train"]["run"]["device"] == "cpu", name
        assert study["dry_run"] == {"gpus": 1.0, "cpus": dry_run.logical_cpus(1.0, gpus_per_trial,
                                                                               PRESETS[name].cpus_per_trial)}, name
        ray_line = json.loads(output.split("=== ray ")[1].splitlines()[0])  # the Ray the run had
        assert (ray_line["cpus"], ray_line["gpus"]) == (study["dry_run"]["cpus"], 1.0), name
        summary = json.loads((tmp_path / name / "softmax" / "summary.json").read_text())
        assert [t["status"] for t in summary["trials"]] == ["ok"], name
        assert list(summary["trials_per_node"].values()) == [1], name  # one local node, recorded by the trial
        assert ("planned: 4 trials at once per GPU" if gpus_per_trial else "planned: CPU trials") in output, name
        assert "this was a dry run: its accuracies mean nothing" in output, name


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
    # The searches ran side by side: softmax's 8 trials at once from t = 100 to 110 s, taylor's 6 from 105 s, so 14
    # at once over the search phase (7 per GPU) while each search's own peak is 8 and 6.
    summaries = [{"head": "softmax", "trials": [{"started_at": 100.0, "ended_at": 110.0}] * 8 + [{}] * 8,
                  "peak_concurrent_trials": 8, "median_setup_s": 1.5},
                 {"head": "taylor", "trials": [{"started_at": 105.0, "ended_at": 112.0}] * 6 + [{}] * 10,
                  "peak_concurrent_trials": 6, "median_setup_s": None}]
    lines = dry_run.plan_lines(spec, summaries)
    assert "planned: 4 trials at once per GPU" in lines
    assert "search phase: measured peak 14 trials at once, 7.00 per GPU" in lines
    assert "  softmax: 16 trials, measured peak 8 at once, 4.00 per GPU, median trial set-up 1.50 s" in lines
    assert "  taylor: 16 trials, measured peak 6 at once, 3.00 per GPU, median trial set-up n/a" in lines
    # 10 final models, 0.25 GPU each on 2 GPUs: 8 at a time, so 2 waves.
    assert any(line.startswith("final models: 10 (2 heads x 1 search(es) x 5 seeds) as Ray tasks of 0.25 GPU each, "
                               "8 at a time, in 2 wave(s)") for line in lines)
    # Four searches of 4 trials per head, 2 seeds each: every search listed, 16 final models.
    spec = dataclasses.replace(spec, searches=4, final_seeds=2)
    summaries = [{"head": "softmax", "search": r, "trials": [{}] * 4, "peak_concurrent_trials": 4,
                  "median_setup_s": 1.0} for r in range(4)]
    lines = dry_run.plan_lines(spec, summaries)
    assert lines[0].startswith("dry run: 2 heads x 16 trials (4 search(es) each) on 2 simulated GPU(s)")
    assert "  softmax search 4: 4 trials, measured peak 4 at once, 2.00 per GPU, median trial set-up 1.00 s" in lines
    assert any(line.startswith("final models: 16 (2 heads x 4 search(es) x 2 seeds)") for line in lines)
