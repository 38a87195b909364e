"""Retraining each head's best configuration over seeds on all training images, evaluated once on test.

Each final model leaves its test log-probabilities (npz; with the head's own class ranking, `scores`, for heads
whose log-probabilities tie) and a record (json: config, per-epoch history, costs), so metrics can be recomputed
without training; a model whose record matches the requested config is reused.

Timings are kept only from runs that had their device to themselves. Final models trained one after another in
this process are (`timed_alone` in their record). Final models run as concurrent Ray tasks share GPUs or cores,
so their epoch times include other models' work; for them a timing pass then trains each head's configuration
once more, alone, for a few epochs, and the cost table uses that (`HEAD_timing.json`).
"""
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from study.config import TrainConfig
from study.errors import ConfigError
from study.files import load_arrays
from study.search.rundir import arrays_readable, prediction_files, read_saved, timing_file


TIMING_EPOCHS = 5  # a timing pass: one warm-up epoch, left out of the median, and four timed ones
# Version of what a saved final model holds. Models saved by older code (before the ranking scores, Gumbel's
# softmax(z) evaluation, undecayed biases, the timed_alone flag and the unpadded hierarchical head) are never
# reused: they are trained again.
RECORD_FORMAT = 3


@dataclass(frozen=True)
class Job:
    head: str
    seed: int
    config: TrainConfig


@dataclass(frozen=True)
class Prediction:
    """One final model's saved test output."""
    log_probs: np.ndarray  # [N, K]
    labels: np.ndarray  # [N]
    record: dict
    scores: Optional[np.ndarray] = None  # [N, K] the model's class ranking, when its log-probabilities tie

    @property
    def ranking(self) -> np.ndarray:
        return self.log_probs if self.scores is None else self.scores


def as_json(cfg: TrainConfig) -> dict:
    return json.loads(json.dumps(cfg.to_dict()))  # tuples become lists, as they do on disk


def cache_key(config: dict) -> dict:
    """What a saved model must match to be reused: everything but where the data lives and the device it ran on.
    Sections or fields added to TrainConfig since the model was saved take their defaults, which reproduce what the
    older code did (e.g. `frozen`: disabled, end to end)."""
    key = as_json(TrainConfig.from_dict(config))
    key["data"].pop("data_dir", None)
    key["run"].pop("device", None)
    return key


def is_cached(out_dir: Path, job: Job) -> bool:
    """Whether the job's final model is saved whole, by this code, for this configuration (else it is trained)."""
    npz, record_path = prediction_files(out_dir, job.head, job.seed)
    record = read_saved(record_path)
    return record is not None and matches(record, job.config) and arrays_readable(npz)


def matches(record: dict, config: TrainConfig) -> bool:
    """Whether a saved record was made by this version of the code from this configuration."""
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        return False
    try:
        return cache_key(record["config"]) == cache_key(as_json(config))
    except (ConfigError, KeyError, TypeError):  # a field this code does not know: made by other code
        return False


def first_job_per_head(jobs) -> dict:
    """{head: its first job}: the configuration a head's timing pass copies."""
    first = {}
    for job in jobs:
        first.setdefault(job.head, job)
    return first


def timing_config(job: Job) -> TrainConfig:
    """A head's timing pass: its final configuration for at most TIMING_EPOCHS epochs (the schedule's length does
    not change the work per epoch)."""
    return job.config.replace(**{"optim.epochs": min(TIMING_EPOCHS, job.config.optim.epochs)})


def load_final_splits(cfg: TrainConfig):
    from study.inputs import load_splits

    return load_splits(cfg.replace(**{"data.final": True}))


def train_final(config: dict, splits):
    """Train one final model; returns (test log-probs, test labels, record). Runs in-process or as a Ray task."""
    from study.trainer import Trainer, fit

    cfg = TrainConfig.from_dict(config)
    started = time.time()
    trainer = Trainer(cfg, splits)
    history = list(fit(cfg, trainer=trainer))
    evaluation = trainer.evaluate()
    return evaluation, describe(trainer, config, history, started, splits)


def train_for_timing(config: dict, splits, threads: Optional[int] = None) -> dict:
    """Train a few epochs only to time them (no evaluation); returns the record of a timing pass. threads: the
    torch threads to use (a Ray worker otherwise keeps the one thread per reserved CPU it was started with)."""
    import torch

    from study.trainer import Trainer, fit

    if threads:
        torch.set_num_threads(threads)
    cfg = TrainConfig.from_dict(config)
    started = time.time()
    trainer = Trainer(cfg, splits)
    return describe(trainer, config, list(fit(cfg, trainer=trainer)), started, splits)


def device_name(device) -> str:
    """The processor a run was timed on: costs from different models of GPU or CPU do not compare."""
    import platform

    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def describe(trainer, config: dict, history, started: float, splits) -> dict:
    import torch

    head = trainer.head
    record = {
        "format": RECORD_FORMAT, "config": config, "history": history, "wall_s": time.time() - started,
        "device": str(trainer.device), "device_name": device_name(trainer.device),
        "threads": torch.get_num_threads(), "features_id": splits.features_id,
        "head_params": sum(p.numel() for p in head.parameters()),
        "train_cost": head.train_cost, "infer_cost": head.infer_cost,
        "coarse_of_fine": list(splits.class_info.coarse_of_fine or []),
        "fine_names": list(splits.class_info.fine_names or []),
        "coarse_names": list(splits.class_info.coarse_names or []),
    }
    return record


def save(out_dir: Path, job: Job, evaluation, record, timed_alone: bool) -> None:
    npz, record_path = prediction_files(out_dir, job.head, job.seed)
    arrays = {"log_probs": evaluation.log_probs.astype(np.float32), "labels": evaluation.labels.astype(np.int64)}
    if evaluation.scores is not None:
        arrays["scores"] = evaluation.scores.astype(np.float32)
    np.savez_compressed(npz, **arrays)
    record = {**record, "timed_alone": timed_alone}
    record_path.write_text(json.dumps(record, indent=1, default=float))  # record last: it marks the pair complete


def run_jobs(jobs, out_dir: Path, ray_resources=None, force=False, log=print, features_id=None) -> None:
    """Train every job not already cached (every job with force; old files are replaced only by new ones).
    ray_resources={"num_gpus": g, "num_cpus": c} runs them as concurrent Ray tasks (Ray must be initialised), then
    times each head alone (run_timing_passes); None trains them one after another in this process, where each
    model's own epochs are timed alone."""
    out_dir.mkdir(parents=True, exist_ok=True)
    todo = [job for job in jobs if force or not is_cached(out_dir, job)]
    log(f"final models: {len(jobs) - len(todo)} cached, {len(todo)} to train")
    splits = load_final_splits(jobs[0].config) if todo or ray_resources is not None else None
    if splits is not None:  # a frozen-backbone study's final models train on the features it was tuned on
        from study.frozen import check_same_features

        check_same_features(features_id, splits, "the analysis")
    if ray_resources is None:
        for index, job in enumerate(todo, 1):
            log(f"  [{index}/{len(todo)}] {job.head} seed {job.seed}: training {job.config.optim.epochs} epochs")
            save(out_dir, job, *train_final(as_json(job.config), splits), timed_alone=True)
        return
    import ray

    splits_ref = ray.put(splits)
    task = ray.remote(**ray_resources)(train_final)
    pending = {task.remote(as_json(job.config), splits_ref): job for job in todo}
    while pending:  # save each model as soon as it is done: nothing finished is lost to a later failure
        (ready,), _ = ray.wait(list(pending), num_returns=1)
        job = pending.pop(ready)
        save(out_dir, job, *ray.get(ready), timed_alone=False)
        log(f"  {job.head} seed {job.seed}: done ({len(todo) - len(pending)}/{len(todo)})")
    run_timing_passes(jobs, out_dir, ray_resources, splits_ref, force, log)


def run_timing_passes(jobs, out_dir: Path, ray_resources: dict, splits_ref, force=False, log=print) -> None:
    """One timing pass per head, strictly one after another once every final model is done, so nothing else of
    the study runs beside it; on a GPU it reserves a whole GPU."""
    import ray

    if ray_resources.get("num_gpus"):
        alone, threads = {"num_gpus": 1, "num_cpus": ray_resources.get("num_cpus", 1)}, None
    else:  # a CPU timing pass has a whole machine (the largest node), with a thread per core, as in-process runs do
        cores = int(max((n["Resources"].get("CPU", 1) for n in ray.nodes() if n.get("Alive")), default=1))
        alone, threads = {"num_gpus": 0, "num_cpus": cores}, cores
    task = ray.remote(**alone)(train_for_timing)
    for head, job in first_job_per_head(jobs).items():
        if not force and load_timing(out_dir, job) is not None:
            continue
        config = as_json(timing_config(job))
        log(f"  {head}: timing pass, {config['optim']['epochs']} epoch(s) alone on its device")
        record = ray.get(task.remote(config, splits_ref, threads))
        timing_file(out_dir, head).write_text(json.dumps({**record, "timed_alone": True}, indent=1, default=float))


def load_predictions(out_dir: Path, head: str, seed: int) -> Prediction:
    npz, record_path = prediction_files(out_dir, head, seed)
    arrays = load_arrays(npz)  # never unpickles (is_cached checked that it reads back whole)
    scores = arrays.get("scores")
    return Prediction(arrays["log_probs"], arrays["labels"], json.loads(record_path.read_text()), scores)


def load_timing(out_dir: Path, job: Job) -> Optional[dict]:
    """The head's timing pass, if one was made for this job's configuration by this version of the code."""
    record = read_saved(timing_file(out_dir, job.head))
    return record if record is not None and matches(record, timing_config(job)) else None
