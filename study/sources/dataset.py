"""What every data source gives the study: one dataset type, whatever the source (study/sources/).

Everything downstream (splits, the frozen-backbone cache, class info, heads, tree layouts, metrics, the report)
reads the number of classes, their names and their hierarchy from here, never from one dataset's constants.
"""
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from study.errors import DataError


@dataclass(frozen=True)
class Dataset:
    source: str  # how it was asked for, e.g. "cifar100" or "features:emb.npz"
    train_inputs: np.ndarray  # uint8 images [N, C, H, W], or float32 feature vectors [N, d]
    train_labels: np.ndarray  # int64 [N], classes 0 .. K-1
    test_inputs: np.ndarray
    test_labels: np.ndarray
    class_names: Tuple[str, ...]  # [K]
    # The class hierarchy, or None: the parent id of every node. Nodes 0 .. K-1 are the classes (leaves), K .. M-1
    # the groups; -1 marks a top node. CIFAR-100: 100 classes under 20 superclasses, 120 nodes.
    parents: Optional[Tuple[int, ...]] = None
    group_names: Optional[Tuple[str, ...]] = None  # [M - K] names of the group nodes, when the data has them
    # Per-channel mean and standard deviation of the training images on a 0..1 scale (images only): what the
    # images are normalised with.
    channel_mean: Optional[Tuple[float, ...]] = None
    channel_std: Optional[Tuple[float, ...]] = None
    checksum: Optional[str] = None  # SHA-256 of the file it was read from, where a source reads one file
    skipped: Tuple[str, ...] = ()  # files left out because they did not decode (imagefolder --skip-bad-images)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def holds_features(self) -> bool:
        return self.train_inputs.ndim == 2

    def top_groups(self) -> Optional[np.ndarray]:
        """[K] the hierarchy's top-level group of each class (numbered 0 .. G-1 in node order), or None without a
        hierarchy. A class that is itself a top node is a group of its own."""
        if self.parents is None:
            return None
        return top_groups(self.parents, self.num_classes)[0]

    def top_group_names(self) -> Optional[Tuple[str, ...]]:
        if self.parents is None:
            return None
        _, tops = top_groups(self.parents, self.num_classes)
        names = {**{k: name for k, name in enumerate(self.class_names)},
                 **{self.num_classes + i: name for i, name in enumerate(self.group_names or ())}}
        return tuple(names.get(node, f"group{node}") for node in tops)


def top_groups(parents, num_classes: int):
    """([K] index of each class's top-level ancestor among the top nodes, the top nodes' ids in order). The top
    level is the first with more than one node: a single root group (study.synthetic writes one) is looked
    through to its children. A class that is itself a top node is a group of its own."""
    parents = np.asarray(parents, dtype=np.int64)
    tops = np.flatnonzero(parents == -1)
    while len(tops) == 1 and tops[0] >= num_classes:
        tops = np.flatnonzero(parents == tops[0])
    position = {int(node): i for i, node in enumerate(tops)}
    group = np.empty(num_classes, dtype=np.int64)
    for k in range(num_classes):
        node = k
        while node not in position:
            node = int(parents[node])
        group[k] = position[node]
    return group, tuple(int(t) for t in tops)


def check_hierarchy(parents, num_classes: int, where: str) -> Tuple[int, ...]:
    """The hierarchy as a tuple of ints, or DataError (one line, naming the fault) unless it is a forest whose
    leaves are exactly the classes 0 .. K-1: no cycle, no id out of range, no class with a child, no childless
    group."""
    parents = np.asarray(parents)
    if parents.ndim != 1 or not np.issubdtype(parents.dtype, np.integer):
        raise DataError(f"{where}: 'parents' must be a 1-D integer array (the parent id of every node, -1 for a "
                        f"top node); it is {parents.dtype} with shape {parents.shape}")
    nodes = len(parents)
    if nodes < num_classes:
        raise DataError(f"{where}: 'parents' has {nodes} entries for {num_classes} classes; nodes 0 .. "
                        f"{num_classes - 1} must be the classes")
    bad = np.flatnonzero((parents < -1) | (parents >= nodes) | (parents == np.arange(nodes)))
    if bad.size:
        raise DataError(f"{where}: 'parents' gives node {bad[0]} the parent {parents[bad[0]]}; a parent is -1 (a "
                        f"top node) or another node's id, 0 .. {nodes - 1}")
    inner = np.flatnonzero((parents >= 0) & (parents < num_classes))
    if inner.size:
        raise DataError(f"{where}: 'parents' makes class {parents[inner[0]]} the parent of node {inner[0]}; "
                        f"classes (nodes 0 .. {num_classes - 1}) must be leaves")
    childless = np.setdiff1d(np.arange(num_classes, nodes), parents[parents >= 0])
    if childless.size:
        raise DataError(f"{where}: group node {childless[0]} in 'parents' has no child; every node from "
                        f"{num_classes} on must be a group of other nodes")
    for start in range(num_classes, nodes):  # a cycle can only pass through groups
        node, steps = start, 0
        while node != -1 and steps <= nodes:
            node, steps = parents[node], steps + 1
        if node != -1:
            raise DataError(f"{where}: 'parents' has a cycle through node {start}; it must be a tree (each chain "
                            "of parents ends at -1)")
    return tuple(int(p) for p in parents)
