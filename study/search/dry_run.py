"""A dry run: the chosen preset's search with Ray told there are N GPUs, and each trial shrunk to seconds on the CPU.

It rehearses a GPU plan on a machine without GPUs. What is the real run's: the heads, the number of trials, each
trial's GPU and CPU requests, the concurrency cap, the epochs and ASHA's rungs. What is not: what a trial trains (a
tinyvgg-8 on DRY_TRAIN_IMAGES images, validated on DRY_VAL_IMAGES, on the CPU; a frozen backbone trains one epoch),
so its accuracies mean nothing and the analysis refuses its run directory. Ray assigns the logical GPUs (it sets
CUDA_VISIBLE_DEVICES for each trial) though torch sees none.
"""
import math
import os

from study.config import TrainConfig
from study.search.trials import peak_concurrency

DRY_TRAIN_IMAGES = 256
DRY_VAL_IMAGES = 200


def shrink(train: TrainConfig) -> TrainConfig:
    """The same plan with every trial's work cut to seconds on a CPU."""
    # tinyvgg-8 (16 features), not smaller: the adaptive head's search space needs d >= 16 (search_spaces/).
    return train.replace(**{"model.backbone": "tinyvgg", "model.backbone_knobs": {"width": 8},
                            "data.subset": DRY_TRAIN_IMAGES, "data.val_size": DRY_VAL_IMAGES,
                            "run.device": "cpu", "frozen.epochs": 1})


def logical_cpus(gpus: float, gpus_per_trial: float, cpus_per_trial: float) -> int:
    """CPUs to declare to Ray: this machine's, or as many as the simulated GPUs' trials would ask for, if more, so
    that, as on a GPU machine sized for the plan, the GPUs bound the concurrency, not this machine's cores."""
    here = os.cpu_count() or 1
    if gpus_per_trial <= 0:
        return here
    return max(here, math.ceil(math.floor(gpus / gpus_per_trial + 1e-9) * cpus_per_trial))


def plan_lines(spec, summaries, final_gpus_per_run: float = 0.25) -> list:
    """What the real run would do, next to what the dry run measured (spec: the dry run's StudySpec)."""
    gpus, share, heads = spec.dry_run.gpus, spec.gpus_per_trial, len(spec.heads)
    per_gpu = math.floor(1 / share + 1e-9) if share > 0 else None
    lines = [f"dry run: {heads} heads x {spec.num_samples} trials ({spec.searches} search(es) each) on {gpus:g} "
             f"simulated GPU(s), "
             f"{spec.dry_run.cpus} logical CPU(s); per trial {spec.cpus_per_trial:g} CPU and {share:g} GPU",
             f"planned: {per_gpu} trials at once per GPU" if per_gpu else "planned: CPU trials (no GPU share)"]
    # Searches run side by side in the search phase: the trials at once over all of them is what a GPU holds.
    peak = peak_concurrency([t for s in summaries for t in s["trials"] if t.get("started_at") and t.get("ended_at")])
    lines.append(f"search phase: measured peak {peak} trials at once"
                 + (f", {peak / gpus:.2f} per GPU" if per_gpu else ""))
    for s in summaries:
        setup = f"{s['median_setup_s']:.2f} s" if s["median_setup_s"] is not None else "n/a"
        at_once = (f", {s['peak_concurrent_trials'] / gpus:.2f} per GPU" if per_gpu else "")
        which = f" search {s['search'] + 1}" if spec.searches > 1 else ""
        lines.append(f"  {s['head']}{which}: {len(s['trials'])} trials, measured peak {s['peak_concurrent_trials']} "
                     f"at once{at_once}, median trial set-up {setup}")
    models = heads * spec.searches * spec.final_seeds
    slots = math.floor(gpus / final_gpus_per_run + 1e-9) if per_gpu else None
    lines.append(f"final models: {models} ({heads} heads x {spec.searches} search(es) x {spec.final_seeds} seeds)"
                 + (f" as Ray tasks of {final_gpus_per_run:g} GPU each, {slots} at a time, in "
                    f"{math.ceil(models / slots)} wave(s); then the timing protocol (every head in interleaved "
                    "rounds) alone on a whole GPU" if slots else " on the CPU"))
    lines.append("this was a dry run: its accuracies mean nothing, and `python -m analysis` refuses it")
    return lines
