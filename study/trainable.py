"""The Ray Tune function trainable: a thin adapter from Tune's config dict to `train.fit`.

The config holds the preset's TrainConfig (as a dict under BASE_KEY) plus the search space's flat values; the data
arrives once per study through `tune.with_parameters`, never through the config.
"""
import tempfile
import time
from pathlib import Path

import torch
from ray import tune

from study.config import TrainConfig, with_sampled
from study.splits import Splits
from study.train import Trainer, fit

BASE_KEY = "base"
STATE_FILE = "trainer.pt"


def trial_config(config: dict) -> TrainConfig:
    sampled = {k: v for k, v in config.items() if k != BASE_KEY}
    return with_sampled(TrainConfig.from_dict(config[BASE_KEY]), sampled)


def train_trial(config: dict, splits: Splits, checkpoint_every: int = 1) -> None:
    started_at = time.time()  # wall clock at entry: with Ray's trial timestamps, the per-trial start-up overhead
    cfg = trial_config(config)
    trainer = Trainer(cfg, splits)
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            trainer.load_state_dict(torch.load(Path(folder) / STATE_FILE, weights_only=False))
    for metrics in fit(cfg, trainer=trainer):
        metrics["trial_started_at"] = started_at
        metrics["reported_at"] = time.time()  # Ray's own timestamp is whole seconds
        last = metrics["diverged"] or metrics["epoch"] == cfg.optim.epochs
        if metrics["epoch"] % checkpoint_every or last:  # a finished trial is never resumed: skip its checkpoint
            tune.report(metrics)
            continue
        with tempfile.TemporaryDirectory() as folder:
            torch.save(trainer.state_dict(), Path(folder) / STATE_FILE)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
