import math

import pytest
import torch

from superposition.analysis.geometry import local_geometry, polygon


def _ring(k: int, offset: float = 0.0) -> torch.Tensor:
    angles = torch.arange(k) * 2 * math.pi / k + offset
    return torch.stack([angles.cos(), angles.sin()], dim=-1)


def test_polygons_of_the_intro():
    pair = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [0.1, 0.0], [0.0, 0.0]])
    assert polygon(pair) == ("orthogonal pair", [0, 1])
    antipodal = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0], [0.0, 0.01]])
    assert polygon(antipodal) == ("two antipodal pairs", [0, 1, 2, 3])
    assert polygon(_ring(5, 0.3)) == ("pentagon", [0, 1, 2, 3, 4])
    squashed = _ring(5) * torch.tensor([1.0, 0.6])
    assert polygon(squashed)[0] == "other"


def test_local_geometry_names_uniform_polytopes():
    def embed(vectors, dims, at):
        W = torch.zeros(len(vectors), dims)
        W[:, at : at + vectors.shape[1]] = vectors
        return W

    tetrahedron = torch.tensor([[1.0, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / math.sqrt(3)
    W = torch.cat(
        [
            embed(torch.tensor([[1.0], [-1.0]]), 12, 0),  # digon
            embed(_ring(3), 12, 1),  # triangle
            embed(tetrahedron, 12, 3),
            embed(_ring(5), 12, 6),  # pentagon
            embed(torch.tensor([[1.0]]), 12, 8),  # alone in its dimension
            torch.zeros(1, 12),  # dropped
        ]
    )
    names = local_geometry(W)
    assert names == ["digon"] * 2 + ["triangle"] * 3 + ["tetrahedron"] * 4 + ["pentagon"] * 5 + ["orthogonal", "not learned"]


def test_square_antiprism():
    # 8 unit vectors in 3-D: two squares rotated 45° apart, at heights ±h; h = 1/√2 makes it a tight frame
    h = 1 / math.sqrt(2)
    top = [(math.cos(a), math.sin(a), h) for a in [k * math.pi / 2 for k in range(4)]]
    bottom = [(math.cos(a), math.sin(a), -h) for a in [k * math.pi / 2 + math.pi / 4 for k in range(4)]]
    W = torch.nn.functional.normalize(torch.tensor(top + bottom), dim=-1)
    from superposition.analysis.metrics import feature_dimensionality

    D = feature_dimensionality(W[None])[0]
    assert D.tolist() == pytest.approx([3 / 8] * 8, abs=1e-5)
    assert local_geometry(W) == ["square antiprism"] * 8
