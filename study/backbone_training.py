"""Training the backbone a frozen-backbone study freezes, and its features: global-average-pooled activations of
unaugmented images, standardised with the tuning split's training features (study/frozen.py caches them)."""
import time

import numpy as np
import torch

from study.backbone_recipe import backbone_splits
from study.config import TrainConfig
from study.errors import ConfigError
from study.sources.dataset import Dataset
from study.splits import tuning_indices
from study.study_kind import plural

EXTRACT_BATCH = 256  # images per feature-extraction batch (eval mode; the result does not depend on it)


def train_backbone(cfg: TrainConfig, bcfg: TrainConfig, data: Dataset, log):
    """Train the backbone to be frozen; returns (backbone in eval mode on the CPU, a record of its training)."""
    from study.trainer import Trainer, fit

    splits = backbone_splits(cfg, data)
    log(f"frozen backbone: training {bcfg.model.backbone} on the {splits.class_info.num_classes} "
        f"{cfg.frozen.labels} labels of {len(splits.train_labels):,} training images for "
        f"{plural(bcfg.optim.epochs, 'epoch')} (once; cached for later runs)")
    started = time.time()
    trainer = Trainer(bcfg, splits)
    history = []
    for metrics in fit(bcfg, trainer=trainer):
        history.append(metrics)
        log(f"  backbone epoch {metrics['epoch']}/{bcfg.optim.epochs}: train loss {metrics['train_loss']:.3f}, "
            f"val acc ({cfg.frozen.labels} labels) {100 * metrics['val_acc']:.1f}%, {metrics['epoch_time_s']:.0f} s")
    backbone = trainer.backbone.to("cpu", memory_format=torch.contiguous_format).eval()
    trained = {"labels": cfg.frozen.labels, "epochs": len(history), "train_s": time.time() - started,
               "val_acc": history[-1].get("val_acc"), "device": str(trainer.device),
               "diverged": bool(history[-1]["diverged"])}
    if trained["diverged"]:
        raise ConfigError(f"the frozen backbone's training diverged (loss {history[-1]['train_loss']}); "
                          f"lower frozen.lr={cfg.frozen.lr}")
    return backbone, trained


@torch.no_grad()
def extract(backbone, images: np.ndarray, device: torch.device, channel_mean, channel_std) -> np.ndarray:
    from study.batches import DeviceBatches

    backbone = backbone.to(device).eval()
    batches = DeviceBatches(images, np.zeros(len(images), dtype=np.int64), device, channel_mean, channel_std,
                            channels_last=True)
    return torch.cat([backbone(x).float().cpu() for x, _ in batches.eval_batches(EXTRACT_BATCH)]).numpy()


def standardised(backbone, data: Dataset, cfg: TrainConfig):
    """Features of every training and test image, standardised with the tuning split's training features' mean and
    standard deviation (never the validation or test images')."""
    from study.trainer import resolve_device

    device = resolve_device(cfg.run.device)
    stats = (data.channel_mean, data.channel_std)
    train, test = (extract(backbone, inputs, device, *stats) for inputs in (data.train_inputs, data.test_inputs))
    fit_rows, _ = tuning_indices(data.train_labels, cfg.data.val_size, cfg.data.split_seed)
    mean, std = train[fit_rows].mean(0), train[fit_rows].std(0)
    # A feature (almost) constant on the training images, e.g. a channel its ReLU never lets through, is centred
    # but not scaled: dividing by its tiny deviation would blow up what held-out images put there.
    std = np.where(std > 1e-4, std, 1.0)
    return ((train - mean) / std).astype(np.float32), ((test - mean) / std).astype(np.float32)
