"""The timing protocol: what each head's training costs, measured in interleaved rounds on one device.

Every head's final configuration gets one Trainer, built once, all in one process that has the device to itself
(in-process after the final models, or one Ray task reserving a whole GPU or every core of a node). Then:

1. a warm-up round: every head trains one epoch, discarded (allocation, kernel selection, caches, and the
   process's own warm-up, which would otherwise fall on whichever head came first); it also sets how many whole
   epochs each head trains per round: enough for at least `round_seconds` by the warm-up epoch's time (the spec's
   timing_round_s, 0.5 s by default; 0 in the smoke presets, so one epoch a round), since one short epoch (0.14 s
   for softmax on frozen features) is at the mercy of the scheduler. At most MAX_EPOCHS_PER_ROUND: a head whose
   capped round falls short of `round_seconds` is named in the log and in costs.json (`short_rounds`);
2. `rounds` timed rounds: every head trains its epochs, one head after another, the order rotated by one place each
   round (with as many rounds as heads, each head takes each place once), so no head always runs first, last, or
   next to the same neighbour.

Each round records each head's mean epoch time, head time (its loss forward + backward) and images/s over that
round's epochs. Rounds are paired: a head's ratio to another is taken within a round (analysis/cost_stats.py). The
number of rounds is what the family of cost verdicts needs for a distribution-free interval
(cost_stats.rounds_needed), and at least MIN_ROUNDS. The schedule of each configuration is stretched over every
epoch the protocol may train, since the work per step does not depend on the learning rate.

This module also keeps the protocol's record, costs.json (beside the final models), reused while the configurations
and round length match, and runs the protocol alone on a device: in this process or as one Ray task.
"""
import json
import math
import time
from pathlib import Path
from typing import Optional

from analysis.configs import as_json, reuse_key
from analysis.cost_stats import rounds_needed
from study.config import TrainConfig
from study.errors import ConfigError
from study.files import write_text_atomic
from study.search.rundir import costs_file, read_saved

FORMAT = 1  # bump when what costs.json holds, or how it is measured, changes: older records are then measured anew
MAX_EPOCHS_PER_ROUND = 16
MIN_ROUNDS = 6  # the fewest for which [min, max] over rounds is a 95 % interval of one median (1 - 2/2^6 = 97 %)


def protocol_rounds(heads, requested: Optional[int] = None) -> int:
    """Rounds enough for every pairwise cost comparison among `heads` at a family-wise 95 % (the Pareto front
    compares every pair) with an interval that leaves out the most extreme round on each side (so one disturbed
    round decides no verdict): 15 for 9 heads, 9 for 2; at least MIN_ROUNDS. `requested` (a preset's
    timing_rounds, e.g. the smoke presets' MIN_ROUNDS) is used as given: with fewer rounds than the comparisons
    need, the verdicts they cannot support say so (cost_stats: "unresolved")."""
    if requested is not None:
        return requested
    n = len(heads)
    return max(MIN_ROUNDS, rounds_needed(n * (n - 1) // 2, spare=1))


def round_order(heads, round_index: int) -> list:
    """The heads rotated by round_index places."""
    heads = list(heads)
    shift = round_index % len(heads)
    return heads[shift:] + heads[:shift]


def timing_config(cfg: TrainConfig, rounds: int) -> TrainConfig:
    """A head's final configuration, with its schedule spanning the warm-up round and every timed round."""
    return cfg.replace(**{"optim.epochs": 1 + rounds * MAX_EPOCHS_PER_ROUND})


def measure(configs: dict, splits, rounds: int, round_seconds: float = 0.5, threads: Optional[int] = None, log=print,
            make_trainer=None) -> dict:
    """Run the protocol over {head: TrainConfig} (already stretched by timing_config) on `splits`; returns the
    record saved as costs.json. threads: torch threads to use (a Ray worker starts with one per reserved CPU).
    make_trainer(cfg, splits): the Trainer to time (tests pass a fake)."""
    from study.timing import torch_threads

    with torch_threads(threads):  # put back after: the Ray worker may run a final model or a check run next
        return measure_rounds(configs, splits, rounds, round_seconds, log, make_trainer)


def measure_rounds(configs: dict, splits, rounds: int, round_seconds: float, log, make_trainer) -> dict:
    """measure()'s protocol, with the threads it is given."""
    from study.timing import describe_device

    if make_trainer is None:
        from study.trainer import Trainer as make_trainer
    started = time.time()
    trainers = {head: make_trainer(cfg, splits) for head, cfg in configs.items()}
    heads = list(configs)
    log(f"  timing: {len(heads)} heads, a warm-up round then {rounds} rounds of at least {round_seconds:g} s "
        "of epochs per head, the order rotated each round, alone on the device")
    per_round, short = {}, {}
    for head in heads:  # warm-up round: discarded, but for how long an epoch takes
        warm = trainers[head].train_epoch()["epoch_time_s"]
        wanted = max(1, math.ceil(round_seconds / max(warm, 1e-9)))
        per_round[head] = min(MAX_EPOCHS_PER_ROUND, wanted)
        if wanted > MAX_EPOCHS_PER_ROUND:  # the cap, not round_seconds, sets this head's round: said, not hidden
            short[head] = MAX_EPOCHS_PER_ROUND * warm
            log(f"  timing: {head}'s rounds are capped at {MAX_EPOCHS_PER_ROUND} epochs, about {short[head]:.2f} s "
                f"by its warm-up epoch, short of {round_seconds:g} s")
    rows = []
    for index in range(rounds):
        for position, head in enumerate(round_order(heads, index)):
            epochs = [trainers[head].train_epoch() for _ in range(per_round[head])]
            rows.append({"round": index, "position": position, "head": head,
                         **{key: sum(e[key] for e in epochs) / len(epochs)
                            for key in ("epoch_time_s", "head_time_s", "images_per_s")}})
    any_trainer = next(iter(trainers.values()))
    return {
        "format": FORMAT, "rounds": rows, "protocol": {
            "timed_rounds": rounds, "warmup_rounds": 1, "epochs_per_round": per_round,
            "min_round_seconds": round_seconds, "short_rounds": short,  # {head: s of its capped round, estimated}
            "order": "rotated by one place each round", "heads": heads},
        "configs": {head: as_json(cfg) for head, cfg in configs.items()},
        "device": describe_device(any_trainer.device),
        "head_params": {h: sum(p.numel() for p in t.head.parameters()) for h, t in trainers.items()},
        "wall_s": time.time() - started, "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def first_job_per_head(jobs) -> dict:
    """{head: its first job}: the configuration the timing protocol times."""
    first = {}
    for job in jobs:
        first.setdefault(job.head, job)
    return first


def protocol_configs(jobs, rounds: Optional[int] = None) -> dict:
    """{head: the configuration its costs are measured with}: its first final model's (analysis/retrain.py: Job),
    its schedule stretched over the protocol's epochs (rounds: the study's timing_rounds; None: as many as the
    comparisons need)."""
    first = first_job_per_head(jobs)
    rounds = protocol_rounds(first, rounds)
    return {head: timing_config(job.config, rounds) for head, job in first.items()}


def measure_and_save(out_dir: Path, configs: dict, splits, round_seconds: float, rounds: Optional[int] = None,
                     log=print) -> None:
    """The protocol in this process (which must have the device to itself), saved as costs.json in out_dir."""
    save_costs(out_dir, measure(configs, splits, protocol_rounds(configs, rounds), round_seconds, log=log))


def measure_alone_on_ray(out_dir: Path, configs: dict, ray_resources: dict, splits_ref, round_seconds: float,
                         rounds: Optional[int] = None, log=print) -> None:
    """The protocol as one Ray task, started once every final model is done, so nothing else of the study runs
    beside it: a whole GPU, or on a CPU every core of the largest node with a torch thread per core. Saved as
    costs.json in out_dir."""
    import ray

    if ray_resources.get("num_gpus"):
        alone, threads = {"num_gpus": 1, "num_cpus": ray_resources.get("num_cpus", 1)}, None
    else:
        cores = int(max((n["Resources"].get("CPU", 1) for n in ray.nodes() if n.get("Alive")), default=1))
        alone, threads = {"num_gpus": 0, "num_cpus": cores}, cores
    log(f"  timing protocol: one task alone with {alone}")
    task = ray.remote(**alone)(measure)
    save_costs(out_dir, ray.get(task.remote(configs, splits_ref, protocol_rounds(configs, rounds), round_seconds,
                                            threads)))


def save_costs(out_dir: Path, record: dict) -> None:
    write_text_atomic(costs_file(out_dir), json.dumps(record, indent=1, default=float))


def load_costs(out_dir: Path, configs: dict, round_seconds: float = 0.5) -> Optional[dict]:
    """The saved costs, if the protocol measured these heads (and maybe more, timed together) with these
    configurations and rounds of round_seconds, in this format; restricted to these heads. None otherwise: they
    are measured anew."""
    record = read_saved(costs_file(out_dir))
    if not isinstance(record, dict) or record.get("format") != FORMAT or not isinstance(record.get("configs"), dict):
        return None
    try:
        same = all(reuse_key(record["configs"][h]) == reuse_key(as_json(cfg)) for h, cfg in configs.items())
        same = same and record["protocol"].get("min_round_seconds") == round_seconds
        rounds = [r for r in record["rounds"] if r["head"] in configs]
    except (ConfigError, KeyError, TypeError):
        return None
    if not same:
        return None
    return {**record, "rounds": rounds, "configs": {h: record["configs"][h] for h in configs}}
