"""What heads and tree layouts may know about the label set, beyond the number of classes."""
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np


@dataclass(frozen=True)
class ClassInfo:
    num_classes: int
    coarse_of_fine: Optional[Sequence[int]] = None  # top-level group of each class in the data's hierarchy
    class_counts: Optional[Sequence[int]] = None  # training images per class (Huffman trees, sampled proposals)
    class_embeddings: Optional[np.ndarray] = None  # [K, e] vectors to cluster classes by (clustered trees)
    fine_names: Optional[Sequence[str]] = None
    coarse_names: Optional[Sequence[str]] = None  # of the top-level groups
    parents: Optional[Sequence[int]] = None  # the data's whole hierarchy (study/sources/dataset.py), if it has one

    def counts_or_uniform(self) -> np.ndarray:
        if self.class_counts is None:
            return np.ones(self.num_classes, dtype=np.float64)
        return np.asarray(self.class_counts, dtype=np.float64)

    @classmethod
    def uniform(cls, num_classes: int) -> "ClassInfo":
        return cls(num_classes=num_classes)
