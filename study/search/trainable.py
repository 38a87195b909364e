"""The Ray Tune function trainable: a thin adapter from Tune's config dict to `trainer.fit`.

Tune's config holds the search space's flat values and, in the search phase, the name of the trial's search
(SEARCH_KEY); each search's base configuration (from the study spec, with the search's trial seed) and the data
arrive once per study through `tune.with_parameters`, never through the config.
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
# The search a trial belongs to, in its Tune config when every search runs in one Ray Tune run
# (study/search/phase.py); a run of one search at a time (runs made before) has no such key.
SEARCH_KEY = "search"


def sampled_values(config: dict) -> dict:
    """The search space's values in a trial's Tune config."""
    return {k: v for k, v in config.items() if k not in (LEGACY_BASE_KEY, SEARCH_KEY)}


def load_checkpoint(path: Path, checkpoint) -> dict:
    """A trial's saved trainer state, read weights-only: a checkpoint that holds anything else (planted on shared
    storage, or damaged) is refused in one line naming it, and never unpickled."""
    try:
        return load_tensors(path)
    except (UnsafeOrDamagedFile, OSError, RuntimeError, EOFError) as error:
        where = getattr(checkpoint, "path", path)
        raise ConfigError(f"trial checkpoint {where} is refused: {error}; delete that checkpoint folder to restart "
                          "the trial from its first epoch, or start a new run") from None


def train_trial(config: dict, splits: Splits, base: TrainConfig = None, checkpoint_every: int = 1,
                bases: dict = None) -> None:
    """One trial. base: its search's base configuration (a Ray Tune run of one search); bases: {search name: base
    configuration} (the search phase, whose trials name their search in the config)."""
    started_at = time.time()  # wall clock at entry: with Ray's trial timestamps, the per-trial start-up overhead
    if SEARCH_KEY in config:
        base = bases[config[SEARCH_KEY]]
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
