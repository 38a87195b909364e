"""Gumbel-softmax: train on softmax((z + g) / tau) with Gumbel noise g; evaluate on the clean logits.

Soft mode minimises -log of the relaxed sample's target probability. Hard mode uses the straight-through
estimator: the forward pass sees the one-hot sample, so the loss value is the sample's 0/1 error, while the
gradient flows through the relaxed sample's target probability. Noise is drawn only in training, so evaluation is
deterministic. With `tau_final` the temperature anneals geometrically from `tau` to `tau_final` over the epochs.
"""
import torch
import torch.nn.functional as F

from study.errors import ConfigError
from study.heads import register_head
from study.heads.base import LinearHead


@register_head("gumbel")
class GumbelSoftmaxHead(LinearHead):
    train_cost = "O(Kd)"
    infer_cost = "O(Kd)"

    def __init__(self, in_features, num_classes, class_info=None,
                 tau: float = 1.0, tau_final: float = None, hard: bool = False):
        super().__init__(in_features, num_classes, class_info)
        for name, value in (("tau", tau), ("tau_final", tau_final)):
            if value is not None and not value > 0:
                raise ConfigError(f"{name}={value} must be > 0 for the gumbel head")
        self.tau_start, self.tau_final, self.hard = float(tau), tau_final, bool(hard)
        self.tau = self.tau_start

    def on_epoch_start(self, epoch, num_epochs):
        if self.tau_final is not None and num_epochs > 1:
            progress = epoch / (num_epochs - 1)
            self.tau = self.tau_start * (self.tau_final / self.tau_start) ** progress

    def loss(self, h, y):
        logits = self.linear(h).float()
        # -log(-log U) with U ~ Uniform(0,1); exponential_ gives -log U directly and never returns 0.
        gumbel = -torch.empty_like(logits).exponential_().log()
        log_soft = F.log_softmax((logits + gumbel) / self.tau, dim=-1)
        if not self.hard:
            return F.nll_loss(log_soft, y)
        soft = log_soft.exp()
        one_hot = F.one_hot(soft.argmax(dim=-1), self.num_classes).to(soft.dtype)
        straight_through = one_hot - soft.detach() + soft
        return (1.0 - straight_through.gather(1, y[:, None])).mean()

    def log_probs(self, h):
        return F.log_softmax(self.linear(h).float() / self.tau, dim=-1)
