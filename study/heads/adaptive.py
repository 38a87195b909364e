"""Adaptive softmax (Grave et al. 2017) via torch.nn.AdaptiveLogSoftmaxWithLoss.

The first `head_fraction` of class ids sit in the head; the rest are split evenly into `num_clusters` tail
clusters, each reached through one head slot and projected to d / div_value^i dimensions. Class ids are taken in
index order: it pays off when frequent classes come first (CIFAR-100 is balanced, so here it is a cost study).
"""
import torch
from torch import nn

from study.errors import ConfigError
from study.heads import register_head
from study.heads.base import Head


def adaptive_cutoffs(num_classes: int, head_fraction: float, num_clusters: int):
    """Cutoffs for torch: [head size, start of tail 2, ...]; tails split the remaining ids evenly. Values that
    leave the head or a tail cluster empty are refused, never adjusted."""
    first = round(num_classes * head_fraction)
    if not 1 <= first <= num_classes - 1:
        raise ConfigError(f"head_fraction={head_fraction} puts round({num_classes} x {head_fraction}) = {first} "
                          f"classes in the adaptive head; it needs 1 to {num_classes - 1}")
    rest = num_classes - first
    if num_clusters > rest:
        raise ConfigError(f"num_clusters={num_clusters} is more tail clusters than the {rest} tail classes "
                          f"(head_fraction={head_fraction} of {num_classes}); use at most {rest}")
    return [first + (rest * i) // num_clusters for i in range(num_clusters)]


@register_head("adaptive")
class AdaptiveSoftmaxHead(Head):
    train_cost = "O(d (K_head + cluster))"
    infer_cost = "O(Kd / div_value)"

    def __init__(self, in_features, num_classes, class_info=None,
                 head_fraction: float = 0.2, num_clusters: int = 2, div_value: float = 4.0):
        super().__init__(in_features, num_classes, class_info)
        if not 0 < head_fraction < 1:
            raise ConfigError(f"head_fraction={head_fraction} is out of range; choose a value in (0, 1)")
        if num_clusters < 1 or div_value < 1:
            raise ConfigError(f"num_clusters={num_clusters}, div_value={div_value}: both must be >= 1")
        if num_classes < 2 or in_features // div_value ** num_clusters < 1:
            raise ConfigError(f"adaptive head: {num_clusters} clusters with div_value={div_value} leave no "
                              f"dimensions of the {in_features} features; use fewer clusters or a smaller div_value")
        self.cutoffs = adaptive_cutoffs(num_classes, head_fraction, num_clusters)
        self.adaptive = nn.AdaptiveLogSoftmaxWithLoss(in_features, num_classes, self.cutoffs, div_value=div_value)

    # In fp32 even under autocast: torch's module copies the tail clusters' rows (index_copy_) into an output of
    # the input's dtype, which fails when autocast computes those rows in bf16, as a GPU run does.
    def loss(self, h, y):
        with torch.autocast(h.device.type, enabled=False):
            return self.adaptive(h.float(), y).loss

    def log_probs(self, h):
        with torch.autocast(h.device.type, enabled=False):
            return self.adaptive.log_prob(h.float())

    def predict(self, h):
        with torch.autocast(h.device.type, enabled=False):
            return self.adaptive.predict(h.float())
