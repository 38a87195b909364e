"""Retraining each head's best configuration over seeds on all training images, evaluated once on test.

Each final model leaves its test log-probabilities (npz) and a record (json: config, per-epoch history, costs), so
metrics can be recomputed without training; a model whose record matches the requested config is reused.
"""
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from study.config import TrainConfig


@dataclass(frozen=True)
class Job:
    head: str
    seed: int
    config: TrainConfig


def paths(out_dir: Path, head: str, seed: int):
    stem = Path(out_dir) / f"{head}_seed{seed}"
    return stem.with_suffix(".npz"), stem.with_suffix(".json")


def as_json(cfg: TrainConfig) -> dict:
    return json.loads(json.dumps(cfg.to_dict()))  # tuples become lists, as they do on disk


def cache_key(config: dict) -> dict:
    """What a saved model must match to be reused: everything but where the data lives and the device it ran on."""
    key = json.loads(json.dumps(config))
    key["data"].pop("data_dir", None)
    key["run"].pop("device", None)
    return key


def is_cached(out_dir: Path, job: Job) -> bool:
    npz, record = paths(out_dir, job.head, job.seed)
    if not (npz.is_file() and record.is_file()):
        return False
    return cache_key(json.loads(record.read_text())["config"]) == cache_key(as_json(job.config))


def load_final_splits(cfg: TrainConfig):
    from study.train import load_splits

    return load_splits(cfg.replace(**{"data.final": True}))


def train_final(config: dict, splits):
    """Train one final model; returns (test log-probs, test labels, record). Runs in-process or as a Ray task."""
    from study.train import Trainer, fit

    cfg = TrainConfig.from_dict(config)
    started = time.time()
    trainer = Trainer(cfg, splits)
    history = list(fit(cfg, trainer=trainer))
    evaluation = trainer.evaluate()
    head = trainer.head
    record = {
        "config": config, "history": history, "wall_s": time.time() - started, "device": str(trainer.device),
        "head_params": sum(p.numel() for p in head.parameters()),
        "train_cost": head.train_cost, "infer_cost": head.infer_cost,
        "coarse_of_fine": list(splits.class_info.coarse_of_fine or []),
        "fine_names": list(splits.class_info.fine_names or []),
        "coarse_names": list(splits.class_info.coarse_names or []),
    }
    return evaluation.log_probs, evaluation.labels, record


def save(out_dir: Path, job: Job, log_probs, labels, record) -> None:
    npz, record_path = paths(out_dir, job.head, job.seed)
    np.savez_compressed(npz, log_probs=log_probs.astype(np.float32), labels=labels.astype(np.int64))
    record_path.write_text(json.dumps(record, indent=1, default=float))  # record last: it marks the pair complete


def run_jobs(jobs, out_dir: Path, ray_resources=None, force=False, log=print) -> None:
    """Train every job not already cached (every job with force; old files are replaced only by new ones).
    ray_resources={"num_gpus": g, "num_cpus": c} runs them as Ray tasks (Ray must be initialised); None trains
    them one after another in this process."""
    out_dir.mkdir(parents=True, exist_ok=True)
    todo = [job for job in jobs if force or not is_cached(out_dir, job)]
    log(f"final models: {len(jobs) - len(todo)} cached, {len(todo)} to train")
    if not todo:
        return
    splits = load_final_splits(todo[0].config)  # every job shares the study's data configuration
    if ray_resources is None:
        for index, job in enumerate(todo, 1):
            log(f"  [{index}/{len(todo)}] {job.head} seed {job.seed}: training {job.config.optim.epochs} epochs")
            save(out_dir, job, *train_final(as_json(job.config), splits))
        return
    import ray

    splits_ref = ray.put(splits)
    task = ray.remote(**ray_resources)(train_final)
    pending = {task.remote(as_json(job.config), splits_ref): job for job in todo}
    while pending:  # save each model as soon as it is done: nothing finished is lost to a later failure
        (ready,), _ = ray.wait(list(pending), num_returns=1)
        job = pending.pop(ready)
        save(out_dir, job, *ray.get(ready))
        log(f"  {job.head} seed {job.seed}: done ({len(todo) - len(pending)}/{len(todo)})")


def load_predictions(out_dir: Path, head: str, seed: int):
    npz, record_path = paths(out_dir, head, seed)
    arrays = np.load(npz)
    return arrays["log_probs"], arrays["labels"], json.loads(record_path.read_text())
