"""Sparsemax (Martins & Astudillo 2016): Euclidean projection of the logits onto the simplex.

Low-scoring classes get probability exactly 0; the matching sparsemax loss is convex and finite even then.
Sorting the K logits makes it O(K log K) per example (study/heads/sparse_maps.py: the entmax package's algorithm,
sorted with NumPy on a CPU).
"""
from study.heads import register_head
from study.heads.base import SparseHead, log_of_sparse_probs
from study.heads.sparse_maps import sparsemax, sparsemax_loss


@register_head("sparsemax")
class SparsemaxHead(SparseHead):
    train_cost = "O(Kd + K log K)"
    infer_cost = "O(Kd + K log K)"

    def loss(self, h, y):
        return sparsemax_loss(self.linear(h).float(), y).mean()

    def log_probs(self, h):
        return log_of_sparse_probs(sparsemax(self.linear(h).float()))
