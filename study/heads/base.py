"""The interface every head implements: features h [B, d] -> a distribution over K classes, plus its own loss."""
import torch
from torch import nn

from study.class_info import ClassInfo


class Head(nn.Module):
    train_cost: str = "O(Kd)"  # declared cost of one training loss per example (d = feature width)
    infer_cost: str = "O(Kd)"  # declared cost of full inference (all K log-probabilities) per example

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

    def on_epoch_start(self, epoch: int, num_epochs: int) -> None:
        """Hook for heads with a schedule of their own (e.g. Gumbel temperature annealing)."""


class LinearHead(Head):
    """A head that scores every class with one linear layer. The default prediction is the argmax of those scores,
    right for every head whose probabilities rise with the score (softmax, sparsemax, entmax, ...)."""

    def __init__(self, in_features: int, num_classes: int, class_info: ClassInfo = None):
        super().__init__(in_features, num_classes, class_info)
        self.linear = nn.Linear(in_features, num_classes)

    def predict(self, h: torch.Tensor) -> torch.Tensor:
        return self.linear(h).argmax(dim=-1)


def log_of_sparse_probs(p: torch.Tensor) -> torch.Tensor:
    """log p for distributions with exact zeros (sparsemax/entmax).

    Zeros map to log(tiny) instead of -inf so NLL and argmax stay finite; the total mass added is K * 1e-30.
    """
    return torch.log(p.float().clamp_min(1e-30))
