"""The interface every head implements: features h [B, d] -> a distribution over K classes, plus its own loss."""
import torch
from torch import nn

from study.class_info import ClassInfo
from study.metrics import PROB_FLOOR


class Head(nn.Module):
    train_cost: str = "O(Kd)"  # declared cost of one training loss per example (d = feature width)
    infer_cost: str = "O(Kd)"  # declared cost of full inference (all K log-probabilities) per example
    # False for heads whose log-probabilities tie where the model still ranks classes (sparse heads' zeros): their
    # `scores` give the ranking that top-k and every saved prediction use.
    ranks_by_log_probs: bool = True

    def __init__(self, in_features: int, num_classes: int, class_info: ClassInfo = None):
        super().__init__()
        self.in_features = in_features
        self.num_classes = num_classes
        self.class_info = class_info or ClassInfo.uniform(num_classes)

    def loss(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean training objective over the batch; may avoid computing all K scores."""
        raise NotImplementedError

    def log_probs(self, h: torch.Tensor) -> torch.Tensor:
        """[B, K] normalised log-probabilities, for evaluation."""
        raise NotImplementedError

    def predict(self, h: torch.Tensor) -> torch.Tensor:
        """[B] class ids; heads with a cheaper argmax than full log_probs override this."""
        return self.log_probs(h).argmax(dim=-1)

    def scores(self, h: torch.Tensor) -> torch.Tensor:
        """[B, K] the model's ranking of the classes, highest first; never contradicts log_probs' order."""
        return self.log_probs(h)

    def on_epoch_start(self, epoch: int, num_epochs: int) -> None:
        """Hook for heads with a schedule of their own (e.g. Gumbel temperature annealing)."""

    def notes(self) -> list:
        """What this head built other than its knobs asked, one sentence each (e.g. a tree layout's groups that
        k-means could not split): printed by `python -m study.train` and listed in the analysis report."""
        return []


class LinearHead(Head):
    """A head that scores every class with one linear layer. The default prediction is the argmax of those scores,
    right for every head whose probabilities rise with the score (softmax, sparsemax, entmax, ...)."""

    def __init__(self, in_features: int, num_classes: int, class_info: ClassInfo = None):
        super().__init__(in_features, num_classes, class_info)
        self.linear = nn.Linear(in_features, num_classes)

    def predict(self, h: torch.Tensor) -> torch.Tensor:
        return self.linear(h).argmax(dim=-1)


class SparseHead(LinearHead):
    """A linear head whose probabilities are a monotone map of the logits with exact zeros (sparsemax, entmax):
    the logits rank the classes, including the many with probability 0."""
    ranks_by_log_probs = False

    def scores(self, h: torch.Tensor) -> torch.Tensor:
        return self.linear(h).float()


def log_of_sparse_probs(p: torch.Tensor) -> torch.Tensor:
    """log p for distributions with exact zeros (sparsemax/entmax), floored at the NLL's PROB_FLOOR for every head
    (study/metrics.py): zeros map to log(1e-12) instead of -inf; the total mass added is at most K * 1e-12."""
    return torch.log(p.float().clamp_min(PROB_FLOOR))
