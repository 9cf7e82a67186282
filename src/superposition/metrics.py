"""Metrics per instance, computed from the weights (Elhage et al., 2022).

Geometry uses the embedding W (inst, feat, hidden): row W_i is feature i's
direction, also for the untied and mlp models (their encoder).

  feature norm        ||W_i||                        ~1 represented, ~0 not
  superposition       sum_{j != i} (Ŵ_i · W_j)²      0 = orthogonal to all others
  D* (dims/feature)   m / ||W||_F²
  D_i                 ||W_i||² / sum_j (Ŵ_i · W_j)²  antipodal pair 1/2, pentagon 2/5
  represented         count of ||W_i|| > REPRESENTED_NORM
  diagonal count      count of diag(W Wᵀ) (or W W_out) > DIAGONAL_CUT: the seed's measure
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from . import data
from .config import Config
from .models import Params, forward, gram, loss_per_instance

REPRESENTED_NORM = 0.5
DIAGONAL_CUT = 0.5
# The evaluation batch comes from its own stream, never the training one.
EVAL_SEED_OFFSET = 1_000_003


def feature_norms(W: Float[Tensor, "inst feat hidden"]) -> Float[Tensor, "inst feat"]:
    return W.norm(dim=-1)


def overlaps_squared(W: Float[Tensor, "inst feat hidden"]) -> Float[Tensor, "inst feat feat"]:
    """(Ŵ_i · W_j)² for every pair; a zero row gives zeros, not NaN."""
    unit = W / feature_norms(W).clamp_min(1e-12)[..., None]
    return torch.einsum("ifh,ijh->ifj", unit, W) ** 2


def superposition(W: Float[Tensor, "inst feat hidden"]) -> Float[Tensor, "inst feat"]:
    sq = overlaps_squared(W)
    return sq.sum(-1) - sq.diagonal(dim1=-2, dim2=-1)


def feature_dimensionality(W: Float[Tensor, "inst feat hidden"]) -> Float[Tensor, "inst feat"]:
    return feature_norms(W) ** 2 / overlaps_squared(W).sum(-1).clamp_min(1e-12)


def dimensions_per_feature(W: Float[Tensor, "inst feat hidden"]) -> Float[Tensor, "inst"]:
    return W.shape[-1] / (W**2).sum(dim=(-2, -1)).clamp_min(1e-12)


def eval_loss(config: Config, params: Params) -> Float[Tensor, "inst"]:
    """Loss on a fixed evaluation batch (same batch for every run of the same config)."""
    generator = torch.Generator().manual_seed(config.seed + EVAL_SEED_OFFSET)
    x = data.sample(
        config.data, data.feature_probability(config), config.eval_batch_size, generator, config.correlation, config.set_size
    )
    with torch.no_grad():
        out = forward(params, x, config)
        return loss_per_instance(out, x, data.importance(config), config)


def measure(config: Config, params: Params) -> dict[str, Any]:
    """All metrics, as plain lists per instance, ready for metrics.json."""
    W = params["W"]
    norms = feature_norms(W)
    diagonal = gram(params, config).diagonal(dim1=-2, dim2=-1)
    per_instance = zip(
        config.feature_probability,
        eval_loss(config, params).tolist(),
        norms.tolist(),
        superposition(W).tolist(),
        feature_dimensionality(W).tolist(),
        dimensions_per_feature(W).tolist(),
        (norms > REPRESENTED_NORM).sum(-1).tolist(),
        (diagonal > DIAGONAL_CUT).sum(-1).tolist(),
        params["b"].tolist(),
    )
    keys = (
        "feature_probability",
        "loss",
        "feature_norms",
        "superposition",
        "feature_dimensionality",
        "dimensions_per_feature",
        "represented",
        "diagonal_count",
        "bias",
    )
    return {
        "represented_norm": REPRESENTED_NORM,
        "diagonal_cut": DIAGONAL_CUT,
        "instances": [dict(zip(keys, row)) for row in per_instance],
    }
