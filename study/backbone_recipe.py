"""What a frozen-backbone study's backbone is, before it is trained: the run that trains it (the recipe, which the
cache key hashes) and the labels it learns to tell apart (study/frozen.py caches what it becomes)."""
import json
from dataclasses import asdict

import numpy as np

from study.class_info import ClassInfo
from study.config import FROZEN_LABELS, DataConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
from study.errors import ConfigError
from study.sources.dataset import Dataset
from study.splits import Splits, tuning_indices

FEATURES_FORMAT = 1  # bump when what the cache holds, or how it is made, changes: old entries are then not reused
GROUP_SIZE = 5  # classes per random group the backbone learns (CIFAR-100: 20 groups of 5)


def recipe(cfg: TrainConfig) -> dict:
    """Everything the frozen backbone and its features depend on, besides the data and the code (FEATURES_FORMAT):
    the whole configuration that trains it, and the labels it is trained on. Not the head, its optimiser, the
    trial seed, the subset or the neck: those change what trains on the features, not the features."""
    train = json.loads(json.dumps(asdict(backbone_config(cfg))))
    train["data"].pop("data_dir")  # where the data lives is not what it is: the fingerprint covers that
    train["data"].pop("source")  # nor how it was asked for
    train["data"].pop("image_size")  # nor its resolution: the fingerprint hashes the resized pixels themselves
    train["data"].pop("skip_bad_images")  # nor which files were left out: the fingerprint hashes what was kept
    train["run"].pop("device")
    return {"format": FEATURES_FORMAT, "train": train, "labels": cfg.frozen.labels}


def backbone_config(cfg: TrainConfig) -> TrainConfig:
    """The run that trains the backbone: a linear softmax classifier on frozen.labels, the study's own split."""
    f = cfg.frozen
    return TrainConfig(
        data=DataConfig(source=cfg.data.source, data_dir=cfg.data.data_dir, val_size=cfg.data.val_size,
                        split_seed=cfg.data.split_seed, image_size=cfg.data.image_size,
                        skip_bad_images=cfg.data.skip_bad_images),
        model=ModelConfig(backbone=cfg.model.backbone, head="softmax", backbone_knobs=dict(cfg.model.backbone_knobs)),
        optim=OptimConfig(optimizer="sgd", lr=f.lr, batch_size=f.batch_size, epochs=f.epochs),
        run=RunConfig(seed=f.seed, device=cfg.run.device),
    )


def random_groups(num_classes: int, num_groups: int, seed: int) -> np.ndarray:
    """[K] group of each fine class: a seeded random partition into num_groups groups of equal size."""
    order = np.random.default_rng(seed).permutation(num_classes)
    groups = np.empty(num_classes, dtype=np.int64)
    groups[order] = np.arange(num_classes) * num_groups // num_classes
    return groups


def group_count(num_classes: int) -> int:
    """How many random groups the backbone learns: K / GROUP_SIZE (rounded down), at least 2. K = 20: 4 groups of 5;
    K = 22: 4 groups of 5 or 6; below 10 classes 2 groups of fewer than 5 (K = 2: each class a group of its own)."""
    return max(2, num_classes // GROUP_SIZE)


def group_sizes(num_classes: int):
    """(smallest, largest) number of classes in one random group (random_groups splits as evenly as it can)."""
    count = group_count(num_classes)
    return num_classes // count, -(-num_classes // count)


def backbone_labels(cfg: TrainConfig, data: Dataset):
    """(label of each training image, label names, number of labels) the backbone is trained on."""
    fine = data.train_labels
    if cfg.frozen.labels == "coarse":
        top = data.top_groups()
        if top is None:
            raise ConfigError(f"frozen.labels='coarse' needs a class hierarchy, which data source '{data.source}' "
                              f"lacks; choose from: {', '.join(name for name in FROZEN_LABELS if name != 'coarse')}")
        names = data.top_group_names()
        return top[fine], names, len(names)
    if cfg.frozen.labels == "random":
        count = group_count(data.num_classes)
        groups = random_groups(data.num_classes, count, cfg.frozen.seed)
        return groups[fine], tuple(f"group{g}" for g in range(count)), count
    return fine, data.class_names, data.num_classes


def backbone_splits(cfg: TrainConfig, data: Dataset) -> Splits:
    """The tuning split's training images with frozen.labels, evaluated on the validation images."""
    train, val = tuning_indices(data.train_labels, cfg.data.val_size, cfg.data.split_seed)
    labels, names, num_classes = backbone_labels(cfg, data)
    info = ClassInfo(num_classes=num_classes, class_counts=tuple(np.bincount(labels[train], minlength=num_classes)),
                     fine_names=names)
    return Splits(data.train_inputs[train], labels[train], data.train_inputs[val], labels[val], "val", info,
                  channel_mean=data.channel_mean, channel_std=data.channel_std)
