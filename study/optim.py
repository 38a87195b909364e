"""Optimizer with weight decay on weights only, and a per-step learning-rate schedule."""
import math

import torch
from torch import nn

from study.config import OptimConfig


def is_decayed(name: str, parameter: nn.Parameter) -> bool:
    """Conv/linear weights are decayed; norm scales (1-D) and every bias are not, whatever its shape (the
    bias of a head may be any shape): decaying them only hurts, and every head is treated alike."""
    return parameter.ndim >= 2 and name.rpartition(".")[2] != "bias"


def parameter_groups(model: nn.Module, weight_decay: float):
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in named if is_decayed(n, p)]
    no_decay = [p for n, p in named if not is_decayed(n, p)]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """SGD (Nesterov) or AdamW over parameter_groups. On the CPU, torch's fused kernel: the same update in one
    pass over all parameters instead of one small operation per parameter and term (with one gather of the batches
    an epoch, the frozen epoch outside the head's own step took 0.73-0.95 of its time before: BENCHMARKS.md, "A
    frozen epoch's per-step overhead"); elsewhere torch's default."""
    groups = parameter_groups(model, cfg.weight_decay)
    fused = {"fused": True} if all(p.device.type == "cpu" for g in groups for p in g["params"]) else {}
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True, **fused)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.momentum, 0.999), **fused)


def lr_factor(step: int, total_steps: int, cfg: OptimConfig) -> float:
    """Multiplier of the peak lr at a step: linear warm-up, then linear (onecycle) or cosine decay to 0."""
    warmup = int(cfg.warmup_fraction * total_steps)
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total_steps - warmup)
    if cfg.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    return max(0.0, 1 - progress)


def build_scheduler(optimizer, total_steps: int, cfg: OptimConfig):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total_steps, cfg))
