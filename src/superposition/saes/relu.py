"""ReLU SAE: a = ReLU(pre), sparsity term l1 Σ_j a_j."""

from __future__ import annotations

import torch

from .kind import SAEKind, register


@register
class ReLU(SAEKind):
    name, setting, column, formula, fused = "relu", "l1", "l1_coefficient", "ReLU(pre), L1 penalty", True

    def activate(self, params, pre, setting):
        return torch.relu(pre)

    def sparsity_loss(self, params, pre, a, setting):
        return setting * a.sum(-1).mean(-1)
