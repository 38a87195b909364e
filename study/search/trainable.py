"""The Ray Tune function trainable: a thin adapter from Tune's config dict to `trainer.fit`.

Tune's config holds only the search space's flat values; the head's base configuration (from the study spec) and
the data arrive once per study through `tune.with_parameters`, never through the config.
"""
import tempfile
import time
from pathlib import Path

import ray
import torch
from ray import tune

from study.config import TrainConfig, with_sampled
from study.errors import ConfigError
from study.files import UnsafeOrDamagedFile, load_tensors
from study.splits import Splits
from study.trainer import Trainer, fit

STATE_FILE = "trainer.pt"
# Runs made before the study spec (study.json schema 1) carried each head's base configuration in Tune's config too,
# under this key; resuming such a run restores those configs. The spec's base configuration is the same one.
LEGACY_BASE_KEY = "base"


def sampled_values(config: dict) -> dict:
    """The search space's values in a trial's Tune config."""
    return {k: v for k, v in config.items() if k != LEGACY_BASE_KEY}


def load_checkpoint(path: Path, checkpoint) -> dict:
    """A trial's saved trainer state, read weights-only: a checkpoint that holds anything else (planted on shared
    storage, or damaged) is refused in one line naming it, and never unpickled."""
    try:
        return load_tensors(path)
    except (UnsafeOrDamagedFile, OSError, RuntimeError, EOFError) as error:
        where = getattr(checkpoint, "path", path)
        raise ConfigError(f"trial checkpoint {where} is refused: {error}; delete that checkpoint folder to restart "
                          "the trial from its first epoch, or start a new run") from None


def train_trial(config: dict, splits: Splits, base: TrainConfig, checkpoint_every: int = 1) -> None:
    started_at = time.time()  # wall clock at entry: with Ray's trial timestamps, the per-trial start-up overhead
    cfg = with_sampled(base, sampled_values(config))
    trainer = Trainer(cfg, splits)
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            trainer.load_state_dict(load_checkpoint(Path(folder) / STATE_FILE, checkpoint))
    # Which machine of a cluster ran the trial (None when called outside Ray, as the tests do).
    node_id = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    for metrics in fit(cfg, trainer=trainer):
        metrics["trial_started_at"] = started_at
        metrics["reported_at"] = time.time()  # Ray's own timestamp is whole seconds
        metrics["node_id"] = node_id
        last = metrics["diverged"] or metrics["epoch"] == cfg.optim.epochs
        if metrics["epoch"] % checkpoint_every or last:  # a finished trial is never resumed: skip its checkpoint
            tune.report(metrics)
            continue
        with tempfile.TemporaryDirectory() as folder:
            torch.save(trainer.state_dict(), Path(folder) / STATE_FILE)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
