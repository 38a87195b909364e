"""Retraining each head's best configuration over seeds on all training images, evaluated once on test.

Each final model leaves its test log-probabilities (npz; with the head's own class ranking, `scores`, for heads
whose log-probabilities tie) and a record (json: config, per-epoch history, costs), so metrics can be recomputed
without training; a model whose record matches the requested config is reused.

Costs do not come from the final models (which may share a device): once they are done, the timing protocol
(analysis/timing_protocol.py) trains every head's configuration again in interleaved rounds, alone on one device,
and saves `costs.json`; it is reused while the configurations match, and measured anew with --retime.
"""
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from study.config import TrainConfig
from study.errors import ConfigError
from study.files import load_arrays, save_arrays, write_atomic, write_text_atomic
from study.search.rundir import arrays_readable, costs_file, prediction_files, read_saved


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
    """{head: its first job}: the configuration the timing protocol times."""
    first = {}
    for job in jobs:
        first.setdefault(job.head, job)
    return first


def protocol_configs(jobs, rounds: Optional[int] = None) -> dict:
    """{head: the configuration its costs are measured with}: its first final model's, its schedule stretched over
    the protocol's epochs (rounds: the study's timing_rounds; None: as many as the comparisons need)."""
    from analysis.timing_protocol import protocol_rounds, timing_config

    first = first_job_per_head(jobs)
    rounds = protocol_rounds(first, rounds)
    return {head: timing_config(job.config, rounds) for head, job in first.items()}


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
    write_atomic(npz, lambda path: save_arrays(path, compressed=True, **arrays))
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
    todo = [job for job in jobs if force or not is_cached(out_dir, job)]
    configs = protocol_configs(jobs, rounds)
    measure_costs = force or retime or load_costs(out_dir, configs, round_seconds) is None
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
            from analysis.timing_protocol import measure, protocol_rounds

            save_costs(out_dir, measure(configs, splits, protocol_rounds(configs, rounds), round_seconds, log=log))
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
    if measure_costs:
        save_costs(out_dir, measure_alone_on_ray(configs, ray_resources, splits_ref, round_seconds, rounds, log))


def measure_alone_on_ray(configs: dict, ray_resources: dict, splits_ref, round_seconds: float,
                         rounds: Optional[int] = None, log=print) -> dict:
    """The timing protocol as one Ray task, started once every final model is done, so nothing else of the study
    runs beside it: a whole GPU, or on a CPU every core of the largest node with a torch thread per core."""
    import ray

    from analysis.timing_protocol import measure, protocol_rounds

    if ray_resources.get("num_gpus"):
        alone, threads = {"num_gpus": 1, "num_cpus": ray_resources.get("num_cpus", 1)}, None
    else:
        cores = int(max((n["Resources"].get("CPU", 1) for n in ray.nodes() if n.get("Alive")), default=1))
        alone, threads = {"num_gpus": 0, "num_cpus": cores}, cores
    log(f"  timing protocol: one task alone with {alone}")
    task = ray.remote(**alone)(measure)
    return ray.get(task.remote(configs, splits_ref, protocol_rounds(configs, rounds), round_seconds, threads))


def save_costs(out_dir: Path, record: dict) -> None:
    from study.files import write_text_atomic

    write_text_atomic(costs_file(out_dir), json.dumps(record, indent=1, default=float))


def load_costs(out_dir: Path, configs: dict, round_seconds: float = 0.5) -> Optional[dict]:
    """The saved costs, if the protocol measured these heads (and maybe more, timed together) with these
    configurations and rounds of round_seconds, in this format; restricted to these heads. None otherwise: they
    are measured anew."""
    from analysis.timing_protocol import FORMAT

    record = read_saved(costs_file(out_dir))
    if not isinstance(record, dict) or record.get("format") != FORMAT or not isinstance(record.get("configs"), dict):
        return None
    try:
        same = all(cache_key(record["configs"][h]) == cache_key(as_json(cfg)) for h, cfg in configs.items())
        same = same and record["protocol"].get("min_round_seconds") == round_seconds
        rounds = [r for r in record["rounds"] if r["head"] in configs]
    except (ConfigError, KeyError, TypeError):
        return None
    if not same:
        return None
    return {**record, "rounds": rounds, "configs": {h: record["configs"][h] for h in configs}}


def load_predictions(out_dir: Path, head: str, seed: int) -> Prediction:
    npz, record_path = prediction_files(out_dir, head, seed)
    arrays = load_arrays(npz)  # never unpickles (is_cached checked that it reads back whole)
    scores = arrays.get("scores")
    return Prediction(arrays["log_probs"], arrays["labels"], json.loads(record_path.read_text()), scores)
