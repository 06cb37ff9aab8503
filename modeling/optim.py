"""The optimizer of a training run: AdamW, and its warmup-then-cosine learning-rate schedule."""

from __future__ import annotations

import math
from typing import Protocol

import torch
from torch import nn


class OptimConfig(Protocol):
    """The fields of modeling.train.TrainConfig that the optimizer and schedule read."""

    lr: float
    min_lr: float
    warmup_steps: int
    max_steps: int
    weight_decay: float
    beta1: float
    beta2: float


def lr_at(step: int, config: OptimConfig) -> float:
    """Learning rate for optimizer step ``step`` (0-based): linear warmup, then cosine to min_lr.

    Args:
        step: the step about to be taken.
        config: the run config (lr, min_lr, warmup_steps, max_steps).

    Returns:
        The learning rate.
    """
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    span = max(1, config.max_steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1.0 + math.cos(math.pi * progress))


def make_optimizer(
    model: nn.Module, config: OptimConfig, device: torch.device
) -> torch.optim.AdamW:
    """AdamW with weight decay on 2-D parameters only (matrices and embeddings).

    Args:
        model: the model whose trainable parameters are optimised.
        config: lr, weight_decay, betas.
        device: where the parameters live.

    Returns:
        The optimizer: the fused implementation on CPU and CUDA (one kernel per parameter
        instead of a dozen elementwise ops; on CPU the for-loop AdamW took most of a small
        model's training step).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    extra = {"fused": True} if device.type in ("cpu", "cuda") else {}
    return torch.optim.AdamW(groups, lr=config.lr, betas=(config.beta1, config.beta2), **extra)
