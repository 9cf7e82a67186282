"""What every engine shares: the stepper it builds, its learning rates and its optimiser.

A stepper runs `count` training steps from step `first`, in place on the weights it was
built with, and returns their losses (count, instances). The loop (training.py) calls it
CHUNK steps at a time and checks progress and early stop between calls; the compiled
engine records CHUNK steps as one CUDA graph.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from jaxtyping import Float
from torch import Tensor

from ..config import Config

CHUNK = 100  # steps per call of an engine
BETAS, EPS = (0.9, 0.999), 1e-8  # Adam's defaults, the same for every engine

Stepper = Callable[[int, int], Float[Tensor, "steps inst"]]  # (first step, count) -> losses


def lr_factor(step: int, config: Config) -> float:
    """Multiplier of the base learning rate at `step`: linear warmup, then the schedule to 0."""
    if step < config.warmup:
        return (step + 1) / config.warmup
    t = (step - config.warmup) / max(1, config.steps - config.warmup)
    if config.schedule == "linear":
        return 1 - t
    if config.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * t))
    return 1.0


def make_optimizer(params: list[Tensor], config: Config) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":  # devinterp's TMS example: SGD with momentum (Chen et al.: plain SGD)
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay, foreach=True)
    kind = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    # foreach, as torch picks on CUDA: the same update arithmetic (and failures) on every device
    return kind(params, lr=config.lr, betas=BETAS, eps=EPS, weight_decay=config.weight_decay, foreach=True)
