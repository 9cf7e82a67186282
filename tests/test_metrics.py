import math

import pytest
import torch

from superposition.analysis import metrics


def _polygon(k: int) -> torch.Tensor:
    angles = torch.arange(k) * 2 * math.pi / k
    return torch.stack([angles.cos(), angles.sin()], dim=-1)[None].double()


def test_orthogonal_features_have_dimensionality_one():
    W = torch.eye(3, dtype=torch.float64)[None]  # 3 features in 3 dims
    assert torch.allclose(metrics.feature_dimensionality(W), torch.ones(1, 3, dtype=torch.float64))
    assert torch.allclose(metrics.superposition(W), torch.zeros(1, 3, dtype=torch.float64))
    assert metrics.dimensions_per_feature(W).item() == pytest.approx(1.0)


def test_antipodal_pair_is_one_half():
    W = torch.tensor([[[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]]], dtype=torch.float64)
    D = metrics.feature_dimensionality(W)[0]
    assert D.tolist() == pytest.approx([0.5, 0.5, 1.0])
    assert metrics.superposition(W)[0].tolist() == pytest.approx([1.0, 1.0, 0.0])
    assert metrics.dimensions_per_feature(W).item() == pytest.approx(2 / 3)


def test_regular_pentagon_is_two_fifths():
    W = _polygon(5)
    assert metrics.feature_dimensionality(W)[0].tolist() == pytest.approx([0.4] * 5)
    # 2 cos²72° + 2 cos²144° = 3/2 for every vertex
    assert metrics.superposition(W)[0].tolist() == pytest.approx([1.5] * 5)
    assert metrics.dimensions_per_feature(W).item() == pytest.approx(2 / 5)


def test_dimensionality_is_scale_invariant_and_zero_for_dropped_features():
    W = torch.tensor([[[0.7, 0.0], [0.0, 0.0], [0.0, 2.0]]], dtype=torch.float64)
    assert metrics.feature_dimensionality(W)[0].tolist() == pytest.approx([1.0, 0.0, 1.0])
    assert not torch.isnan(metrics.superposition(W)).any()
    assert metrics.feature_norms(W)[0].tolist() == pytest.approx([0.7, 0.0, 2.0])


def test_measure_counts_represented_and_diagonal(tmp_path):
    from superposition.config import resolve

    config = resolve({"features": 4, "hidden": 2, "sparsity": [0.9], "importance_decay": 1.0})
    W = torch.tensor([[[1.0, 0.0], [-0.9, 0.0], [0.0, 0.4], [0.0, 0.8]]])
    params = {"W": W, "b": torch.zeros(1, 4)}
    row = metrics.measure(config, params)["instances"][0]
    assert row["represented"] == 3  # norms 1, 0.9, 0.4, 0.8 against the 0.5 cut
    assert row["diagonal_count"] == 3  # diag of W Wᵀ: 1, 0.81, 0.16, 0.64
    assert row["feature_probability"] == pytest.approx([0.1] * 4)
    assert row["loss"] > 0
