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

    def hierarchy(self) -> Optional[Sequence[int]]:
        """The parent id of every node (nodes 0 .. K-1 the classes, then the groups; -1 a top node): the data's
        hierarchy, else the two levels of coarse_of_fine (group g is node K + g), else None."""
        if self.parents is not None:
            return tuple(self.parents)
        if self.coarse_of_fine is not None:
            groups = max(self.coarse_of_fine) + 1
            return tuple(self.num_classes + int(g) for g in self.coarse_of_fine) + (-1,) * groups
        return None

    def counts_or_uniform(self) -> np.ndarray:
        if self.class_counts is None:
            return np.ones(self.num_classes, dtype=np.float64)
        return np.asarray(self.class_counts, dtype=np.float64)

    @classmethod
    def uniform(cls, num_classes: int) -> "ClassInfo":
        return cls(num_classes=num_classes)
