"""Naming the geometry a trained embedding W (feat, hidden) has learned.

`polygon` names a 2-D instance as the paper's intro does (orthogonal pair, two
antipodal pairs, pentagon). `local_geometry` names each feature's neighbourhood
in any dimension (the paper's "uniform polytopes"): a feature i whose D_i is near
the polytope's value and that overlaps with exactly the polytope's other vertices:

  digon 1/2 (1 other), triangle 2/3 (2), tetrahedron 3/4 (3), pentagon 2/5 (4),
  square antiprism 3/8 (7); "orthogonal" D_i ≈ 1 with no overlap; "not learned"
  ‖W_i‖ ≤ 0.5; "other" otherwise.
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float
from torch import Tensor

from .metrics import REPRESENTED_NORM, feature_dimensionality, feature_norms

POLYTOPES = {  # name: (D_i, number of other vertices it overlaps with)
    "orthogonal": (1.0, 0),
    "tetrahedron": (3 / 4, 3),
    "triangle": (2 / 3, 2),
    "digon": (1 / 2, 1),
    "pentagon": (2 / 5, 4),
    "square antiprism": (3 / 8, 7),
}
D_TOLERANCE = 0.03  # |D_i - polytope value|
OVERLAP = 0.1  # |cos| above which two represented features count as neighbours


def unit_angles(W: Float[Tensor, "feat 2"]) -> Float[Tensor, "feat"]:
    """Direction of each feature's 2-D vector, in degrees in [0, 360)."""
    return torch.rad2deg(torch.atan2(W[:, 1], W[:, 0])) % 360


def polygon(W: Float[Tensor, "feat 2"]) -> tuple[str, list[int]]:
    """Name a 2-D instance: its represented features and their arrangement."""
    represented = (feature_norms(W) > REPRESENTED_NORM).nonzero().flatten().tolist()
    V = W[represented]
    cos = torch.nn.functional.normalize(V, dim=-1) @ torch.nn.functional.normalize(V, dim=-1).T
    count = len(represented)
    if count == 2 and abs(cos[0, 1]) < 0.1:
        return "orthogonal pair", represented
    if count == 4:
        partners = (cos < -0.95).sum(-1)
        if bool((partners == 1).all()):
            return "two antipodal pairs", represented
    if count == 5:
        angles = torch.sort(unit_angles(V)).values
        gaps = torch.diff(torch.cat([angles, angles[:1] + 360]))
        if bool(((gaps - 72).abs() < 8).all()):
            return "pentagon", represented
    return "other", represented


def local_geometry(W: Float[Tensor, "feat hidden"]) -> list[str]:
    """Name each feature's local geometry (see the module's docstring)."""
    norms = feature_norms(W)
    D = feature_dimensionality(W[None])[0]
    unit = torch.nn.functional.normalize(W, dim=-1)
    cos = (unit @ unit.T).abs()
    represented = norms > REPRESENTED_NORM
    names = []
    for i in range(W.shape[0]):
        if not represented[i]:
            names.append("not learned")
            continue
        neighbours = int(((cos[i] > OVERLAP) & represented).sum()) - 1
        name = "other"
        for polytope, (value, others) in POLYTOPES.items():
            if math.isclose(D[i].item(), value, abs_tol=D_TOLERANCE) and neighbours == others:
                name = polytope
        names.append(name)
    return names


def ternary_codes(W: Float[Tensor, "feat hidden"], cut: float = 0.3) -> list[tuple[int, ...]]:
    """Each feature's sign pattern on the hidden neurons: +1/-1 where |W_ik| >= cut · max_k |W_ik|, else 0."""
    scale = W.abs().max(dim=-1, keepdim=True).values.clamp_min(1e-12)
    code = torch.sign(W) * (W.abs() >= cut * scale)
    return [tuple(int(v) for v in row) for row in code.tolist()]


def code_likeness(W: Float[Tensor, "feat hidden"], cut: float = 0.3) -> Float[Tensor, "feat"]:
    """Smallest over largest |W_ik| among a feature's active neurons: 1 for a perfect ±1 code."""
    magnitude = W.abs()
    active = magnitude >= cut * magnitude.max(dim=-1, keepdim=True).values.clamp_min(1e-12)
    smallest = torch.where(active, magnitude, torch.full_like(magnitude, float("inf"))).min(-1).values
    return smallest / magnitude.max(-1).values.clamp_min(1e-12)
