"""Tiny CIFAR-100 look-alikes written in the real on-disk format (pickles in cifar-100-python/)."""
import pickle
from pathlib import Path

import numpy as np

COARSE_OF_FINE = np.arange(100) % 20  # a fixed fine -> coarse map: 5 fine classes per superclass


def fake_split(per_class: int, rng: np.random.Generator) -> dict:
    labels = np.repeat(np.arange(100), per_class)
    rng.shuffle(labels)
    # Class-dependent mean colour plus noise, so a model can learn something from a few images.
    base = (labels[:, None] * 37 % 200).astype(np.float64) + 20
    data = np.clip(base + rng.normal(0, 20, size=(len(labels), 3072)), 0, 255).astype(np.uint8)
    return {"data": data, "fine_labels": labels.tolist(), "coarse_labels": COARSE_OF_FINE[labels].tolist(),
            "batch_label": "fake"}


def write_fake_cifar100(root: Path, train_per_class: int = 6, test_per_class: int = 2, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for name, per_class in (("train", train_per_class), ("test", test_per_class)):
        with open(folder / name, "wb") as f:
            pickle.dump(fake_split(per_class, rng), f, protocol=4)
    meta = {"fine_label_names": [f"fine{i}" for i in range(100)],
            "coarse_label_names": [f"coarse{i}" for i in range(20)]}
    with open(folder / "meta", "wb") as f:
        pickle.dump(meta, f, protocol=4)
    return Path(root)
