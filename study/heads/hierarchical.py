"""Hierarchical softmax: p(class) = product of branch probabilities along its root-to-leaf path in a tree.

Each internal node owns a small softmax over its (at most `branching`) children. Training touches only the nodes
on the target's path: O(d * depth * branching) per example instead of O(d * K). Full inference computes every
node's branch log-probabilities once, then accumulates them top-down, one tree level at a time.

Gathering each example's path weights is memory-bound, while one matmul over all nodes is compute-bound and fast.
So for small trees (at most DENSE_NODES_PER_LEVEL internal nodes per tree level, e.g. K = 100) training scores
every node with one matmul and picks the path entries: the same loss and gradients, cheaper at that size
(`python -m study.bench_heads` shows both sides of the switch).
"""
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from study.heads import register_head
from study.heads.base import Head
from study.heads.trees import create_tree

DENSE_NODES_PER_LEVEL = 64  # train by one dense matmul while internal nodes <= this x tree depth


class TreeIndex:
    """Integer arrays describing a Tree, precomputed once for gathers on the device."""

    def __init__(self, tree, num_classes: int):
        self.num_nodes = len(tree.children)
        self.width = max(len(kids) for kids in tree.children)  # padded branching
        self.child_valid = np.zeros((self.num_nodes, self.width), dtype=bool)
        for node, kids in enumerate(tree.children):
            self.child_valid[node, : len(kids)] = True
        # Root-to-leaf paths, padded to the deepest leaf: (node, child slot) per step.
        paths = {}
        levels = [[(0, -1, -1)]]  # per depth: (child id, parent position in previous level, flat edge index)
        while True:
            level = []
            for pos, (node, _, _) in enumerate(levels[-1]):
                if node < 0:
                    continue
                for slot, child in enumerate(tree.children[node]):
                    level.append((child, pos, node * self.width + slot))
            if not level:
                break
            levels.append(level)
        self.levels = levels
        parent_path = {0: []}
        for level in levels[1:]:
            for child, _, edge in level:
                node, slot = divmod(edge, self.width)
                path = parent_path[node] + [(node, slot)]
                if child >= 0:
                    parent_path[child] = path
                else:
                    paths[-child - 1] = path
        depth = max(len(p) for p in paths.values())
        self.path_nodes = np.zeros((num_classes, depth), dtype=np.int64)
        self.path_slots = np.zeros((num_classes, depth), dtype=np.int64)
        self.path_valid = np.zeros((num_classes, depth), dtype=bool)
        for k, path in paths.items():
            for step, (node, slot) in enumerate(path):
                self.path_nodes[k, step], self.path_slots[k, step], self.path_valid[k, step] = node, slot, True


@register_head("hierarchical")
class HierarchicalSoftmaxHead(Head):
    train_cost = "O(d * depth * branching)"
    infer_cost = "O(Kd)"

    def __init__(self, in_features, num_classes, class_info=None, layout: str = "balanced", branching: int = 2):
        super().__init__(in_features, num_classes, class_info)
        self.layout, self.branching = layout, int(branching)
        self.tree = create_tree(layout, self.class_info, self.branching)
        index = TreeIndex(self.tree, num_classes)
        self.num_nodes, self.width = index.num_nodes, index.width
        self.weight = nn.Parameter(torch.empty(index.num_nodes, index.width, in_features))
        self.bias = nn.Parameter(torch.zeros(index.num_nodes, index.width))
        nn.init.normal_(self.weight, std=in_features ** -0.5)
        as_buffer = lambda name, array: self.register_buffer(name, torch.as_tensor(array), persistent=False)
        as_buffer("child_valid", index.child_valid)
        as_buffer("path_nodes", index.path_nodes)
        as_buffer("path_slots", index.path_slots)
        as_buffer("path_valid", index.path_valid)
        # Top-down accumulation: for each level, where each entry's parent sits in the previous level, and which
        # flat edge (node * width + slot) leads to it. Leaves are then picked out of the concatenated levels.
        self.level_sizes = [len(level) for level in index.levels]
        as_buffer("level_parent", np.array([p for lvl in index.levels[1:] for _, p, _ in lvl], dtype=np.int64))
        as_buffer("level_edge", np.array([e for lvl in index.levels[1:] for _, _, e in lvl], dtype=np.int64))
        flat = [c for lvl in index.levels for c, _, _ in lvl]
        leaf_position = np.zeros(num_classes, dtype=np.int64)
        for position, child in enumerate(flat):
            if child < 0:
                leaf_position[-child - 1] = position
        as_buffer("leaf_position", leaf_position)
        self.dense_training = index.num_nodes <= DENSE_NODES_PER_LEVEL * index.path_nodes.shape[1]

    def loss(self, h, y):
        if self.dense_training:
            edges = self.path_nodes[y] * self.width + self.path_slots[y]  # [B, depth] flat edge ids
            chosen = self.branch_log_probs(h).gather(1, edges)
            return -(chosen * self.path_valid[y]).sum(dim=1).mean()
        nodes, slots, valid = self.path_nodes[y], self.path_slots[y], self.path_valid[y]  # [B, depth]
        logits = torch.einsum("bd,blcd->blc", h, self.weight[nodes].to(h.dtype)).float() + self.bias[nodes]
        logits = logits.masked_fill(~self.child_valid[nodes], float("-inf"))
        chosen = F.log_softmax(logits, dim=-1).gather(-1, slots[..., None]).squeeze(-1)
        return -(chosen * valid).sum(dim=1).mean()

    def branch_log_probs(self, h):
        """[B, nodes * width] log-probability of each edge given its parent node (padding edges: -inf)."""
        logits = (h @ self.weight.view(-1, self.in_features).t().to(h.dtype)).float()
        logits = logits.view(-1, self.num_nodes, self.width) + self.bias
        logits = logits.masked_fill(~self.child_valid, float("-inf"))
        return F.log_softmax(logits, dim=-1).flatten(1)

    def log_probs(self, h):
        edges = self.branch_log_probs(h)
        levels = [edges.new_zeros(h.shape[0], 1)]  # the root: log 1
        start = 0
        for size in self.level_sizes[1:]:
            parent = self.level_parent[start: start + size]
            edge = self.level_edge[start: start + size]
            levels.append(levels[-1][:, parent] + edges[:, edge])
            start += size
        return torch.cat(levels, dim=1)[:, self.leaf_position]
