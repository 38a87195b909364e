"""Softmax, then log, then NLL: the numerically fragile form, kept to show its failure mode.

`log(softmax(z))` computes exp(z_k - max z) / sum first. In fp32 any class whose logit trails the largest by more
than ~104 gets probability exactly 0 (below the smallest denormal, 1.4e-45), so its log is -inf. When that class is
the target the loss is +inf, and its gradient (-1/p times dp) is inf * 0 = NaN, which poisons every weight in one
step. `F.cross_entropy` uses log-softmax, z_k - logsumexp(z), which stays finite for any logit gap. Confident wrong
predictions with large logits (high learning rate, no weight decay) are exactly when the naive form breaks.
"""
import torch
import torch.nn.functional as F

from study.heads import register_head
from study.heads.base import LinearHead


@register_head("naive_softmax")
class NaiveSoftmaxHead(LinearHead):
    train_cost = "O(Kd)"
    infer_cost = "O(Kd)"

    def loss(self, h, y):
        probs = F.softmax(self.linear(h).float(), dim=-1)
        return F.nll_loss(torch.log(probs), y)  # deliberately not log_softmax: see module docstring

    def log_probs(self, h):
        # Evaluation uses the stable form: the pitfall under study is the training loss.
        return F.log_softmax(self.linear(h).float(), dim=-1)
