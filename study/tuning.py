"""One head's search: a Ray Tune `Tuner` with a seeded Optuna TPE searcher and an ASHA scheduler on val_acc.

What it writes where: study/layout.py.
"""
import json
import logging
import math
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from search_spaces import space_for
from study.config import TrainConfig
from study.errors import Interrupted
from study.gpu_monitor import GpuMonitor
from study.layout import GPU_FILE, SUMMARY_FILE, optuna_storage
from study.selection import RULE, best_trial
from study.timing import steady_median
from study.trainable import BASE_KEY, train_trial

METRIC, MODE = RULE["metric"], RULE["mode"]
PROGRESS_METRICS = ["epoch", "val_acc", "val_loss", "train_loss", "epoch_time_s"]
# Ray's newer console output picks its own columns (not val_acc, nor Optuna's parameters); the classic reporter
# shows the ones we name.
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
# Short trials checkpoint often; Ray's warning about frequent experiment snapshots is expected noise here.
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
# Seconds between snapshots of the experiment state (trial statuses, searcher) that --resume continues from.
# Ray's "auto" waits at least 10 s, so after a kill -9 a trial that finished in those 10 s would be trained again;
# a snapshot of a few dozen trials takes milliseconds, so take one every second.
os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")


class _NameRecorder:
    """Stands in for an Optuna trial to list a space's parameter names (first branch of conditional ones)."""

    def __init__(self):
        self.names = []

    def suggest_float(self, name, low, high, **_):
        self.names.append(name)
        return low

    def suggest_int(self, name, low, high, **_):
        self.names.append(name)
        return low

    def suggest_categorical(self, name, choices):
        self.names.append(name)
        return choices[0]


def space_parameters(head: str):
    recorder = _NameRecorder()
    space_for(head)(recorder)
    return recorder.names


@dataclass(frozen=True)
class SearchPlan:
    """Everything one head's search needs, identical for every head but the head name."""
    run_dir: Path
    base: TrainConfig
    num_samples: int
    gpus_per_trial: float
    cpus_per_trial: float
    max_concurrent: int
    grace_period: int
    reduction_factor: int
    checkpoint_every: int
    seed: int
    monitor_gpu: bool = False  # sample this machine's GPUs during each search (local runs with GPU trials)


def build_trainable(plan: SearchPlan, splits):
    trainable = tune.with_parameters(train_trial, splits=splits, checkpoint_every=plan.checkpoint_every)
    return tune.with_resources(trainable, {"cpu": plan.cpus_per_trial, "gpu": plan.gpus_per_trial})


def new_tuner(head: str, plan: SearchPlan, trainable) -> tune.Tuner:
    epochs = plan.base.optim.epochs
    # metric/mode go to the searcher and scheduler themselves: a define-by-run OptunaSearch does not get them from
    # TuneConfig and fails at its first suggestion.
    search = OptunaSearch(
        space=space_for(head), metric=METRIC, mode=MODE, seed=plan.seed, study_name=head,
        storage=optuna.storages.RDBStorage(optuna_storage(plan.run_dir)),
    )
    scheduler = ASHAScheduler(time_attr="training_iteration", metric=METRIC, mode=MODE, max_t=epochs,
                              grace_period=min(plan.grace_period, epochs), reduction_factor=plan.reduction_factor)
    base = plan.base.replace(**{"model.head": head})
    return tune.Tuner(
        trainable,
        param_space={BASE_KEY: base.to_dict()},
        tune_config=tune.TuneConfig(search_alg=search, scheduler=scheduler, num_samples=plan.num_samples,
                                    max_concurrent_trials=plan.max_concurrent, reuse_actors=True,
                                    trial_name_creator=trial_name, trial_dirname_creator=trial_name),
        run_config=tune.RunConfig(
            name=head, storage_path=str(plan.run_dir),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=2),  # a crashed trial restarts from its checkpoint
            verbose=1,
            progress_reporter=tune.CLIReporter(
                metric_columns=PROGRESS_METRICS, parameter_columns=space_parameters(head), metric=METRIC,
                mode=MODE, sort_by_metric=True, max_report_frequency=30, max_progress_rows=40),
        ),
    )


def trial_name(trial) -> str:
    return f"trial_{trial.trial_id}"


def search_head(head: str, plan: SearchPlan, splits) -> dict:
    """Run (or resume) one head's search; returns and saves its summary."""
    experiment = plan.run_dir / head
    trainable = build_trainable(plan, splits)
    if tune.Tuner.can_restore(str(experiment)):
        tuner = tune.Tuner.restore(str(experiment), trainable=trainable, resume_errored=True)
    else:
        tuner = new_tuner(head, plan, trainable)
    started = time.time()
    experiment.mkdir(parents=True, exist_ok=True)
    with GpuMonitor(experiment / GPU_FILE, enabled=plan.monitor_gpu) as gpu:
        grid = tuner.fit()
    if not search_finished(experiment, plan.num_samples):  # after Ctrl-C, Ray returns normally
        raise Interrupted(f"the search of head '{head}' stopped before all {plan.num_samples} trials ended")
    summary = summarise(head, grid, time.time() - started)
    summary["gpu"] = gpu.summary()
    summary["optuna_orphans_failed"] = orphans = fail_orphaned_optuna_trials(head, plan.run_dir)
    if orphans:
        print(f"{head}: Optuna trial(s) {orphans} were handed out just before an earlier run was killed and never "
              f"ran; marked FAIL", flush=True)
    (experiment / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, default=str))
    return summary


def fail_orphaned_optuna_trials(head: str, run_dir: Path) -> list:
    """Mark as FAIL the Optuna trials still RUNNING once every Ray trial has ended; returns their numbers.

    A process killed outright (kill -9, power loss) between Optuna handing out a configuration and Ray's next
    snapshot of its searcher leaves that Optuna trial RUNNING with no Ray trial behind it; the resumed search asks
    for a new one instead. Left RUNNING, the Optuna study would count a trial that Ray never ran.
    """
    study = optuna.load_study(study_name=head, storage=optuna_storage(run_dir))
    orphans = [t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))]
    for number in orphans:
        study.tell(number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
    return orphans


def search_finished(experiment: Path, num_samples: int) -> bool:
    """Judged from the saved experiment state, which is what --resume continues from. (The in-memory result grid
    marks trials that Ctrl-C cut short as terminated.)"""
    # Trials cut before their first result have no metrics yet; Ray warns about each, which says nothing here.
    quiet = logging.getLogger("ray.tune.analysis.experiment_analysis")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        trials = tune.ExperimentAnalysis(str(experiment)).trials
    finally:
        quiet.setLevel(level)
    return len(trials) >= num_samples and all(t.status in ("TERMINATED", "ERROR") for t in trials)


def summarise(head: str, grid, wall_s: float) -> dict:
    trials = []
    for result in grid:
        frame = result.metrics_dataframe
        history = frame.to_dict("list") if frame is not None and len(frame) else {}
        sampled = {k: v for k, v in (result.config or {}).items() if k != BASE_KEY}
        finite = [a for a in history.get(METRIC, []) if a is not None and math.isfinite(a)]
        trials.append({
            "trial_id": (result.metrics or {}).get("trial_id"),
            "path": result.path,
            "params": sampled,
            "status": "error" if result.error else ("diverged" if any(history.get("diverged", [])) else "ok"),
            "error": last_line(result.error) if result.error else divergence(history),
            "epochs": len(finite),
            "last_val_acc": finite[-1] if finite else None,
            "best_val_acc": max(finite) if finite else None,
            "median_epoch_time_s": none_if_nan(steady_median(history.get("epoch_time_s", []))),
            "started_at": history.get("trial_started_at", [None])[0],
            "ended_at": history.get("reported_at", [None])[-1],
            "setup_s": setup_seconds(history),
        })
    return {"head": head, "wall_s": wall_s, "metric": METRIC, "mode": MODE,
            "peak_concurrent_trials": peak_concurrency(trials),
            "median_setup_s": median_or_none([t["setup_s"] for t in trials]),
            "rule": RULE, "best": best_trial(trials), "trials": trials}


def setup_seconds(history: dict):
    """Seconds from entering the trainable to starting the first epoch (model build, data to device, restore)."""
    try:
        first = history["reported_at"][0] - history["trial_started_at"][0]
        return first - history["epoch_time_s"][0] - history["eval_time_s"][0]
    except (KeyError, IndexError, TypeError):
        return None


def peak_concurrency(trials) -> int:
    """Most trials whose [started_at, ended_at] intervals overlap at one moment."""
    events = sorted((t, step) for trial in trials if trial["started_at"] and trial["ended_at"]
                    for t, step in ((trial["started_at"], 1), (trial["ended_at"], -1)))
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def divergence(history: dict):
    """Why a diverged trial stopped, or None."""
    for epoch, diverged, loss in zip(history.get("epoch", []), history.get("diverged", []),
                                     history.get("train_loss", [])):
        if diverged:
            return f"training loss became {loss} at epoch {epoch}; the trial stopped there"
    return None


def last_line(error) -> str:
    """The exception itself: the last non-empty line of Ray's wrapped traceback text."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def none_if_nan(value):
    return None if value is None or math.isnan(value) else value  # summary.json stays strict JSON


def median_or_none(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None
