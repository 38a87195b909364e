"""Sampled softmax (Jean et al. 2015) with log-Q correction in training; exact full softmax at evaluation.

Each training step draws S negative classes (shared by the batch, with replacement) from a proposal Q, scores
only the targets and those S, and subtracts log(S * Q(c)) from every score so the sampled loss is a consistent
estimate of the full cross-entropy. A sampled class equal to an example's target is masked out (accidental hit).
"""
import math
from typing import Optional

import torch
import torch.nn.functional as F

from study.errors import ConfigError
from study.heads import register_head
from study.heads.base import LinearHead

PROPOSALS = ("uniform", "unigram")
DEFAULT_SAMPLED = 20  # negatives per step when num_sampled is not given (and K > 20)


@register_head("sampled")
class SampledSoftmaxHead(LinearHead):
    train_cost = "O(Sd)"
    infer_cost = "O(Kd)"

    def __init__(self, in_features, num_classes, class_info=None, num_sampled: Optional[int] = None,
                 proposal: str = "uniform"):
        super().__init__(in_features, num_classes, class_info)
        if proposal not in PROPOSALS:
            raise ConfigError(f"unknown proposal '{proposal}' for the sampled head; "
                              f"choose from: {', '.join(PROPOSALS)}")
        if num_sampled is None:  # not given: DEFAULT_SAMPLED, or every other class when there are fewer
            num_sampled = min(DEFAULT_SAMPLED, num_classes - 1)
        if num_sampled < 1:
            raise ConfigError(f"num_sampled={num_sampled} must be >= 1 for the sampled head")
        if num_sampled >= num_classes:  # more negatives than the other classes: used as given or refused
            raise ConfigError(f"num_sampled={num_sampled} must be below the {num_classes} classes (at most "
                              f"{num_classes - 1}) for the sampled head")
        self.num_sampled = int(num_sampled)
        counts = self.class_info.counts_or_uniform() if proposal == "unigram" else [1.0] * num_classes
        # A unigram proposal without class counts is the uniform one; notes() says so.
        self.uniform_for_unigram = proposal == "unigram" and self.class_info.class_counts is None
        q = torch.as_tensor(counts, dtype=torch.float32)
        self.register_buffer("proposal", q / q.sum(), persistent=False)

    def notes(self) -> list:
        if self.uniform_for_unigram:
            return ["proposal unigram without class counts: every class equally likely (the uniform proposal)"]
        return []

    def loss(self, h, y):
        sampled = torch.multinomial(self.proposal, self.num_sampled, replacement=True)  # [S]
        log_expected = torch.log(self.proposal * self.num_sampled)  # log(S * Q(c)), [K]
        weight, bias = self.linear.weight, self.linear.bias
        true_logits = (h * weight[y]).sum(-1).float() + bias[y] - log_expected[y]  # [B]
        sampled_logits = (h @ weight[sampled].t()).float() + bias[sampled] - log_expected[sampled]  # [B, S]
        sampled_logits = sampled_logits.masked_fill(sampled[None, :] == y[:, None], -math.inf)
        logits = torch.cat([true_logits[:, None], sampled_logits], dim=1)
        return F.cross_entropy(logits, torch.zeros_like(y))  # the target sits in column 0

    def log_probs(self, h):
        return F.log_softmax(self.linear(h).float(), dim=-1)
