"""Hierarchical softmax: p(class) = product of branch probabilities along its root-to-leaf path in a tree.

Each internal node owns a small softmax over its (at most `branching`) children. Training touches only the nodes
on the target's path: O(d * depth * branching) per example instead of O(d * K). Full inference computes every
node's branch log-probabilities once, then accumulates them top-down, one tree level at a time.

A node's softmax is parametrised by branching - 1 free logits: the first child's logit is fixed at 0. Softmax does
not change when a constant is added to every logit, so this is the same family of distributions with no redundant
weights; for binary trees it is the classic one-vector-per-node form (log p = log sigmoid(+-z)), and it halves the
weights that training gathers.

Gathering each example's path weights is memory-bound, while one matmul over all nodes is compute-bound and fast.
So for small trees (at most DENSE_NODES_PER_LEVEL internal nodes per tree level: binary trees up to K ~ 1,000)
training scores every node with one matmul and picks the path entries, and inference (while also K <= d) multiplies
the edge log-probabilities by a 0/1 class-by-edge path matrix: the same loss, gradients and log-probabilities,
cheaper at that size (`python -m study.bench.heads` shows both sides of the switch).
"""
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from study.heads import register_head
from study.heads.base import Head
from study.heads.trees import create_tree

# Dense matmuls while internal nodes <= this x tree depth. On 2 CPU cores (d = 640, batch 512) the dense training step
# took 18.3 ms against the path gather's 29.5 ms at K = 1,000 (999 nodes, depth 10), and 43.2 against 28.3 ms at
# K = 2,000 (1,999 nodes, depth 11), each path forced in turn (BENCHMARKS.md); not yet measured on a GPU.
DENSE_NODES_PER_LEVEL = 128
ABSENT_CHILD_LOGIT = -1e30  # added to padding slots: finite, so 0 x it stays 0, yet its probability is exactly 0


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
    infer_cost = "O(Kd)"

    def __init__(self, in_features, num_classes, class_info=None, layout: str = "balanced", branching: int = 2):
        super().__init__(in_features, num_classes, class_info)
        self.layout, self.branching = layout, int(branching)
        self.tree = create_tree(layout, self.class_info, self.branching)
        index = TreeIndex(self.tree, num_classes)
        self.num_nodes, self.width = index.num_nodes, index.width
        # Free logits of children 1 .. width-1 of each node (child 0's logit is 0). Every tree of K >= 2 classes
        # has a node with two children or more, so width >= 2.
        self.weight = nn.Parameter(torch.empty(index.num_nodes, index.width - 1, in_features))
        self.bias = nn.Parameter(torch.zeros(index.num_nodes, index.width - 1))
        nn.init.normal_(self.weight, std=in_features ** -0.5)
        def as_buffer(name, array):
            self.register_buffer(name, torch.as_tensor(array), persistent=False)

        as_buffer("absent", np.where(index.child_valid[:, 1:], 0.0, ABSENT_CHILD_LOGIT).astype(np.float32))
        # Each class's path as flat edge ids (node * width + slot); padding steps are masked by path_valid.
        as_buffer("path_nodes", index.path_nodes)
        as_buffer("path_slots", index.path_slots)
        as_buffer("path_valid", index.path_valid)
        path_edges = index.path_nodes * self.width + index.path_slots
        as_buffer("path_edges", path_edges)
        self.dense = index.num_nodes <= DENSE_NODES_PER_LEVEL * index.path_nodes.shape[1]
        # Declared per instance: a small tree's dense training scores every node, O(Kd), not only the path.
        self.train_cost = ("O(Kd), dense: every node scored by one matmul" if self.dense
                           else "O(d * depth * branching)")
        # Multiplying by the class matrix costs K/d times the node scoring matmul: worth it while K <= d.
        self.matrix_inference = self.dense and num_classes <= in_features
        if self.dense:  # [K, edges] 0/1: class k's log-probability is the sum of its path's edge log-probabilities
            matrix = np.zeros((num_classes, index.num_nodes * self.width), dtype=np.float32)
            matrix[np.nonzero(index.path_valid)[0], path_edges[index.path_valid]] = 1.0
            as_buffer("class_edges", matrix)
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

    def branch_log_probs(self, free_logits):
        """[..., width] log-probability of each child given its node, from [..., width - 1] free logits with the
        padding offsets already added. Binary nodes take the closed form log sigmoid(+-z)."""
        if self.width == 2:
            z = free_logits[..., 0]
            return torch.stack((F.logsigmoid(-z), F.logsigmoid(z)), dim=-1)
        return F.log_softmax(F.pad(free_logits, (1, 0)), dim=-1)

    def edge_log_probs(self, h):
        """[B, nodes * width]: every node's branch log-probabilities, from one matmul."""
        logits = (h @ self.weight.view(-1, self.in_features).t().to(h.dtype)).float()
        logits = logits.view(h.shape[0], self.num_nodes, -1) + (self.bias + self.absent)
        return self.branch_log_probs(logits).flatten(1)

    def loss(self, h, y):
        valid = self.path_valid[y]  # [B, depth]
        if self.dense:
            chosen = self.edge_log_probs(h).gather(1, self.path_edges[y])
        else:  # gather only the path nodes' weights
            nodes = self.path_nodes[y]
            logits = torch.einsum("bd,blcd->blc", h, self.weight[nodes].to(h.dtype)).float()
            logits = logits + (self.bias[nodes] + self.absent[nodes])
            chosen = self.branch_log_probs(logits).gather(-1, self.path_slots[y][..., None]).squeeze(-1)
        return -(chosen * valid).sum(dim=1).mean()

    def log_probs(self, h):
        edges = self.edge_log_probs(h)
        if self.matrix_inference:
            with torch.autocast(h.device.type, enabled=False):  # sums of log-probabilities: keep fp32
                return edges @ self.class_edges.t()
        levels = [edges.new_zeros(h.shape[0], 1)]  # the root: log 1
        start = 0
        for size in self.level_sizes[1:]:
            parent = self.level_parent[start: start + size]
            edge = self.level_edge[start: start + size]
            levels.append(levels[-1][:, parent] + edges[:, edge])
            start += size
        return torch.cat(levels, dim=1)[:, self.leaf_position]
