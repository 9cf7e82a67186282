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

    def default_setting(self, r2, d_in, active):
        return 0.3 * r2 / d_in  # saes/config.py: encoding v saves ~r² v² / d, costs l1 v
