"""The convergence check: each head's chosen configuration trained on the tuning split at the study's epochs (1x)
and at twice them (2x), in pairs of the final models' configurations and seeds (PAIRS per head), scored on the
validation split. The test split is not touched: it stays the final models', evaluated once; their spread is the
check's noise (analysis/convergence_stats.py).

A final model trains on the tuning split at 1x and is scored on the validation split once (analysis/retrain.py,
format 5): it is its pair's 1x run, so the check trains only the 2x runs, scored after every epoch (the curves of
accuracy against time). Final models saved by older code (formats 3 and 4, trained on the training and validation
rows together) hold no validation accuracy: then the check trains their 1x runs too, as it did before.

Each run the check trains leaves a record, predictions/convergence/<head>_seed<s>_<epochs>ep.json (its configuration
and per-epoch history), reused while the configuration matches. The statistics are analysis/convergence_stats.py's.
"""
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from analysis.configs import as_json, reuse_key
from analysis.convergence_stats import TARGETS, convergence_verdicts, time_to_accuracy
from study.config import TrainConfig
from study.files import write_text_atomic
from study.search.rundir import read_saved

FORMAT = 1  # bump when what a record holds changes: older records are then trained again
FACTORS = (1, 2)  # the study's epochs, and twice them
# Configurations (and seeds) trained at both budgets per head: the gain's pairs. Two, not one per search: the noise
# comes from the final models, so more pairs would only average the gain (a check of 4 pairs took 451 s of a
# 1,339 s default study, README's Results at 02b7024; of 2, half).
PAIRS = 2


@dataclass(frozen=True)
class CheckJob:
    head: str
    seed: int
    factor: int  # of the study's epochs
    config: TrainConfig


def check_jobs(final_jobs, final_records=None) -> list:
    """Every (head, seed, factor) run to train: a final model's configuration (analysis/retrain.py: Job), on the
    tuning split, at factor x epochs; per head, its 1x runs, then its 2x runs. final_records: {(head, seed): the
    final model's record}; a 1x run whose final model holds its validation accuracy is that model, not a job."""
    final_records = final_records or {}
    jobs = []
    heads = list(dict.fromkeys(job.head for job in final_jobs))
    for head in heads:
        for factor in FACTORS:
            for job in (j for j in final_jobs if j.head == head):
                if factor == FACTORS[0] and as_first_run(final_records.get((head, job.seed))) is not None:
                    continue
                cfg = job.config.replace(**{"data.final": False, "optim.epochs": factor * job.config.optim.epochs})
                jobs.append(CheckJob(head, job.seed, factor, cfg))
    return jobs


def as_first_run(final_record: Optional[dict]) -> Optional[dict]:
    """A final model's record as its pair's 1x run (this module's record: configuration, history whose last epoch
    holds the validation accuracy, training rows); None unless it holds a validation accuracy (format 5)."""
    if not isinstance(final_record, dict) or "val_acc" not in final_record or not final_record.get("history"):
        return None
    history = [dict(epoch) for epoch in final_record["history"]]
    history[-1].update(val_acc=final_record["val_acc"], val_loss=final_record.get("val_loss"))
    return {"format": FORMAT, "config": final_record["config"], "history": history,
            "train_rows": final_record.get("train_rows")}


def first_runs_of_final_models(final_records: dict) -> dict:
    """{(head, seed, 1): record} for every final model that is its pair's 1x run (as_first_run)."""
    found = {(head, seed, FACTORS[0]): as_first_run(record) for (head, seed), record in final_records.items()}
    return {key: record for key, record in found.items() if record is not None}


def record_path(folder: Path, job: CheckJob) -> Path:
    return folder / f"{job.head}_seed{job.seed}_{job.config.optim.epochs}ep.json"


def saved_record(folder: Path, job: CheckJob) -> Optional[dict]:
    """The job's record, if one was saved by this code for this configuration (else it is trained)."""
    from study.errors import ConfigError

    record = read_saved(record_path(folder, job))
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        return None
    try:
        same = reuse_key(record["config"]) == reuse_key(as_json(job.config))
    except (ConfigError, KeyError, TypeError):
        return None
    return record if same else None


def train_on_tuning_split(config: dict, splits, threads: Optional[int] = None) -> dict:
    """One run of the check; returns its record. Runs in-process or as a Ray task (threads: the task's reserved
    CPUs, as torch threads, analysis/retrain.py: task_threads; None: as they are)."""
    from study.timing import torch_threads
    from study.trainer import Trainer, fit

    with torch_threads(threads):
        cfg = TrainConfig.from_dict(config)
        trainer = Trainer(cfg, splits)
        history = [{k: v for k, v in epoch.items() if isinstance(v, (int, float, bool))}
                   for epoch in fit(cfg, trainer=trainer)]
    return {"format": FORMAT, "config": config, "history": history, "train_rows": len(trainer.train_data),
            "threads": threads}


def run_check(jobs, folder: Path, ray_resources=None, force=False, log=print, features_id=None,
              final_records=None) -> dict:
    """Train every check run not saved before; returns {(head, seed, factor): record}, the 1x runs that are final
    models (final_records, as for check_jobs) included. ray_resources as for the final models
    (analysis/retrain.py: run_jobs)."""
    folder.mkdir(parents=True, exist_ok=True)
    reused = first_runs_of_final_models(final_records or {})
    records = {} if force else {(j.head, j.seed, j.factor): r for j in jobs
                                if (r := saved_record(folder, j)) is not None}
    todo = [j for j in jobs if (j.head, j.seed, j.factor) not in records]
    log(f"convergence check (tuning split, {FACTORS[0]}x and {FACTORS[1]}x the epochs): "
        + (f"{len(reused)} 1x runs are the final models, " if reused else "")
        + f"{len(records)} runs saved, {len(todo)} to train")
    records.update(reused)
    if not todo:
        return records
    from study.frozen import check_same_features
    from study.inputs import load_splits

    splits = load_splits(todo[0].config)
    check_same_features(features_id, splits, "the convergence check")

    def keep(job, record):
        write_text_atomic(record_path(folder, job), json.dumps(record, indent=1, default=float))
        records[(job.head, job.seed, job.factor)] = record

    if ray_resources is None:
        for index, job in enumerate(todo, 1):
            log(f"  [{index}/{len(todo)}] {job.head} seed {job.seed}: {job.config.optim.epochs} epochs")
            keep(job, train_on_tuning_split(as_json(job.config), splits))
        return records
    import ray

    splits_ref = ray.put(splits)
    task = ray.remote(**ray_resources)(train_on_tuning_split)
    from analysis.retrain import task_threads

    threads = task_threads(ray_resources)
    pending = {task.remote(as_json(job.config), splits_ref, threads): job for job in todo}
    while pending:  # each record saved as soon as its run is done: nothing finished is lost to a later failure
        (ready,), _ = ray.wait(list(pending), num_returns=1)
        job = pending.pop(ready)
        keep(job, ray.get(ready))
        log(f"  {job.head} seed {job.seed} ({job.config.optim.epochs} epochs): done "
            f"({len(todo) - len(pending)}/{len(todo)})")
    return records


def val_curves(records: dict, head: str, factor: int) -> np.ndarray:
    """[seeds, epochs] validation accuracy after each epoch of the head's runs at `factor` (seeds in order; a
    diverged run, whose history stops early, is left out). For the 2x runs only: a 1x run that is a final model
    holds its validation accuracy after the last epoch alone (final_accuracies reads both)."""
    if factor != FACTORS[-1]:
        raise ValueError(f"validation curves exist for the {FACTORS[-1]}x runs only, not {factor}x")
    runs = [r["history"] for (h, _, f), r in sorted(records.items()) if h == head and f == factor]
    if not runs:
        return np.empty((0, 0))
    length = max(len(history) for history in runs)
    kept = [[e["val_acc"] for e in history] for history in runs
            if len(history) == length and not any(e.get("diverged") for e in history)]
    return np.array(kept, float).reshape(len(kept), length)


def round_epoch_seconds(costs: Optional[dict], head: str, train_rows: int) -> np.ndarray:
    """The head's epoch time on the tuning split in each timing round, in seconds: the protocol times epochs of
    the final models' training set, so each round's images/s is scaled to the tuning split's rows."""
    if not costs:
        return np.empty(0)
    return np.array([train_rows / r["images_per_s"] for r in costs["rounds"] if r["head"] == head], float)


def final_accuracies(records: dict, head: str, factor: int) -> dict:
    """{seed: validation accuracy after the last epoch} of the head's complete runs at `factor` (a diverged run,
    whose history stops early or says so, is left out)."""
    finals = {}
    for (h, seed, f), record in records.items():
        history = record["history"]
        epochs = record["config"]["optim"]["epochs"] if "config" in record else len(history)
        if h == head and f == factor and len(history) == epochs and history and not any(
                e.get("diverged") for e in history):
            finals[seed] = history[-1]["val_acc"]
    return finals


def final_pairs(records: dict, head: str) -> list:
    """[(final validation accuracy at 1x, at 2x)] per seed of the head that has a complete run at both budgets."""
    short, long = (final_accuracies(records, head, factor) for factor in FACTORS)
    return [(short[seed], long[seed]) for seed in sorted(short) if seed in long]


def check_frame(records: dict, heads, costs: Optional[dict], noise: dict, baseline: str = "softmax",
                judged=None) -> pd.DataFrame:
    """One row per head: final validation accuracy at 1x and 2x (means over the pairs), the convergence verdict
    against the head's run-to-run noise (noise: {head: SD}, analysis/convergence_stats.py: run_noise;
    convergence_verdicts), and the time to 90 % and 99 % of the baseline's converged accuracy with 95 % intervals
    (NaN without timing rounds or without the baseline; inf: not reached within 2x the epochs). judged: the heads
    the verdicts are about (default all; the analysis leaves the near-chance ones out, which get no verdict)."""
    short, long = FACTORS
    baseline_final = val_curves(records, baseline, long)
    judged = list(heads) if judged is None else [h for h in heads if h in set(judged)]
    pairs = {head: final_pairs(records, head) for head in heads}
    verdicts = convergence_verdicts({head: pairs[head] for head in judged}, noise)
    unjudged = {"convergence_gain": np.nan, "convergence_gain_se": np.nan, "convergence_p": np.nan,
                "convergence_p_holm": np.nan, "convergence_noise": np.nan, "budget_limited": None}
    rng = np.random.default_rng(0)
    rows = []
    for head in heads:
        curves_2x = val_curves(records, head, long)
        finals_1x, finals_2x = (list(final_accuracies(records, head, f).values()) for f in (short, long))
        row = {"head": head, "val_acc_1x": np.mean(finals_1x) if finals_1x else np.nan,
               "val_acc_2x": np.mean(finals_2x) if finals_2x else np.nan,
               "convergence_pairs": len(pairs[head]), **verdicts.get(head, unjudged)}
        rows_of_head = [r["train_rows"] for (h, _, f), r in records.items() if h == head and f == long]
        epoch_s = round_epoch_seconds(costs, head, rows_of_head[0]) if rows_of_head else np.empty(0)
        for column, fraction in TARGETS.items():
            if epoch_s.size and curves_2x.size and baseline_final.size:
                found = time_to_accuracy(curves_2x, epoch_s, baseline_final[:, -1], fraction, rng)
            else:
                found = dict.fromkeys(("estimate", "ci_low", "ci_high"), np.nan)
            row.update({column: found["estimate"], f"{column}_ci_low": found["ci_low"],
                        f"{column}_ci_high": found["ci_high"]})
        rows.append(row)
    return pd.DataFrame(rows)


def target_lines(summary: pd.DataFrame, baseline: str = "softmax") -> dict:
    """{label: accuracy} of the time-to-accuracy targets, for the plot (none without the baseline's 2x runs)."""
    converged = summary.loc[summary["head"] == baseline, "val_acc_2x"]
    if converged.empty or not np.isfinite(converged.iloc[0]):
        return {}
    return {f"{int(100 * fraction)} % of {baseline} at 2x": fraction * converged.iloc[0]
            for fraction in TARGETS.values()}


def curve_frame(records: dict, heads, costs: Optional[dict]) -> pd.DataFrame:
    """The 2x runs' validation accuracy against cumulative training seconds (the median round's epoch time), per
    head and epoch: mean and min/max over seeds, for accuracy_vs_time.png."""
    rows = []
    for head in heads:
        curves = val_curves(records, head, FACTORS[1])
        rows_of_head = [r["train_rows"] for (h, _, f), r in records.items() if h == head and f == FACTORS[1]]
        epoch_s = round_epoch_seconds(costs, head, rows_of_head[0]) if rows_of_head else np.empty(0)
        if not curves.size or not epoch_s.size:
            continue
        seconds = float(np.median(epoch_s))
        for epoch in range(curves.shape[1]):
            column = curves[:, epoch]
            rows.append({"head": head, "epoch": epoch + 1, "seconds": (epoch + 1) * seconds,
                         "val_acc": column.mean(), "val_acc_min": column.min(), "val_acc_max": column.max()})
    return pd.DataFrame(rows)
