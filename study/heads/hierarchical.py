"""Hierarchical softmax: p(class) = product of branch probabilities along its root-to-leaf path in a tree.

Each internal node owns a small softmax over its children. Training touches only the nodes on the target's path:
O(d * depth * branching) per example instead of O(d * K). Full inference computes every node's branch
log-probabilities once, then sums them along each class's path.

A node with c children is parametrised by c - 1 free logits: the first child's logit is fixed at 0. Softmax does
not change when a constant is added to every logit, so this is the same family of distributions with no redundant
weights; a binary node is the classic one vector and log sigmoid(+-z). The free logits of all nodes are one flat
table, `weight` [K - 1, d] and `bias` [K - 1], grouped by node (TreeIndex gives the order): summed over the nodes,
c - 1 is (edges) - (nodes) = K - 1 for every tree (each node but the root, and each leaf, has exactly one parent
edge). No node is padded to the widest node's branching, so a tree of uneven nodes (the coarse layout: a root of 20
superclasses, each of 5 classes) costs as many weights and logits as a binary tree over the same K.

A node's log-partition log(1 + sum of exp(its free logits)) (the 1 is the fixed child's exp(0)) is taken in fp32:
for all nodes at once, one log-sum-exp per group of nodes with the same number of children (edge_log_probs: their
rows are contiguous); on a path, a segment log-sum-exp over the rows the path gathers (log_partition).

Gathering each example's path weights is memory-bound, while one matmul over all K - 1 rows is compute-bound and
fast. So for small trees (DENSE_EDGES_PER_PATH_EDGE) training scores every row with one matmul and picks the path
entries, and inference (while also K <= d) multiplies the edge log-probabilities by a 0/1 class-by-edge path matrix:
the same loss, gradients and log-probabilities, cheaper at that size (`python -m study.bench.heads` shows both
sides of the switch).
"""
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from study.heads import register_head
from study.heads.base import Head
from study.heads.trees import create_tree, describe as describe_layout

# Dense matmuls while the tree's K - 1 free rows <= this x the free rows one example's path gathers (for a binary
# tree: internal nodes <= this x depth). On 2 CPU cores (d = 640, batch 512) the dense training step took 18.3 ms
# against the path gather's 29.5 ms at K = 1,000 (999 nodes, depth 10), and 43.2 against 28.3 ms at K = 2,000
# (1,999 nodes, depth 11), each path forced in turn (BENCHMARKS.md). Those were binary trees, which the earlier
# padded layout did not pad, timed before the segment log-sum-exp replaced log sigmoid; not re-measured since, nor
# yet on a GPU.
DENSE_EDGES_PER_PATH_EDGE = 128


class TreeIndex:
    """Integer arrays describing a Tree, precomputed once for gathers on the device.

    Edge columns: the `num_free` (= K - 1) free edges are columns 0 .. num_free - 1, in the order of the parameter
    rows (node by node in width-group order, children 1, 2, ...); each node's fixed child 0 is column
    num_free + position[node]."""

    def __init__(self, tree, num_classes: int):
        kids = tree.children
        self.num_nodes = len(kids)
        free_counts = np.array([len(c) - 1 for c in kids], dtype=np.int64)  # 0 for a node with one child
        # Rows are grouped by node width: all nodes with one free row first, then two, ... (node order within a
        # group), and nodes with a single child (no free row) last. Each group is then one contiguous [B, n, c]
        # view of the logits, whose log-sum-exp needs no gather and no scatter (edge_log_probs). A binary tree is
        # one group in node order. `position[node]` is the node's place in that order.
        order = sorted(range(self.num_nodes), key=lambda n: (free_counts[n] == 0, free_counts[n], n))
        self.position = np.argsort(order)
        self.free_start = np.zeros(self.num_nodes, dtype=np.int64)
        self.free_start[order] = np.concatenate(([0], np.cumsum(free_counts[order])[:-1]))
        self.num_free = int(free_counts.sum())
        self.width_groups = [(int(c), int((free_counts == c).sum())) for c in sorted(set(free_counts.tolist()) - {0})]
        self.num_single = int((free_counts == 0).sum())

        def column(node, slot):
            return self.num_free + int(self.position[node]) if slot == 0 else int(self.free_start[node]) + slot - 1

        levels = [[(0, -1, -1)]]  # per depth: (child id, parent position in previous level, edge column)
        paths = {0: []}  # node or leaf id -> its root-to-it path as (node, child slot) steps
        while True:
            level = []
            for pos, (node, _, _) in enumerate(levels[-1]):
                for slot, child in enumerate(kids[node] if node >= 0 else []):
                    level.append((child, pos, column(node, slot)))
                    paths[child] = paths[node] + [(node, slot)]
            if not level:
                break
            levels.append(level)
        self.levels = levels
        paths = [paths[-k - 1] for k in range(num_classes)]
        self.depth = max(len(p) for p in paths)
        # Dense mode: each class's path as edge columns, padded to the deepest leaf (padding masked by path_valid).
        self.path_edges = np.zeros((num_classes, self.depth), dtype=np.int64)
        self.path_valid = np.zeros((num_classes, self.depth), dtype=bool)
        # Path mode: the free rows of every node on each class's path, the path step each row belongs to, and 1.0
        # on the one row the path takes (none where it takes a fixed child 0). Padded to the longest such list:
        # padding reads row 0 into step `depth`, a spare segment dropped after the log-partition.
        rows = [[r for node, _ in p for r in range(self.free_start[node], self.free_start[node] + free_counts[node])]
                for p in paths]
        width = max(len(r) for r in rows)
        self.path_rows = np.zeros((num_classes, width), dtype=np.int64)
        self.path_row_step = np.full((num_classes, width), self.depth, dtype=np.int64)
        self.path_row_taken = np.zeros((num_classes, width), dtype=np.float32)
        for k, path in enumerate(paths):
            self.path_rows[k, : len(rows[k])] = rows[k]
            self.path_row_step[k, : len(rows[k])] = [step for step, (n, _) in enumerate(path)
                                                     for _ in range(free_counts[n])]
            for step, (node, slot) in enumerate(path):
                self.path_edges[k, step], self.path_valid[k, step] = column(node, slot), True
                if slot > 0:
                    self.path_row_taken[k, rows[k].index(column(node, slot))] = 1.0


def log_partition(z, segment, num_segments):
    """[B, S] log(1 + sum over the entries e of segment s of exp(z_e)), from logits z [B, E] (fp32) and segment ids
    [B, E]. The 1 is a node's fixed child, exp(0). Subtracting each segment's max (at least that 0) keeps every exp
    <= 1; the max is only a shift, so no gradient flows through it. A segment with no entries gets log 1 = 0."""
    with torch.no_grad():
        top = z.new_zeros(z.shape[0], num_segments).scatter_reduce(1, segment, z, "amax")
    total = torch.exp(-top).scatter_add(1, segment, torch.exp(z - top.gather(1, segment)))
    return top + torch.log(total)


@register_head("hierarchical")
class HierarchicalSoftmaxHead(Head):
    infer_cost = "O(Kd)"

    def __init__(self, in_features, num_classes, class_info=None, layout: str = "balanced", branching: int = 2):
        super().__init__(in_features, num_classes, class_info)
        self.layout, self.branching = layout, int(branching)
        self.tree = create_tree(layout, self.class_info, self.branching)
        self.layout_description = describe_layout(layout, self.tree)  # e.g. "clustered (3 of 12 groups split ...)"
        index = TreeIndex(self.tree, num_classes)
        self.num_nodes, self.num_free, self.depth = index.num_nodes, index.num_free, index.depth
        # The free logits (children 1, 2, ... of each node, node by node; child 0's logit is 0): K - 1 rows.
        self.weight = nn.Parameter(torch.empty(index.num_free, in_features))
        self.bias = nn.Parameter(torch.zeros(index.num_free))
        nn.init.normal_(self.weight, std=in_features ** -0.5)

        def as_buffer(name, array):
            self.register_buffer(name, torch.as_tensor(array), persistent=False)

        self.width_groups, self.num_single = index.width_groups, index.num_single
        as_buffer("path_edges", index.path_edges)
        as_buffer("path_valid", index.path_valid)
        as_buffer("path_rows", index.path_rows)
        as_buffer("path_row_step", index.path_row_step)
        as_buffer("path_row_taken", index.path_row_taken)
        self.dense = index.num_free <= DENSE_EDGES_PER_PATH_EDGE * index.path_rows.shape[1]
        # Declared per instance: a small tree's dense training scores every free row, O(Kd), not only the path.
        self.train_cost = ("O(Kd), dense: every free edge scored by one matmul" if self.dense
                           else "O(d * depth * branching)")
        # Multiplying by the class matrix costs K/d times the node scoring matmul: worth it while K <= d.
        self.matrix_inference = self.dense and num_classes <= in_features
        if self.dense:  # [K, edges] 0/1: class k's log-probability is the sum of its path's edge log-probabilities
            matrix = np.zeros((num_classes, index.num_free + index.num_nodes), dtype=np.float32)
            matrix[np.nonzero(index.path_valid)[0], index.path_edges[index.path_valid]] = 1.0
            as_buffer("class_edges", matrix)
        # Top-down accumulation: for each level, where each entry's parent sits in the previous level, and which
        # edge column leads to it. Leaves are then picked out of the concatenated levels.
        self.level_sizes = [len(level) for level in index.levels]
        as_buffer("level_parent", np.array([p for lvl in index.levels[1:] for _, p, _ in lvl], dtype=np.int64))
        as_buffer("level_edge", np.array([e for lvl in index.levels[1:] for _, _, e in lvl], dtype=np.int64))
        flat = [c for lvl in index.levels for c, _, _ in lvl]
        leaf_position = np.zeros(num_classes, dtype=np.int64)
        for position, child in enumerate(flat):
            if child < 0:
                leaf_position[-child - 1] = position
        as_buffer("leaf_position", leaf_position)

    def notes(self) -> list:
        return [f"tree layout {self.layout_description}"] if self.tree.note else []

    def edge_log_probs(self, h):
        """[B, K - 1 + nodes] log-probability of each edge given its node (columns as in TreeIndex), from one matmul:
        z - log Z(node) for the free edges, -log Z(node) for each node's fixed child. Nodes of equal width are
        contiguous rows, so each width group is one [B, n, c] view; c = 1 (binary nodes) is softplus."""
        z = (h @ self.weight.t().to(h.dtype)).float() + self.bias
        free, fixed, start = [], [], 0
        for width, count in self.width_groups:
            grouped = z[:, start: start + width * count].view(-1, count, width)
            log_z = (F.softplus(grouped[..., 0]) if width == 1
                     else torch.logsumexp(F.pad(grouped, (1, 0)), dim=-1))  # the pad is the fixed child's logit 0
            free.append((grouped - log_z[..., None]).flatten(1))
            fixed.append(-log_z)
            start += width * count
        fixed.append(z.new_zeros(z.shape[0], self.num_single))  # a one-child node passes its probability on
        return torch.cat(free + fixed, dim=1)

    def loss(self, h, y):
        if self.dense:
            chosen = self.edge_log_probs(h).gather(1, self.path_edges[y])
            return -(chosen * self.path_valid[y]).sum(dim=1).mean()
        rows = self.path_rows[y]  # [B, width]: gather only the free rows of the path's nodes
        z = torch.einsum("bd,bwd->bw", h, self.weight[rows].to(h.dtype)).float() + self.bias[rows]
        log_z = log_partition(z, self.path_row_step[y], self.depth + 1)[:, : self.depth]  # drop the padding's
        return -((z * self.path_row_taken[y]).sum(dim=1) - log_z.sum(dim=1)).mean()

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
