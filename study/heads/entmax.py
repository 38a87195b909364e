"""alpha-entmax (Peters et al. 2019): interpolates softmax (alpha -> 1) and sparsemax (alpha = 2).

Solved by bisection for any alpha in (1, 2]; alpha = 1.5 uses the exact sort-based entmax15.
"""
from entmax import entmax15, entmax15_loss, entmax_bisect, entmax_bisect_loss

from study.errors import ConfigError
from study.heads import register_head
from study.heads.base import LinearHead, log_of_sparse_probs


@register_head("entmax")
class EntmaxHead(LinearHead):
    train_cost = "O(Kd + K log K)"
    infer_cost = "O(Kd + K log K)"

    def __init__(self, in_features, num_classes, class_info=None, alpha: float = 1.5):
        super().__init__(in_features, num_classes, class_info)
        if not 1.0 < alpha <= 2.0:
            raise ConfigError(f"alpha={alpha} is out of range for the entmax head; choose a value in (1, 2]")
        self.alpha = float(alpha)

    def loss(self, h, y):
        z = self.linear(h).float()
        if self.alpha == 1.5:
            return entmax15_loss(z, y).mean()
        return entmax_bisect_loss(z, y, alpha=self.alpha).mean()

    def log_probs(self, h):
        z = self.linear(h).float()
        p = entmax15(z, dim=-1) if self.alpha == 1.5 else entmax_bisect(z, alpha=self.alpha, dim=-1)
        return log_of_sparse_probs(p)
