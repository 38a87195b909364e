"""alpha-entmax (Peters et al. 2019): interpolates softmax (alpha -> 1) and sparsemax (alpha = 2).

alpha = 1.5 uses the exact sort-based entmax15 (O(K log K)); any other alpha in (1, 2] is solved by bisection, a
fixed BISECTION_ITERATIONS halvings of the threshold interval, each a pass over the K scores: the entmax package's
algorithm, with a cheaper power in each halving (study/heads/sparse_maps.py).
"""
from entmax import entmax15, entmax15_loss

from study.errors import ConfigError
from study.heads import register_head
from study.heads.base import SparseHead, log_of_sparse_probs
from study.heads.sparse_maps import entmax_bisect, entmax_bisect_loss

# Halvings of the threshold's bracket (width at most 1). The entmax package's default is 50, but float32 resolves no
# more than about 2^-24 of a threshold: at K = 100, alpha in [1.1, 2] and logits of scale 0.1 to 20, 32 halvings
# and 50 give probabilities that differ from a float64 solution by the same float32 rounding (at most 5e-6), and
# tests/test_formulas.py checks that 100 more change nothing. Each halving is a pass over the K scores, so this is
# entmax's head time: 50 -> 32 (BENCHMARKS.md, "Entmax's bisection").
BISECTION_ITERATIONS = 32


@register_head("entmax")
class EntmaxHead(SparseHead):
    def __init__(self, in_features, num_classes, class_info=None, alpha: float = 1.5):
        super().__init__(in_features, num_classes, class_info)
        if not 1.0 < alpha <= 2.0:
            raise ConfigError(f"alpha={alpha} is out of range for the entmax head; choose a value in (1, 2]")
        self.alpha = float(alpha)
        self.exact = self.alpha == 1.5
        # Declared per instance: what runs depends on alpha.
        self.train_cost = self.infer_cost = ("O(Kd + K log K)" if self.exact else
                                             f"O(Kd + K * n_iter), bisection with n_iter = {BISECTION_ITERATIONS}")

    def loss(self, h, y):
        z = self.linear(h).float()
        if self.exact:
            return entmax15_loss(z, y).mean()
        return entmax_bisect_loss(z, y, self.alpha, BISECTION_ITERATIONS).mean()

    def log_probs(self, h):
        z = self.linear(h).float()
        p = entmax15(z, dim=-1) if self.exact else entmax_bisect(z, self.alpha, BISECTION_ITERATIONS)
        return log_of_sparse_probs(p)
