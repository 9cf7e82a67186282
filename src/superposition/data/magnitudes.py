"""What a firing feature's value is (SAELens's firing magnitudes).

  uniform   U[0, 1], the paper's (mean 1/2)
  normal    ReLU(μ_i + σ_i N(0, 1)): μ_i constant, or linear from magnitude_mean for the
            first feature to magnitude_mean_end for the last; σ_i = magnitude_std, or
            folded normal |magnitude_std + magnitude_std_spread N(0, 1)|, one draw per
            feature fixed by the data's structure seed
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from .lowrank import SPREAD, normal, structure


def means(features: int, start: float, end: float | None, device: torch.device) -> Float[Tensor, "feat"]:
    if end is None or features == 1:
        return torch.full((features,), start, device=device)
    return torch.linspace(start, end, features, device=device)


def spreads(features: int, std: float, spread: float, seed: int, device: torch.device) -> Float[Tensor, "feat"]:
    if spread == 0:
        return torch.full((features,), std, device=device)
    return (std + spread * structure(seed, SPREAD, features, device)).abs()


def values(
    u: Float[Tensor, "inst feat batch"] | None,
    where: Bool[Tensor, "inst feat batch"],
    mean: Float[Tensor, "feat"] | None,
    std: Float[Tensor, "feat"] | None,
) -> Float[Tensor, "inst feat batch"]:
    """The value of every element `where` holds from its uniform (0 elsewhere): U[0, 1] where
    `mean` is None, ReLU(μ) where `std` is None (no uniforms needed), else ReLU(μ + σ N)."""
    if mean is None:
        return torch.where(where, u, 0.0)
    if std is None:
        return torch.where(where, torch.relu(mean)[:, None], 0.0)
    inst, f, r = where.nonzero(as_tuple=True)
    out = torch.zeros_like(u)
    out[inst, f, r] = torch.relu(mean[f] + std[f] * normal(u[inst, f, r]))
    return out
