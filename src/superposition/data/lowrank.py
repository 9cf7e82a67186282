"""Low-rank correlated firing (SAELens's LowRankCorrelationConfig): a Gaussian copula.

Each row draws z = F ε + √d η, ε ~ N(0, I_rank), η ~ N(0, I_feat), with the factor F
(feat, rank) ~ N(0, scale²) fixed by the data's structure seed and d_i = 1 − Σ_r F_ir²
(at least MIN_DIAGONAL); feature i fires where z_i > Φ⁻¹(1 − p_i). So every feature keeps
its rate p_i (where d_i was not floored) and z_i, z_j have correlation Σ_r F_ir F_jr.
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from .stream import Stream, at_step, instance_keys, uniform

MIN_DIAGONAL = 0.01
# the fixed structure's draws: a step of the stream that no batch reaches, one instance per part
STRUCTURE_STEP = 2**42
FACTOR, SPREAD = 0, 1


def normal(u: Float[Tensor, "..."]) -> Float[Tensor, "..."]:
    """A standard normal from a 24-bit uniform on [0, 1), by the inverse CDF at its bin's
    centre; in float64, where the largest uniform's centre, 1 − 2**-25, would round to 1 in
    float32 and give +inf (and a magnitude of 0 · inf = nan)."""
    return torch.special.ndtri(u.double() + 2.0**-25).float()


def structure(seed: int, part: int, count: int, device: torch.device) -> Float[Tensor, "count"]:
    """`count` standard normals of a fixed part of the data (the factor, a spread of
    magnitudes), the same for every instance and training seed: SAELens fixes them by
    its own seed too."""
    keys = at_step(instance_keys(seed, torch.tensor([part], device=device)), STRUCTURE_STEP)
    return normal(uniform(keys, torch.arange(count, device=device))[0])


def factor(seed: int, features: int, rank: int, scale: float, device: torch.device) -> Float[Tensor, "feat rank"]:
    return scale * structure(seed, FACTOR, features * rank, device).view(features, rank)


def diagonal(F: Float[Tensor, "feat rank"]) -> Float[Tensor, "feat"]:
    return (1 - (F * F).sum(-1)).clamp(min=MIN_DIAGONAL)


def fires(p: Float[Tensor, "inst feat 1"], F: Float[Tensor, "feat rank"], stream: Stream, blocks: tuple[int, int]) -> Bool[Tensor, "inst feat batch"]:
    """Presence of every feature on every row, from the stream's blocks (ε, η)."""
    rank = F.shape[1]
    eps = normal(stream.uniform(blocks[0], first=rank))  # (inst, rank, batch)
    eta = normal(stream.uniform(blocks[1]))  # (inst, feat, batch)
    z = torch.einsum("fr,irb->ifb", F, eps) + diagonal(F).sqrt().view(1, -1, 1) * eta
    return z > torch.special.ndtri(1 - p.double()).float()
