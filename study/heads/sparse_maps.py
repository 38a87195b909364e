"""Sparsemax and alpha-entmax (by bisection) and their Fenchel-Young losses: the entmax package's algorithms,
thresholds, renormalisation and gradients, with the two steps that dominate them on a CPU made cheap.

- Sparsemax sorts each row's K scores to find its threshold. torch's CPU sort along a short last dimension is slow
  (about 2.1 ms for 512 x 100 floats on one core, where NumPy's takes 0.13 ms: BENCHMARKS.md, "A frozen epoch of
  the sparse heads and of Gumbel"), so on a CPU the scores are sorted with NumPy; the sorted values, and so every
  result, are the same.
- Entmax's bisection evaluates p = max(s - tau, 0) ** q, q = 1 / (alpha - 1), over the K scores in each halving.
  torch's `pow` is the slow part of that on a CPU (about 0.19 ms for 512 x 100 floats, four times exp(q * log t)),
  so each halving computes exp(q * log t) in reused buffers. For float32 this adds a relative error of about
  |q log t| * 2^-24 to each unnormalised probability; the tests hold the results to the package's own, in float64.

alpha is a fixed hyperparameter here (a float in (1, 2]; 2 is sparsemax): no gradient with respect to it.
"""
import math
from typing import Optional

import numpy as np
import torch
from torch.autograd import Function

LOG_FLOOR = -80.0  # e^-80 is about 1.8e-35: a normal float32, far above its underflow


def sorted_descending(scores: torch.Tensor, with_numpy: Optional[bool] = None) -> torch.Tensor:
    """Each row of scores [N, K] sorted from the largest down: by NumPy on a CPU, by torch elsewhere (with_numpy
    None), or as asked."""
    if with_numpy is None:
        with_numpy = scores.device.type == "cpu"
    if not with_numpy:
        return torch.sort(scores, dim=-1, descending=True).values
    ascending = np.sort(scores.detach().numpy(), axis=-1)
    return torch.from_numpy(np.ascontiguousarray(ascending[:, ::-1]))


def sparsemax_probs(z: torch.Tensor) -> torch.Tensor:
    """Sparsemax [N, K] of z [N, K]: max(z - tau, 0) with tau from the sorted scores (Martins & Astudillo 2016,
    Algorithm 1): the support is the k largest scores for the largest k with 1 + k z_(k) > z_(1) + ... + z_(k)."""
    z = z - z.max(dim=-1, keepdim=True).values  # as the package: the scores' scale near 0
    ranked = sorted_descending(z)
    cumulative = ranked.cumsum(dim=-1) - 1
    ranks = torch.arange(1, z.shape[-1] + 1, dtype=z.dtype, device=z.device)
    support = (ranks * ranked > cumulative).sum(dim=-1, keepdim=True)
    tau = cumulative.gather(-1, support - 1) / support.to(z.dtype)
    return torch.clamp(z - tau, min=0)


def entmax_threshold_search(z: torch.Tensor, alpha: float, halvings: int) -> torch.Tensor:
    """Probabilities [N, K] of alpha-entmax over the last dimension of z [N, K], by `halvings` halvings of the
    threshold's bracket, renormalised to sum to 1."""
    q = 1.0 / (alpha - 1.0)
    scaled = z * (alpha - 1.0)
    top = scaled.max(dim=-1, keepdim=True).values
    # The threshold lies between the top score minus 1 (the top class alone would have probability 1) and the top
    # score minus (1/K) ** (alpha - 1) (every class at 1/K): the package's bracket.
    low = top - 1.0
    width = (top - (1.0 / z.shape[-1]) ** (alpha - 1.0)) - low
    # Inside the loop only each row's sum matters. Scores at or below the threshold are floored so that q * log(t)
    # stays >= LOG_FLOOR: their terms, at most K * e^-80, cannot move a sum compared with 1, and neither log(0) nor
    # an exp that underflows is evaluated (each runs 10 to 50 times slower than a finite one on a CPU).
    floor = math.exp(LOG_FLOOR / q)
    p = torch.empty_like(scaled)
    for _ in range(halvings):
        width = width / 2
        middle = low + width
        torch.sub(scaled, middle, out=p)
        p.clamp_(min=floor).log_().mul_(q).exp_()  # max(scaled - middle, 0) ** q, floored
        low = torch.where(p.sum(dim=-1, keepdim=True) >= 1, middle, low)
    p = torch.where(scaled > middle, p, torch.zeros((), dtype=p.dtype))  # the last halving's, with exact zeros
    return p / p.sum(dim=-1, keepdim=True)


def project(z: torch.Tensor, alpha: float, halvings: Optional[int]) -> torch.Tensor:
    """alpha-entmax of z by bisection, or sparsemax by sorting (halvings None, alpha 2)."""
    return sparsemax_probs(z) if halvings is None else entmax_threshold_search(z, alpha, halvings)


class SparseMap(Function):
    """alpha-entmax as an autograd function; backward is the package's: with g = p ** (2 - alpha) on the support
    (1 there for sparsemax), dz = g * dp - g * sum(g * dp) / sum(g)."""

    @staticmethod
    def forward(ctx, z, alpha: float, halvings: int):
        p = project(z, alpha, halvings)
        ctx.save_for_backward(p)
        ctx.alpha = alpha
        return p

    @staticmethod
    def backward(ctx, grad_p):
        p, = ctx.saved_tensors
        g = torch.where(p > 0, p ** (2 - ctx.alpha), torch.zeros_like(p))
        grad_z = grad_p * g
        grad_z -= g * (grad_z.sum(dim=-1, keepdim=True) / g.sum(dim=-1, keepdim=True))
        return grad_z, None, None


class FenchelYoungLoss(Function):
    """The alpha-entmax loss (Fenchel-Young with the Tsallis alpha-entropy; sparsemax's at alpha = 2), per row:
    (1 - sum p ** alpha) / (alpha (alpha - 1)) + <p - e_y, z>, whose gradient in z is p - e_y."""

    @staticmethod
    def forward(ctx, z, target, alpha: float, halvings: int):
        p = project(z, alpha, halvings)
        loss = (1 - (p ** alpha).sum(dim=1)) / (alpha * (alpha - 1))
        p.scatter_add_(1, target.unsqueeze(1), torch.full_like(p, -1))  # p - e_y
        loss += (p * z).sum(dim=1)
        ctx.save_for_backward(p)
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        p_minus_target, = ctx.saved_tensors
        return grad_loss.unsqueeze(1) * p_minus_target, None, None, None


def entmax_bisect(z: torch.Tensor, alpha: float, halvings: int) -> torch.Tensor:
    return SparseMap.apply(z, alpha, halvings)


def entmax_bisect_loss(z: torch.Tensor, target: torch.Tensor, alpha: float, halvings: int) -> torch.Tensor:
    """Per-row losses [N]."""
    return FenchelYoungLoss.apply(z, target, alpha, halvings)


def sparsemax(z: torch.Tensor) -> torch.Tensor:
    return SparseMap.apply(z, 2.0, None)


def sparsemax_loss(z: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-row losses [N]."""
    return FenchelYoungLoss.apply(z, target, 2.0, None)
