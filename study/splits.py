"""Seeded, class-stratified splits of a dataset for tuning (train/val) and final evaluation (the same train/test,
with val kept beside)."""
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from study.class_info import ClassInfo
from study.errors import ConfigError
from study.sources.dataset import Dataset


@dataclass(frozen=True)
class Splits:
    train_images: np.ndarray  # uint8 [N, 3, 32, 32], or float32 [N, d] features in a frozen-backbone study
    train_labels: np.ndarray
    eval_images: np.ndarray
    eval_labels: np.ndarray
    eval_split: str  # "val" while tuning, "test" for final models: prefixes the reported metric names
    class_info: ClassInfo
    features_id: Optional[str] = None  # frozen-backbone features: their cache key and checksum (study/frozen.py)
    # Per-channel statistics (0..1 scale) the images are normalised with; None for feature vectors.
    channel_mean: Optional[Tuple[float, ...]] = None
    channel_std: Optional[Tuple[float, ...]] = None
    unsplit_classes: int = 0  # classes too small to give the validation set any example
    # A final model's splits only: the validation rows, evaluated once after training (the convergence check's 1x
    # run, analysis/convergence.py); while tuning they are the eval split itself.
    val_images: Optional[np.ndarray] = None
    val_labels: Optional[np.ndarray] = None
    skipped_inputs: int = 0  # files of the source left out because they did not decode (study/inputs.py)

    @property
    def holds_features(self) -> bool:
        """Whether the 'images' are a frozen backbone's feature vectors (study/frozen.py)."""
        return self.train_images.ndim == 2


class SplitSizeError(ConfigError):
    """A validation size or subset the data has too few examples for (a preset sized for CIFAR-100 on a small
    folder, say)."""


VAL_SHARE = 0.1  # of the training examples held out for validation when no val_size is given
MIN_TO_SPLIT = 2  # a class with fewer training examples stays wholly in training: none of it in validation


def validation_count(labels: np.ndarray, val_size: Optional[int]) -> int:
    """val_size, or VAL_SHARE of the examples (rounded) when it is None."""
    return round(VAL_SHARE * len(labels)) if val_size is None else val_size


def tuning_indices(labels: np.ndarray, val_size: Optional[int], split_seed: int):
    """(training indices, validation indices) of the tuning split: a stratified val set and the rest. Classes with
    fewer than MIN_TO_SPLIT examples are left out of the val set (unsplit_classes counts them)."""
    count = validation_count(labels, val_size)
    if not 0 < count < len(labels):
        raise SplitSizeError(f"val_size={count} must be between 1 and {len(labels) - 1} (the data has "
                             f"{len(labels):,} training examples)")
    classes, per_class = np.unique(labels, return_counts=True)
    few = classes[per_class < MIN_TO_SPLIT]
    if few.size:  # only here, so a dataset without such classes is split exactly as before they were handled
        splittable = np.flatnonzero(~np.isin(labels, few))
        if count > len(splittable) - (len(classes) - few.size):
            raise SplitSizeError(f"val_size={count} leaves a class without training examples; choose at most "
                              f"{len(splittable) - (len(classes) - few.size)}")
        val = splittable[stratified_take(labels[splittable], count, split_seed)]
    else:
        val = stratified_take(labels, count, split_seed)
    return np.setdiff1d(np.arange(len(labels)), val), np.sort(val)


def check_subset(labels: np.ndarray, subset: int) -> None:
    if not 0 < subset <= len(labels):
        raise SplitSizeError(f"subset={subset} must be between 1 and {len(labels)} training images")
    classes = len(np.unique(labels))
    if subset < classes:  # some classes would have no training image at all
        raise SplitSizeError(f"subset={subset} is fewer training images than the {classes} classes; choose at "
                             f"least {classes}")


def check_sizes(labels: np.ndarray, val_size: Optional[int], subset: Optional[int]) -> None:
    """SplitSizeError (one line) unless make_splits can take val_size and subset from these training labels:
    checked before anything is trained or written (a frozen backbone, a run folder)."""
    keep, _ = tuning_indices(labels, val_size, 0)  # the seed changes which examples, not how many
    labels = labels[keep]
    if subset is not None:
        check_subset(labels, subset)


def unsplit_classes(labels: np.ndarray) -> int:
    """How many classes have too few training examples to give any to the validation set."""
    return int((np.unique(labels, return_counts=True)[1] < MIN_TO_SPLIT).sum())


def unsplit_line(splits: "Splits") -> str:
    """The console's line counting the classes kept out of validation (splits.unsplit_classes > 0)."""
    return (f"{splits.unsplit_classes} of {splits.class_info.num_classes} classes have fewer than {MIN_TO_SPLIT} "
            "training examples: each stays wholly in training (none of it in validation)")


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


EMBEDDING_GRID = 8  # images are average-pooled to 8x8 per channel for class embeddings


def pooled_images(images: np.ndarray, grid: int = EMBEDDING_GRID) -> np.ndarray:
    """[N, C * grid * grid] float64: each image average-pooled to grid x grid cells per channel. Sides that grid
    divides are pooled in equal blocks; others in cells of adaptive pooling's bounds (floor(i*H/g), ceil((i+1)*H/g))."""
    n, c, h, w = images.shape
    if h % grid == 0 and w % grid == 0:
        pooled = images.reshape(n, c, grid, h // grid, grid, w // grid).mean(axis=(3, 5), dtype=np.float64)
        return pooled.reshape(n, -1)
    rows = [(i * h // grid, -(-(i + 1) * h // grid)) for i in range(grid)]
    cols = [(j * w // grid, -(-(j + 1) * w // grid)) for j in range(grid)]
    cells = [images[:, :, r0:r1, c0:c1].mean(axis=(2, 3), dtype=np.float64) for r0, r1 in rows for c0, c1 in cols]
    return np.stack(cells, axis=2).reshape(n, -1)


def class_embeddings(images: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Mean image of each class at 8x8 (average pooling), standardised: a cheap, data-derived class vector.
    For feature vectors [N, d] (a frozen-backbone study, a features file): the mean feature vector of each class,
    standardised."""
    pooled = images.astype(np.float64) if images.ndim == 2 else pooled_images(images)
    sums = np.zeros((num_classes, pooled.shape[1]))
    np.add.at(sums, labels, pooled)
    means = sums / np.maximum(np.bincount(labels, minlength=num_classes), 1)[:, None]  # absent class -> zeros
    return (means - means.mean(0)) / (means.std(0) + 1e-8)


def make_splits(data: Dataset, val_size: Optional[int] = 5000, subset: int = None, split_seed: int = 0,
                final: bool = False) -> Splits:
    """Train minus a stratified val set (val_size examples, or VAL_SHARE of them when None; optionally a stratified
    subset of the rest). Tuning evaluates on val. Final trains on the same examples, evaluates on test, which only
    final models ever see, and keeps val beside it: a final model is then the tuned configuration trained exactly
    as it was tuned (the same rows, steps and schedule), and its validation accuracy is the convergence check's
    run at the study's epochs (analysis/convergence.py)."""
    images, labels = data.train_inputs, data.train_labels
    keep, val = tuning_indices(labels, val_size, split_seed)
    unsplit = unsplit_classes(labels)
    val_images, val_labels = images[val], labels[val]
    images, labels = images[keep], labels[keep]
    if subset is not None:
        check_subset(labels, subset)
        chosen = stratified_take(labels, subset, split_seed + 1)
        images, labels = images[chosen], labels[chosen]
    if final:
        eval_images, eval_labels, eval_split = data.test_inputs, data.test_labels, "test"
    else:
        eval_images, eval_labels, eval_split = val_images, val_labels, "val"
        val_images = val_labels = None
    num_classes = data.num_classes
    top = data.top_groups()
    info = ClassInfo(
        num_classes=num_classes,
        coarse_of_fine=None if top is None else tuple(int(g) for g in top),
        class_counts=tuple(int(n) for n in np.bincount(labels, minlength=num_classes)),
        class_embeddings=class_embeddings(images, labels, num_classes),
        fine_names=data.class_names,
        coarse_names=data.top_group_names(),
        parents=data.parents,
    )
    return Splits(images, labels, eval_images, eval_labels, eval_split, info, channel_mean=data.channel_mean,
                  channel_std=data.channel_std, unsplit_classes=unsplit, val_images=val_images, val_labels=val_labels)
