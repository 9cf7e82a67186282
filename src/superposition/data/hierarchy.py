"""Features in trees: a child fires only where its parent does (Nabeshima's Matryoshka toy,
SAELens's hierarchies, Chanin et al.'s absorption). The tree is the first features' parents
(`parents[i]`: feature i's parent, -1 for a root; a parent comes before its children), given
in the config or built from `roots`, `branching` and `depth` breadth first, as SAELens
numbers them: the roots 0 … roots − 1, then their children level by level, siblings
consecutive (depth 1: roots with leaves). The features after the tree are independent.

  exclusive     siblings exclude one another: of those that fire on a row, one chosen
                uniformly at random keeps firing (a mutually exclusive group); true for
                every group, or a list of the parents whose children are exclusive
  compensate    a child's own chance is raised to p_child / p_parent (and by
                1 + Σ_siblings p_j / p_parent where siblings are exclusive, SAELens's
                correction), at most 1, so that its rate over all rows is near its
                configured p rather than p times its ancestors'
  scale_children  a child's value is multiplied by its parent's over the parent's mean
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor


def built(roots: int, branching: int, depth: int) -> list[int]:
    """The parents of a forest of `roots` trees, each node with `branching` children down to
    `depth` levels below the roots, numbered breadth first."""
    parents = [-1] * roots
    level = list(range(roots))
    for _ in range(depth):
        first = len(parents)
        parents += [p for p in level for _ in range(branching)]
        level = list(range(first, len(parents)))
    return parents


def problem(parents: list[int], features: int) -> str | None:
    """What is wrong with a tree of `features` features, or None."""
    if len(parents) > features:
        return f"the tree has {len(parents)} features, more than features ({features}); give fewer roots or levels, or more features"
    for i, p in enumerate(parents):
        if not -1 <= p < i:
            return f"feature {i}'s parent {p} must be -1 (a root) or an earlier feature"
    return None


def levels(parents: list[int]) -> list[Int[Tensor, "members"]]:
    """The non-root features of the tree by depth, the children of the roots first."""
    depth = [0] * len(parents)
    for i, p in enumerate(parents):
        depth[i] = 0 if p < 0 else depth[p] + 1
    return [torch.tensor([i for i, d in enumerate(depth) if d == level]) for level in range(1, max(depth, default=0) + 1)]


def excluding(parents: list[int], exclusive: bool | list[int]) -> Bool[Tensor, "tree"]:
    """Which of the tree's features are children in an exclusive group."""
    parent = torch.tensor(parents)
    groups = torch.ones(len(parents), dtype=torch.bool) if exclusive is True else torch.zeros(len(parents), dtype=torch.bool)
    if isinstance(exclusive, list) and exclusive:
        groups[torch.tensor(exclusive)] = True
    return (parent >= 0) & groups[parent.clamp(min=0)]


def compensated(p: Float[Tensor, "inst feat 1"], parents: list[int], exclusive: bool | list[int]) -> Float[Tensor, "inst feat 1"]:
    """Each child's own chance, raised so that its rate over all rows is near its p."""
    parent = torch.tensor(parents, device=p.device)
    child = torch.nonzero(parent >= 0).flatten()
    if not len(child):
        return p
    p_parent = p[:, parent[child]]
    own = p[:, child] / p_parent
    # an exclusive group's members: times 1 + their siblings' share of the parent's rows
    siblings = torch.zeros_like(p).index_add_(1, parent[child], own)[:, parent[child]] - own
    own = torch.where(excluding(parents, exclusive).to(p.device)[child].view(1, -1, 1), own * (1 + siblings), own)
    return p.index_copy(1, child, own.clamp(max=1.0))


def gate(
    present: Bool[Tensor, "inst feat batch"], choice: Float[Tensor, "inst tree batch"] | None, parents: list[int], exclusive: bool | list[int]
) -> Bool[Tensor, "inst feat batch"]:
    """Presence with every child silent where its parent is, and, with `exclusive`, one of
    the siblings that fire kept: the one whose `choice` uniform is largest (ties, which
    24-bit uniforms have, go to the later feature)."""
    parent = torch.tensor(parents, device=present.device)
    child = torch.nonzero(excluding(parents, exclusive)).flatten().to(present.device)
    present = present.clone()
    if len(child):
        # exact in float64: 24 bits of the uniform above 2**-24, the feature's index below
        unique = choice[:, child].double() + child.double().view(1, -1, 1) * 2.0**-53
        score = torch.where(present[:, child], unique, -1.0)
        best = torch.full(present[:, : len(parents)].shape, -1.0, dtype=score.dtype, device=score.device)
        group = parent[child].view(1, -1, 1).expand_as(score)  # a sibling group is its parent's index
        best = best.scatter_reduce(1, group, score, "amax")
        present[:, child] &= score == best.gather(1, group)
    for level in levels(parents):
        level = level.to(present.device)
        present[:, level] &= present[:, parent[level]]
    return present


def scaled(values: Float[Tensor, "inst feat batch"], parents: list[int], mean: Float[Tensor, "feat"]) -> Float[Tensor, "inst feat batch"]:
    """Each child's value times its parent's (already scaled) value over the parent's mean."""
    parent = torch.tensor(parents, device=values.device)
    values = values.clone()
    for level in levels(parents):
        level = level.to(values.device)
        values[:, level] *= values[:, parent[level]] / mean[parent[level]].view(1, -1, 1)
    return values
