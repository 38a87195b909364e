"""Registry of tree layouts for the hierarchical head.

A `Tree` lists, for each internal node (root = 0), its children: an id >= 0 is another internal node, an id < 0
is the leaf of class `-id - 1`. A layout is a function (class_info, branching) -> Tree. Where a layout cannot build
what it was asked for (k-means cannot split a group, no class counts to weigh by, a `branching` the data's shape
overrides), the Tree's `note` says what it built instead, and `describe()` shows it beside the layout's name: the
hierarchical head puts that in the console and in the analysis report.
"""
import heapq
from dataclasses import dataclass
from typing import Callable, List, Sequence

import numpy as np

from study.class_info import ClassInfo
from study.errors import ConfigError
from study.registry import Registry

TREE_LAYOUTS = Registry("tree layout")
register_tree_layout = TREE_LAYOUTS.register


def leaf(class_id: int) -> int:
    return -class_id - 1


@dataclass(frozen=True)
class Tree:
    children: List[List[int]]
    # What the layout built other than as asked, in words ("" when it built what was asked): e.g. groups of the
    # clustered layout split evenly because k-means could not split them.
    note: str = ""

    def depth(self) -> int:
        def walk(node):
            return 1 + max((walk(c) for c in self.children[node] if c >= 0), default=0)
        return walk(0)

    def leaf_classes(self) -> List[int]:
        return sorted(-c - 1 for kids in self.children for c in kids if c < 0)


def list_tree_layouts():
    return TREE_LAYOUTS.names()


def describe(layout: str, tree: Tree) -> str:
    """The layout's name, with the tree's note when it built something other than asked: 'clustered (3 of 12 groups
    split evenly: k-means could not split them)'."""
    return f"{layout} ({tree.note})" if tree.note else layout


def create_tree(layout: str, class_info: ClassInfo, branching: int = 2) -> Tree:
    factory = TREE_LAYOUTS.get(layout)
    if branching < 2:
        raise ConfigError(f"branching={branching} must be >= 2 for tree layout '{layout}'")
    tree = factory(class_info, branching)
    if tree.leaf_classes() != list(range(class_info.num_classes)):
        raise AssertionError(f"tree layout '{layout}' does not hold every class exactly once")
    return tree


def tree_from_splits(classes: Sequence[int], branching: int, split: Callable[[Sequence[int]], List[list]]) -> Tree:
    """Build top-down: a group of <= `branching` classes becomes leaves, a larger one is `split` into subgroups."""
    children: List[List[int]] = []

    def build(group) -> int:
        if len(group) == 1:
            return leaf(group[0])
        node = len(children)
        children.append([])
        parts = [[c] for c in group] if len(group) <= branching else [p for p in split(group) if p]
        children[node] = [build(part) for part in parts]
        return node

    build(list(classes))
    return Tree(children)


def even_split(group, branching):
    return [list(part) for part in np.array_split(np.asarray(group), branching)]


@register_tree_layout("balanced")
def balanced(class_info: ClassInfo, branching: int) -> Tree:
    """Complete b-ary tree over class ids in index order: depth ceil(log_b K)."""
    return tree_from_splits(range(class_info.num_classes), branching, lambda g: even_split(g, branching))


HIERARCHY_LAYOUTS = ("coarse",)  # layouts that follow the data's own hierarchy: only for data that has one


def layouts_for(has_hierarchy: bool):
    """The layouts a search may offer: every one, less those that need a class hierarchy when there is none."""
    return [name for name in list_tree_layouts() if has_hierarchy or name not in HIERARCHY_LAYOUTS]


@register_tree_layout("coarse")
def coarse(class_info: ClassInfo, branching: int) -> Tree:
    """The data's own hierarchy, at any depth (CIFAR-100: root -> 20 superclasses -> 5 fine classes each). Several
    top nodes hang from one root; a group with a single child is skipped (it would be a decision with one
    outcome). The data fixes the shape, so `branching` is unused."""
    parents = class_info.hierarchy()
    if parents is None:
        raise ConfigError("tree layout 'coarse' needs the data's class hierarchy, which this dataset lacks; choose "
                          f"from: {', '.join(layouts_for(False))}")
    num_classes = class_info.num_classes
    kids = {}
    for node, parent in enumerate(parents):
        kids.setdefault(parent, []).append(node)
    children: List[List[int]] = [[]]

    def through_single_children(node: int) -> int:
        while node >= num_classes and len(kids[node]) == 1:
            node = kids[node][0]
        return node

    def build(node: int, slot: int) -> None:  # fill children[slot] with node's children, in node order
        for child in kids[node]:
            child = through_single_children(child)
            if child < num_classes:
                children[slot].append(leaf(child))
            else:
                children[slot].append(len(children))
                children.append([])
                build(child, len(children) - 1)

    tops = [through_single_children(node) for node in kids[-1]]
    if len(tops) == 1 and tops[0] >= num_classes:  # one root group: it is the tree's root
        build(tops[0], 0)
    else:
        kids[-1] = tops
        build(-1, 0)
    tree = Tree(children)
    groups = len(kids[-1]) if len(tops) > 1 else len(children[0])
    shape = (f"the data's {groups} superclasses set the shape" if tree.depth() <= 2 else
             f"the data's hierarchy sets the shape ({groups} top-level groups, {tree.depth()} levels of decisions)")
    # The search samples `branching` for every layout (search_spaces/), so it is not refused here, only named.
    return Tree(children, note=f"{shape}; branching={branching} is unused")


@register_tree_layout("huffman")
def huffman(class_info: ClassInfo, branching: int) -> Tree:
    """b-ary Huffman tree on training class frequencies: frequent classes get short paths (fewer loss terms).
    Without class counts every class weighs the same, and the note says so."""
    counts = class_info.counts_or_uniform()
    note = "" if class_info.class_counts is not None else "no class counts: every class weighted equally"
    # Entries (weight, tie-break order, child id). Zero-weight fillers make every merge take `branching` nodes.
    heap = [(float(w), k, leaf(k)) for k, w in enumerate(counts)]
    fillers = (-(len(heap) - 1)) % (branching - 1)
    heap += [(0.0, -1 - i, None) for i in range(fillers)]
    heapq.heapify(heap)
    merged: List[List[int]] = []  # built bottom-up; renumbered so the root is 0 below
    order = len(counts)
    while len(heap) > 1:
        parts = [heapq.heappop(heap) for _ in range(min(branching, len(heap)))]
        merged.append([c for _, _, c in parts if c is not None])
        heapq.heappush(heap, (sum(w for w, _, _ in parts), order, len(merged) - 1))
        order += 1
    last = len(merged) - 1  # the root; node i becomes last - i
    return Tree([[c if c < 0 else last - c for c in merged[last - i]] for i in range(len(merged))], note)


def kmeans(points: np.ndarray, k: int, seed: int = 0, iterations: int = 25) -> np.ndarray:
    """Lloyd's k-means with k-means++ seeding; returns a cluster id per point."""
    rng = np.random.default_rng(seed)
    centres = [points[rng.integers(len(points))]]
    for _ in range(1, k):
        d2 = np.min([((points - c) ** 2).sum(1) for c in centres], axis=0)
        total = d2.sum()
        pick = rng.choice(len(points), p=d2 / total) if total > 0 else rng.integers(len(points))
        centres.append(points[pick])
    centres = np.stack(centres)
    for _ in range(iterations):
        assign = ((points[:, None, :] - centres[None]) ** 2).sum(-1).argmin(1)
        centres = np.stack([points[assign == j].mean(0) if (assign == j).any() else centres[j] for j in range(k)])
    return assign


@register_tree_layout("clustered")
def clustered(class_info: ClassInfo, branching: int) -> Tree:
    """Recursive k-means over class embeddings (e.g. mean images, or confusion-matrix rows of a softmax run):
    similar classes share ancestors, so early decisions separate dissimilar groups. A group k-means cannot split
    (every member in one cluster: identical embeddings) is split evenly in class-id order; the tree's note counts
    those groups."""
    if class_info.class_embeddings is None:
        raise ConfigError("tree layout 'clustered' needs class embeddings; this dataset provides none")
    emb = np.asarray(class_info.class_embeddings, dtype=np.float64)

    splits, even = [0], [0]  # groups split, and how many of them evenly

    def split(group):
        splits[0] += 1
        assign = kmeans(emb[group], branching, seed=len(group))
        parts = [[c for c, a in zip(group, assign) if a == j] for j in range(branching)]
        if max(len(p) for p in parts) == len(group):  # identical embeddings: k-means cannot split them
            even[0] += 1
            return even_split(group, branching)
        return parts

    tree = tree_from_splits(range(class_info.num_classes), branching, split)
    if not even[0]:
        return tree
    return Tree(tree.children, note=f"{even[0]} of {splits[0]} groups split evenly: k-means could not split them")
