"""Metrics per instance, computed from the weights (Elhage et al., 2022).

Geometry uses the embedding W (inst, feat, hidden): row W_i is feature i's
direction, also for the untied and mlp models (their encoder).

  feature norm        ||W_i||                        ~1 represented, ~0 not
  superposition       sum_{j != i} (Ŵ_i · W_j)²      0 = orthogonal to all others
  D* (dims/feature)   m / ||W||_F²
  D_i                 ||W_i||² / sum_j (Ŵ_i · W_j)²  antipodal pair 1/2, pentagon 2/5
  represented         count of ||W_i|| > REPRESENTED_NORM
  diagonal count      count of diag(W Wᵀ) (or W W_out) > DIAGONAL_CUT: the seed's measure

With a finite training set (Henighan et al., 2023), also per instance:
  train_loss, test_loss  on the training set, and on fresh examples (dataset.py); `loss`
                         is test_loss there
  test_loss_se           test_loss's standard error (below 1% of it unless the test set
                         reached its cap)
  test_rows              the fresh examples test_loss took
  data_dimensionality    D_t = ||h_t||² / sum_s (ĥ_t · h_s)² of every training example,
                         h_t = x_t W: D_i's formula with the examples' hidden vectors as rows
  data_norms             ||h_t||
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float
from torch import Tensor

from .. import data
from ..config import Config
from ..models import Params, forward, gram_diagonal, loss_per_instance, loss_weights

if TYPE_CHECKING:
    from ..training.dataset import Sparse

REPRESENTED_NORM = 0.5
DIAGONAL_CUT = 0.5


def feature_norms(W: Float[Tensor, "inst feat hidden"]) -> Float[Tensor, "inst feat"]:
    return W.norm(dim=-1)


def _overlap_sums(W: Float[Tensor, "inst feat hidden"]) -> Float[Tensor, "inst feat"]:
    """sum_j (Ŵ_i · W_j)² = Ŵ_iᵀ (Wᵀ W) Ŵ_i: through the (hidden, hidden) matrix, so it costs
    feat x hidden² and never builds the feat x feat one (10,000 features, or a dataset's points)."""
    unit = W / feature_norms(W).clamp_min(1e-12)[..., None]
    second = torch.einsum("ifh,ifk->ihk", W, W)
    return torch.einsum("ifh,ihk,ifk->if", unit, second, unit)


def superposition(W: Float[Tensor, "inst feat hidden"]) -> Float[Tensor, "inst feat"]:
    """sum_j (Ŵ_i · W_j)² less the j = i term ‖W_i‖²; in float64, where that difference is
    taken, so a feature nearly orthogonal to all others is not lost to cancellation."""
    wide = W.double()
    norms = feature_norms(wide)
    return (_overlap_sums(wide) - torch.where(norms > 1e-12, norms**2, 0.0)).clamp_min(0.0).to(W.dtype)


def feature_dimensionality(W: Float[Tensor, "inst feat hidden"]) -> Float[Tensor, "inst feat"]:
    """D_i; also the paper's D_t of data points, given their hidden vectors as the rows."""
    return feature_norms(W) ** 2 / _overlap_sums(W).clamp_min(1e-12)


def dimensions_per_feature(W: Float[Tensor, "inst feat hidden"]) -> Float[Tensor, "inst"]:
    return W.shape[-1] / (W**2).sum(dim=(-2, -1)).clamp_min(1e-12)


def eval_loss(config: Config, params: Params) -> Float[Tensor, "inst"]:
    """Loss on the fixed evaluation batch (data.EVAL_STEP: the same for every run of the config)."""
    x = data.evaluation(config)
    with torch.no_grad():
        out = forward(params, x, config)
        return loss_per_instance(out, x, loss_weights(config), config)


def measure(config: Config, params: Params, examples: Sparse | None = None) -> dict[str, Any]:
    """All metrics, as plain lists per instance, ready for metrics.json; `examples`: the
    training set of a finite-data run."""
    if examples is not None:
        from ..training import dataset  # numba: only for the runs that need it

        test = dataset.test_loss(config, params)
        losses = test.loss
    else:
        losses = eval_loss(config, params)
    W = params["W"]
    norms = feature_norms(W)
    diagonal = gram_diagonal(params, config)
    per_instance = zip(
        config.feature_probability,
        losses.tolist(),
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
    rows = [dict(zip(keys, row)) for row in per_instance]
    if examples is not None:
        hidden = examples.hidden(W)
        finite = zip(
            dataset.evaluate(config, params, examples).tolist(),
            test.loss.tolist(),
            test.se.tolist(),
            [test.rows] * config.instances,
            feature_dimensionality(hidden).tolist(),
            feature_norms(hidden).tolist(),
        )
        for row, values in zip(rows, finite):
            row.update(zip(FINITE_KEYS, values))
    return {"represented_norm": REPRESENTED_NORM, "diagonal_cut": DIAGONAL_CUT, "instances": rows}


FINITE_KEYS = ("train_loss", "test_loss", "test_loss_se", "test_rows", "data_dimensionality", "data_norms")
