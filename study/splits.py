"""Seeded, class-stratified splits of CIFAR-100 for tuning (train/val) and final evaluation (train+val/test)."""
from dataclasses import dataclass
from typing import Optional

import numpy as np

from study.class_info import ClassInfo
from study.data import Cifar100
from study.errors import ConfigError


@dataclass(frozen=True)
class Splits:
    train_images: np.ndarray  # uint8 [N, 3, 32, 32], or float32 [N, d] features in a frozen-backbone study
    train_labels: np.ndarray
    eval_images: np.ndarray
    eval_labels: np.ndarray
    eval_split: str  # "val" while tuning, "test" for final models: prefixes the reported metric names
    class_info: ClassInfo
    features_id: Optional[str] = None  # frozen-backbone features: their cache key and checksum (study/frozen.py)

    @property
    def holds_features(self) -> bool:
        """Whether the 'images' are a frozen backbone's feature vectors (study/frozen.py)."""
        return self.train_images.ndim == 2


def tuning_indices(labels: np.ndarray, val_size: int, split_seed: int):
    """(training indices, validation indices) of the tuning split: a stratified val set and the rest."""
    if not 0 < val_size < len(labels):
        raise ConfigError(f"val_size={val_size} must be between 1 and {len(labels) - 1}")
    val = stratified_take(labels, val_size, split_seed)
    return np.setdiff1d(np.arange(len(labels)), val), val


def stratified_take(labels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Indices of `count` examples with every class represented in proportion (largest-remainder rounding)."""
    classes, per_class = np.unique(labels, return_counts=True)
    quota = per_class * count / len(labels)
    take = np.floor(quota).astype(int)
    shortfall = count - take.sum()
    take[np.argsort(-(quota - take), kind="stable")[:shortfall]] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:n] for c, n in zip(classes, take)]
    return np.sort(np.concatenate(chosen))


def class_embeddings(images: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Mean image of each class at 8x8 (4x4 average pooling), standardised: a cheap, data-derived class vector.
    For feature vectors [N, d] (a frozen-backbone study): the mean feature vector of each class, standardised."""
    if images.ndim == 2:
        pooled = images.astype(np.float64)
    else:
        pooled = images.reshape(len(images), 3, 8, 4, 8, 4).mean(axis=(3, 5), dtype=np.float64)
        pooled = pooled.reshape(len(images), -1)
    sums = np.zeros((num_classes, pooled.shape[1]))
    np.add.at(sums, labels, pooled)
    means = sums / np.maximum(np.bincount(labels, minlength=num_classes), 1)[:, None]  # absent class -> zeros
    return (means - means.mean(0)) / (means.std(0) + 1e-8)


def make_splits(data: Cifar100, val_size: int = 5000, subset: int = None, split_seed: int = 0,
                final: bool = False) -> Splits:
    """Tuning: train minus a stratified val set (optionally a stratified subset of the rest) -> evaluate on val.
    Final: all 50k training images (or a subset) -> evaluate on test, which only final models ever see."""
    images, labels = data.train_images, data.train_labels
    if final:
        eval_images, eval_labels, eval_split = data.test_images, data.test_labels, "test"
    else:
        keep, val = tuning_indices(labels, val_size, split_seed)
        eval_images, eval_labels, eval_split = images[val], labels[val], "val"
        images, labels = images[keep], labels[keep]
    if subset is not None:
        if not 0 < subset <= len(labels):
            raise ConfigError(f"subset={subset} must be between 1 and {len(labels)} training images")
        classes = len(np.unique(labels))
        if subset < classes:  # some classes would have no training image at all
            raise ConfigError(f"subset={subset} is fewer training images than the {classes} classes; choose at "
                              f"least {classes}")
        chosen = stratified_take(labels, subset, split_seed + 1)
        images, labels = images[chosen], labels[chosen]
    num_classes = len(data.coarse_of_fine)
    info = ClassInfo(
        num_classes=num_classes,
        coarse_of_fine=tuple(int(c) for c in data.coarse_of_fine),
        class_counts=tuple(int(n) for n in np.bincount(labels, minlength=num_classes)),
        class_embeddings=class_embeddings(images, labels, num_classes),
        fine_names=data.fine_names,
        coarse_names=data.coarse_names,
    )
    return Splits(images, labels, eval_images, eval_labels, eval_split, info)
