"""Standard softmax: cross-entropy on logits, with log-softmax fused into the loss (numerically stable)."""
import torch.nn.functional as F

from study.errors import ConfigError
from study.heads import register_head
from study.heads.base import LinearHead


@register_head("softmax")
class SoftmaxHead(LinearHead):
    train_cost = "O(Kd)"
    infer_cost = "O(Kd)"

    def __init__(self, in_features, num_classes, class_info=None, label_smoothing: float = 0.0):
        super().__init__(in_features, num_classes, class_info)
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing={label_smoothing} is out of range; choose a value in [0, 1)")
        self.label_smoothing = label_smoothing

    def loss(self, h, y):
        return F.cross_entropy(self.linear(h), y, label_smoothing=self.label_smoothing)

    def log_probs(self, h):
        return F.log_softmax(self.linear(h).float(), dim=-1)
