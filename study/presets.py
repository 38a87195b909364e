"""Named study presets: how big a search is, from a CI smoke test to the full GPU study.

Every head gets the same preset (same trials, epochs and scheduler): equal budget is the point of the comparison.
The summaries give no wall times: those are measurements, kept in one place each (README, Results, for `frozen`;
BENCHMARKS.md for the others), and the summaries point there.
"""
from dataclasses import dataclass
from typing import Optional

from study.config import DataConfig, FrozenConfig, ModelConfig, OptimConfig, TrainConfig
from study.errors import ConfigError, UnknownNameError
from study.splits import VAL_SHARE


@dataclass(frozen=True)
class Preset:
    name: str
    summary: str
    train: TrainConfig  # what every trial starts from, before the search space's values
    num_samples: int  # trials per head, split evenly over its searches
    gpus_per_trial: float  # fractions let several trials share one GPU
    cpus_per_trial: float
    grace_period: int  # ASHA: epochs every trial gets before it may be stopped
    reduction_factor: int  # ASHA: keep the top 1/reduction_factor at each rung
    checkpoint_every: int  # epochs between trial checkpoints (for resuming)
    final_seeds: int  # seeds each search's selected configuration is retrained with for the test evaluation
    # Independent searches per head, each with its own sampler seed, ASHA and trial seeds and num_samples/searches
    # trials: the verdicts' unit, so the search's own noise is in them (README, "The search's noise").
    searches: int = 1
    # The timing protocol (analysis/timing_protocol.py): each head's share of a round, at least, in seconds of whole
    # epochs. One short epoch is at the mercy of the scheduler; the smoke presets (0 s) time one epoch a round, fast.
    timing_round_s: float = 0.5
    # Timed rounds; None: as many as every pairwise cost verdict needs (15 for 9 heads). The smoke presets time the
    # fewest the protocol allows (MIN_ROUNDS, 6): their costs get medians and intervals, and verdicts only where six
    # rounds support one.
    timing_rounds: Optional[int] = None


def tiny_train(width, subset, val_size, epochs, batch_size):
    return TrainConfig(
        data=DataConfig(subset=subset, val_size=val_size),
        model=ModelConfig(backbone="tinyvgg", backbone_knobs={"width": width}),
        optim=OptimConfig(batch_size=batch_size, epochs=epochs),
    )


def frozen_train(width, backbone_epochs, head_epochs, batch_size, subset=None, val_size=5000, neck_width=0):
    """Heads on the features of a tinyvgg backbone trained once (study/frozen.py; on random class groups)."""
    return TrainConfig(
        data=DataConfig(subset=subset, val_size=val_size),
        model=ModelConfig(backbone="tinyvgg", backbone_knobs={"width": width}),
        optim=OptimConfig(batch_size=batch_size, epochs=head_epochs),
        frozen=FrozenConfig(enabled=True, epochs=backbone_epochs, neck_width=neck_width),
    )


PRESETS = {
    "smoke": Preset(
        name="smoke",
        summary="CI-sized end-to-end study: tinyvgg-8, 500 training images, 1 epoch, 2 trials per head, CPU (a few "
                "minutes)",
        train=tiny_train(width=8, subset=500, val_size=500, epochs=1, batch_size=64),
        num_samples=2, gpus_per_trial=0, cpus_per_trial=1, grace_period=1, reduction_factor=3, checkpoint_every=1,
        final_seeds=2, timing_round_s=0.0, timing_rounds=6,
    ),
    "smoke-frozen": Preset(
        name="smoke-frozen",
        summary="CI-sized frozen-backbone study: tinyvgg-8 trained 1 epoch, heads on 500 training images' features, "
                "3 epochs, 2 searches of 1 trial per head, 1 final seed each (a few minutes)",
        train=frozen_train(width=8, backbone_epochs=1, head_epochs=3, batch_size=64, subset=500, val_size=500),
        num_samples=2, searches=2, gpus_per_trial=0, cpus_per_trial=1, grace_period=1, reduction_factor=3,
        checkpoint_every=1, final_seeds=1, timing_round_s=0.0, timing_rounds=6,
    ),
    "frozen": Preset(
        name="frozen",
        summary="CPU study (auto without a GPU), frozen backbone: tinyvgg-16 trained once (cached), then every head "
                "tuned on its features: 4 searches of 4 trials per head, 40 epochs, 1 final seed per search (aimed "
                "at 20 min on 2 cores; measured wall time: README, Results)",
        # 40 epochs: at 10 and 20 the convergence check flagged most heads, and doubling 40 moved every head but
        # Gumbel by less than its noise (README, "The budget"). One final seed per search: the search is the
        # verdicts' unit, and a second seed narrowed a search's mean by little (seed SD 0.12-0.24 points against
        # 0.33-1.50 between searches) for half the final models' time.
        train=frozen_train(width=16, backbone_epochs=6, head_epochs=40, batch_size=512, neck_width=128),
        num_samples=16, searches=4, gpus_per_trial=0, cpus_per_trial=1, grace_period=12, reduction_factor=3,
        checkpoint_every=10, final_seeds=1,
    ),
    "frozen-gpu": Preset(
        name="frozen-gpu",
        summary="GPU frozen-backbone study: ResNet-12 trained once for 30 epochs, then every head tuned on its "
                "640-d features: 4 searches of 8 trials per head, 30 epochs, 3 final seeds per search",
        train=TrainConfig(optim=OptimConfig(batch_size=512, epochs=30),
                          frozen=FrozenConfig(enabled=True, epochs=30, batch_size=512)),
        num_samples=32, searches=4, gpus_per_trial=0.25, cpus_per_trial=1, grace_period=5, reduction_factor=3,
        checkpoint_every=10, final_seeds=3,
    ),
    "quick": Preset(
        name="quick",
        summary="end-to-end CPU demo: tinyvgg-16, 5,000 training images, 3 epochs, 4 trials per head (wall time on "
                "2 cores: BENCHMARKS.md, the `quick` preset; models stay near chance, so it ranks nothing)",
        train=tiny_train(width=16, subset=5000, val_size=5000, epochs=3, batch_size=128),
        num_samples=4, gpus_per_trial=0, cpus_per_trial=1, grace_period=1, reduction_factor=3, checkpoint_every=1,
        final_seeds=3,
    ),
    "full": Preset(
        name="full",
        summary="GPU end-to-end study: ResNet-12, 45k/5k split, 30 epochs, 4 searches of 4 trials per head, 2 final "
                "seeds per search, 4 trials per GPU",
        train=TrainConfig(optim=OptimConfig(batch_size=512, epochs=30)),
        num_samples=16, searches=4, gpus_per_trial=0.25, cpus_per_trial=2, grace_period=5, reduction_factor=3,
        checkpoint_every=5, final_seeds=2,
    ),
}


def list_presets():
    return ["auto", *PRESETS]


FEATURES_PRESETS = ("smoke-frozen", "frozen", "frozen-gpu")  # the presets a features source can run


def resolve_preset(name: str, gpu_visible: bool, inputs: str = "images"):
    """(preset, why) with 'auto' resolved: the end-to-end study on a GPU, the frozen-backbone one on a CPU; on a
    source of feature vectors (inputs='features'), a heads-only study with frozen-gpu or frozen."""
    if name == "auto":
        if inputs == "features":
            chosen = "frozen-gpu" if gpu_visible else "frozen"
            why = "feature vectors, a heads-only study, " + ("a GPU is visible" if gpu_visible else "no GPU")
        else:
            chosen = "full" if gpu_visible else "frozen"
            why = "a GPU is visible" if gpu_visible else "no GPU is visible"
        return PRESETS[chosen], f"preset auto -> {chosen} ({why}): {summary(PRESETS[chosen], inputs)}"
    if name not in PRESETS:
        raise UnknownNameError(f"unknown preset '{name}'; choose from: {', '.join(list_presets())}")
    if inputs == "features" and name not in FEATURES_PRESETS:
        raise ConfigError(f"preset '{name}' trains a CNN on images, but the data are feature vectors; choose from: "
                          f"auto, {', '.join(FEATURES_PRESETS)}")
    return PRESETS[name], f"preset {name}: {summary(PRESETS[name], inputs)}"


def summary(preset: Preset, inputs: str) -> str:
    """The preset's summary; on feature vectors, what of it applies (no backbone; the file's own rows)."""
    if inputs != "features":
        return preset.summary
    train = preset.train
    return (f"heads-only study on the file's features: {preset.searches} search(es) of "
            f"{preset.num_samples // preset.searches} trial(s) per head, {train.optim.epochs} epochs, "
            f"{preset.final_seeds} final seed(s) per search; every training row, {VAL_SHARE:.0%} of them held out "
            f"(stratified, seeded) to validate on")


def for_inputs(train: TrainConfig, inputs: str) -> TrainConfig:
    """A preset's training configuration for the source's inputs: on feature vectors, every training row with a
    VAL_SHARE validation split (the presets' subset and val_size count CIFAR-100 images)."""
    if inputs != "features":
        return train
    return train.replace(**{"data.subset": None, "data.val_size": None})
