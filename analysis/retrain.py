"""Retraining each search's best configuration over seeds, on the tuning split's training rows (the rows it was
tuned on: the same steps and schedule), evaluated once on test, and once on the validation split: that accuracy is
the convergence check's run at the study's epochs (analysis/convergence.py).

Each final model leaves its compact test predictions (npz: per example the true class, the class ranked first, the
top-5 classes and a few log-probabilities, study/predictions.py; never the [N, K] matrix) and a record (json:
config, per-epoch history, costs), so metrics can be recomputed without training; a model whose record matches the
requested config is reused.

Costs do not come from the final models (which may share a device): once they are done, run_jobs hands the
timing protocol (analysis/timing_protocol.py, which also keeps its `costs.json`) the same configurations and data,
to train every head again in interleaved rounds, alone on one device.
"""
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from analysis import timing_protocol
from analysis.configs import as_json, reuse_key
from study.config import TrainConfig
from study.errors import ConfigError
from study.predictions import Compact, saved_problem
from study.files import load_arrays, save_arrays, write_atomic, write_text_atomic
from study.search.rundir import prediction_files, read_saved, readable_arrays


# Version of what a saved final model holds. Models saved by older code (before the ranking scores, Gumbel's
# softmax(z) evaluation, undecayed biases, the timed_alone flag and the unpadded hierarchical head) are never
# reused: they are trained again. Format 3 saved the full test log-probabilities (and scores) [N, K]; its models
# are still read, their compact predictions computed on loading (the same figures: tests/test_predictions.py).
# Formats 3 and 4 trained on the training and validation rows together and hold no validation accuracy; format 5
# trains on the tuning split's training rows and holds it (val_acc). An older run's models are still reused, but a
# run's models are never a mix: when any must be trained, its older ones are trained again with it (run_jobs).
RECORD_FORMAT = 5
READABLE_FORMATS = (3, 4, 5)


@dataclass(frozen=True)
class Job:
    head: str
    seed: int
    config: TrainConfig
    search: int = 0  # which of the head's searches selected the configuration (study/search/searches.py)


@dataclass(frozen=True)
class Prediction:
    """One final model's saved test output."""
    compact: Compact
    record: dict

    @property
    def labels(self) -> np.ndarray:
        return self.compact.labels


def is_cached(out_dir: Path, job: Job) -> bool:
    """Whether the job's final model is saved whole, by this code, for this configuration (else it is trained)."""
    return cached_record(out_dir, job) is not None


def cached_record(out_dir: Path, job: Job) -> Optional[dict]:
    """The job's saved record when its final model is saved whole, for this configuration; else None."""
    npz, record_path = prediction_files(out_dir, job.head, job.seed)
    record = read_saved(record_path)
    return record if record is not None and matches(record, job.config) and predictions_whole(npz) else None


def predictions_whole(npz: Path) -> bool:
    """Whether a saved .npz reads back whole, as plain arrays, and holds usable predictions (a damaged or partial
    file is trained again rather than failing the analysis)."""
    arrays = readable_arrays(npz)
    return arrays is not None and saved_problem(arrays) is None


def matches(record: dict, config: TrainConfig) -> bool:
    """Whether a saved record was made by this version of the code from this configuration."""
    if not isinstance(record, dict) or record.get("format") not in READABLE_FORMATS:
        return False
    try:
        return reuse_key(record["config"]) == reuse_key(as_json(config))
    except (ConfigError, KeyError, TypeError):  # a field this code does not know: made by other code
        return False


def load_final_splits(cfg: TrainConfig):
    from study.inputs import load_splits

    return load_splits(cfg.replace(**{"data.final": True}))


def train_final(config: dict, splits, threads: Optional[int] = None):
    """Train one final model; returns (its compact test predictions, record). Runs in-process or as a Ray task
    (threads: the task's reserved CPUs, as torch threads; None: as they are). The record holds the validation
    split's accuracy and loss after the last epoch (val_acc, val_loss), which the test split never influences."""
    from study.timing import torch_threads
    from study.trainer import Trainer, fit

    with torch_threads(threads):
        cfg = TrainConfig.from_dict(config)
        started = time.time()
        trainer = Trainer(cfg, splits)
        history = list(fit(cfg, trainer=trainer))
        evaluation = trainer.evaluate()
        record = final_record(trainer, config, history, started, splits)
        if trainer.val_data is not None:
            record.update(**trainer.validation_metrics(), val_rows=len(trainer.val_data))
        return evaluation, record


def task_threads(ray_resources: dict) -> int:
    """The torch threads of a final model or check run as a Ray task: one per CPU it reserved (at least one). Set
    in the task, not inherited: a worker process may last have run the timing protocol with a thread per core."""
    return max(1, int(ray_resources.get("num_cpus", 1)))


def device_name(device) -> str:
    """The processor a run was timed on: costs from different models of GPU or CPU do not compare."""
    import platform

    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def final_record(trainer, config: dict, history, started: float, splits) -> dict:
    """What a final model's .json holds besides its test outputs: its configuration, training and costs as built."""
    import torch

    head = trainer.head
    record = {
        "format": RECORD_FORMAT, "config": config, "history": history, "wall_s": time.time() - started,
        "device": str(trainer.device), "device_name": device_name(trainer.device),
        "threads": torch.get_num_threads(), "features_id": splits.features_id, "train_rows": len(trainer.train_data),
        "head_params": sum(p.numel() for p in head.parameters()),
        "train_cost": head.train_cost, "infer_cost": head.infer_cost,
        "head_notes": head.notes(),  # what the head built other than asked (the report lists them)
        "coarse_of_fine": list(splits.class_info.coarse_of_fine or []),
        "fine_names": list(splits.class_info.fine_names or []),
        "coarse_names": list(splits.class_info.coarse_names or []),
    }
    return record


def save(out_dir: Path, job: Job, evaluation: Compact, record, timed_alone: bool) -> None:
    npz, record_path = prediction_files(out_dir, job.head, job.seed)
    write_atomic(npz, lambda path: save_arrays(path, compressed=True, **evaluation.arrays()))
    record = {**record, "timed_alone": timed_alone}
    # The record last: it marks the pair complete. Both are renamed into place whole, so a full disk or a kill
    # mid-write leaves the model missing (trained again), never half-saved.
    write_text_atomic(record_path, json.dumps(record, indent=1, default=float))


def run_jobs(jobs, out_dir: Path, ray_resources=None, force=False, log=print, features_id=None,
             retime=False, round_seconds: float = 0.5, rounds: Optional[int] = None) -> None:
    """Train every job not already cached (every job with force; old files are replaced only by new ones), then
    measure the heads' costs by the timing protocol unless costs.json holds them for these configurations (always
    with force or retime). ray_resources={"num_gpus": g, "num_cpus": c} runs the final models as concurrent Ray
    tasks (Ray must be initialised) and the protocol as one task holding a whole GPU or node; None runs both in
    this process. round_seconds and rounds: the study's timing_round_s and timing_rounds."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cached = [None if force else cached_record(out_dir, job) for job in jobs]
    todo = [job for job, record in zip(jobs, cached) if record is None]
    older = [job for job, record in zip(jobs, cached) if record is not None and record["format"] != RECORD_FORMAT]
    current = any(record is not None and record["format"] == RECORD_FORMAT for record in cached)
    if older and (todo or current):  # never a mix of models trained on different rows (READABLE_FORMATS)
        log(f"final models: {len(older)} saved by older code (trained on the training and validation rows) are "
            "trained again with the others, so that every model of the run trains on the same rows")
        todo = [job for job, record in zip(jobs, cached) if record is None or record["format"] != RECORD_FORMAT]
    configs = timing_protocol.protocol_configs(jobs, rounds)
    # Costs measured beside older models timed epochs of their rows: measured again with the models that replace
    # them, so that the epoch times are of the rows the run's models train on.
    measure_costs = (force or retime or bool(older and todo)
                     or timing_protocol.load_costs(out_dir, configs, round_seconds) is None)
    log(f"final models: {len(jobs) - len(todo)} cached, {len(todo)} to train"
        + ("; costs to measure" if measure_costs else "; costs measured before, reused"))
    splits = load_final_splits(jobs[0].config) if todo or measure_costs else None
    if splits is not None:  # a frozen-backbone study's final models train on the features it was tuned on
        from study.frozen import check_same_features

        check_same_features(features_id, splits, "the analysis")
    if ray_resources is None:
        for index, job in enumerate(todo, 1):
            log(f"  [{index}/{len(todo)}] {job.head} seed {job.seed}: training {job.config.optim.epochs} epochs")
            save(out_dir, job, *train_final(as_json(job.config), splits), timed_alone=True)
        if measure_costs:
            timing_protocol.measure_and_save(out_dir, configs, splits, round_seconds, rounds, log)
        return
    import ray

    splits_ref = ray.put(splits)
    task = ray.remote(**ray_resources)(train_final)
    threads = task_threads(ray_resources)
    pending = {task.remote(as_json(job.config), splits_ref, threads): job for job in todo}
    while pending:  # save each model as soon as it is done: nothing finished is lost to a later failure
        (ready,), _ = ray.wait(list(pending), num_returns=1)
        job = pending.pop(ready)
        save(out_dir, job, *ray.get(ready), timed_alone=False)
        log(f"  {job.head} seed {job.seed}: done ({len(todo) - len(pending)}/{len(todo)})")
    if measure_costs:
        timing_protocol.measure_alone_on_ray(out_dir, configs, ray_resources, splits_ref, round_seconds, rounds, log)


def load_predictions(out_dir: Path, head: str, seed: int) -> Prediction:
    npz, record_path = prediction_files(out_dir, head, seed)
    arrays = load_arrays(npz)  # never unpickles (is_cached checked that it reads back whole)
    if "log_probs" in arrays:  # format 3: the full [N, K] outputs, made compact here
        compact = Compact.of(arrays["log_probs"], arrays["labels"], arrays.get("scores"))
    else:
        compact = Compact.from_arrays(arrays)
    return Prediction(compact, json.loads(record_path.read_text()))
