"""Named study presets: how big a search is, from a CI smoke test to the full GPU study.

Every head gets the same preset (same trials, epochs and scheduler): equal budget is the point of the comparison.
"""
from dataclasses import dataclass

from study.config import DataConfig, ModelConfig, OptimConfig, TrainConfig
from study.errors import UnknownNameError


@dataclass(frozen=True)
class Preset:
    name: str
    summary: str
    train: TrainConfig  # what every trial starts from, before the search space's values
    num_samples: int  # trials per head
    gpus_per_trial: float  # fractions let several trials share one GPU
    cpus_per_trial: float
    grace_period: int  # ASHA: epochs every trial gets before it may be stopped
    reduction_factor: int  # ASHA: keep the top 1/reduction_factor at each rung
    checkpoint_every: int  # epochs between trial checkpoints (for resuming)
    final_seeds: int  # seeds each head's best configuration is retrained with for the test evaluation


def tiny_train(width, subset, val_size, epochs, batch_size):
    return TrainConfig(
        data=DataConfig(subset=subset, val_size=val_size),
        model=ModelConfig(backbone="tinyvgg", backbone_knobs={"width": width}),
        optim=OptimConfig(batch_size=batch_size, epochs=epochs),
    )


PRESETS = {
    "smoke": Preset(
        name="smoke",
        summary="CI-sized: tinyvgg-8, 500 training images, 1 epoch, 2 trials per head, CPU (a few minutes)",
        train=tiny_train(width=8, subset=500, val_size=500, epochs=1, batch_size=64),
        num_samples=2, gpus_per_trial=0, cpus_per_trial=1, grace_period=1, reduction_factor=3, checkpoint_every=1,
        final_seeds=2,
    ),
    "quick": Preset(
        name="quick",
        summary="CPU study: tinyvgg-16, 5,000 training images, 3 epochs, 4 trials per head (about 15 min on 2 cores)",
        train=tiny_train(width=16, subset=5000, val_size=5000, epochs=3, batch_size=128),
        num_samples=4, gpus_per_trial=0, cpus_per_trial=1, grace_period=1, reduction_factor=3, checkpoint_every=1,
        final_seeds=3,
    ),
    "full": Preset(
        name="full",
        summary="GPU study: ResNet-12, 45k/5k split, 30 epochs, 16 trials per head, 4 trials per GPU",
        train=TrainConfig(optim=OptimConfig(batch_size=512, epochs=30)),
        num_samples=16, gpus_per_trial=0.25, cpus_per_trial=2, grace_period=5, reduction_factor=3, checkpoint_every=5,
        final_seeds=5,
    ),
}


def list_presets():
    return ["auto", *PRESETS]


def resolve_preset(name: str, gpu_visible: bool):
    """(preset, why) with 'auto' resolved: full on a GPU, quick on a CPU."""
    if name == "auto":
        chosen = "full" if gpu_visible else "quick"
        why = "a GPU is visible" if gpu_visible else "no GPU is visible"
        return PRESETS[chosen], f"preset auto -> {chosen} ({why}): {PRESETS[chosen].summary}"
    if name not in PRESETS:
        raise UnknownNameError(f"unknown preset '{name}'; choose from: {', '.join(list_presets())}")
    return PRESETS[name], f"preset {name}: {PRESETS[name].summary}"
