"""`synthetic`: the data of SAELens's synthetic module, composed of parts each its own module:
firing probabilities (the config's feature_probability, a zipf or linear profile from
firing.py or one sparsity), trees of features (hierarchy.py), low-rank correlated firing
(lowrank.py) and firing magnitudes (magnitudes.py). Every option off, it is the paper's
data: independent features, values U[0, 1].

A row is drawn in the order SAELens applies them: which features fire (independently, or
through the copula), then the trees (exclusive siblings, children silent with their
parent), then the values (scaled by the parent's where asked). Its counter blocks: 0 the
independent firing, 1 the values, 2 and 3 the copula's ε and η, 4 the exclusive choice;
values and choices are hashed only where a feature fires (Stream.uniform_at), so a sparse
row costs its firing draw.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
from jaxtyping import Float
from pydantic import Field
from torch import Tensor

from ..limits import MAX_SIZE
from . import hierarchy, lowrank, magnitudes
from .generator import CONSTANT, UNIFORM, Generator, KernelDraw, NoOptions, register_data
from .stream import Stream

if TYPE_CHECKING:
    from ..config import Config

FIRING, VALUES, EPSILON, ETA, CHOICE = 0, 1, 2, 3, 4


class Options(NoOptions):
    roots: int = Field(0, ge=0, le=MAX_SIZE, description="Trees of hierarchical features, the first ones (0: none).")
    branching: int = Field(2, gt=0, le=MAX_SIZE, description="Children of every node of a tree.")
    depth: int = Field(1, gt=0, le=64, description="Levels of a tree below its root (1: a root and its leaves).")
    parents: list[int] | None = Field(None, description="A tree given feature by feature: each one's parent, -1 for a root.")
    exclusive: bool | list[int] = Field(False, description="Siblings exclude one another (one of those that fire keeps firing): all, or a list of the parents whose children do.")
    compensate: bool = Field(False, description="Raise children's own chances so that their rates stay near their p.")
    scale_children: bool = Field(False, description="A child's value is multiplied by its parent's over the parent's mean.")
    correlation_rank: int = Field(0, ge=0, le=MAX_SIZE, description="Rank of the low-rank correlation of firing (0: none).")
    correlation_scale: float = Field(0.1, ge=0, description="Standard deviation of the correlation factor's entries.")
    magnitude: Literal["uniform", "normal"] = Field("uniform", description="uniform: U[0, 1]; normal: ReLU(mean + std N(0, 1)).")
    magnitude_mean: float = Field(1.0, description="normal magnitudes: the mean of the first feature (of all, without an end).")
    magnitude_mean_end: float | None = Field(None, description="normal magnitudes: the mean of the last feature, linear between.")
    magnitude_std: float = Field(0.0, ge=0, description="normal magnitudes: their standard deviation (the folded normal's mean).")
    magnitude_std_spread: float = Field(0.0, ge=0, description="normal magnitudes: std drawn per feature as |std + spread N(0, 1)|.")
    structure_seed: int = Field(0, ge=0, lt=2**63, description="Seed of the correlation factor and the magnitudes' spread.")


@dataclass(frozen=True)
class Parts:
    """The parts a draw composes, resolved: from a config's options, or read from a saved
    SAELens SyntheticModel (saes/saelens.py)."""

    parents: list[int]  # the trees (empty: none)
    exclusive: bool | list[int]
    compensate: bool
    scale_children: bool
    factor: Float[Tensor, "feat rank"] | None  # the copula's (None: independent firing)
    mean: Float[Tensor, "feat"] | None  # normal magnitudes (None: U[0, 1])
    std: Float[Tensor, "feat"] | None  # None with a mean: every firing feature's value is ReLU(μ_i)


def compose(parts: Parts, p: Float[Tensor, "inst feat 1"], stream: Stream) -> Float[Tensor, "inst feat batch"]:
    """A draw of the parts, in the order of the module docstring."""
    parents = parts.parents
    own = hierarchy.compensated(p, parents, parts.exclusive) if parents and parts.compensate else p
    present = lowrank.fires(own, parts.factor, stream, (EPSILON, ETA)) if parts.factor is not None else stream.uniform(FIRING) < own
    if parents:
        choice = stream.uniform_at(present[:, : len(parents)], CHOICE) if parts.exclusive else None
        present = hierarchy.gate(present, choice, parents, parts.exclusive)
    drawn = parts.mean is None or parts.std is not None  # constant magnitudes need no uniforms
    values = magnitudes.values(stream.uniform_at(present, VALUES) if drawn else None, present, parts.mean, parts.std)
    if parents and parts.scale_children:
        mean = torch.full((p.shape[1],), 0.5, device=p.device) if parts.mean is None else parts.mean
        values = hierarchy.scaled(values, parents, mean)
    return values


def kernel_draw(parts: Parts) -> KernelDraw | None:
    """The numba kernels' draw of these parts, or None: they draw features that fire
    independently, without trees, with U[0, 1] or constant magnitudes."""
    if parts.parents or parts.factor is not None or (parts.mean is not None and parts.std is not None):
        return None
    if parts.mean is None:
        return KernelDraw(UNIFORM)
    return KernelDraw(CONSTANT, magnitudes=tuple(torch.relu(parts.mean).tolist()))


def parts_of(options: Options, feat: int, device: torch.device) -> Parts:
    """The parts a config's options compose."""
    factor = mean = std = None
    if options.correlation_rank:
        factor = lowrank.factor(options.structure_seed, feat, options.correlation_rank, options.correlation_scale, device)
    if options.magnitude == "normal":
        mean = magnitudes.means(feat, options.magnitude_mean, options.magnitude_mean_end, device)
        if options.magnitude_std or options.magnitude_std_spread:
            std = magnitudes.spreads(feat, options.magnitude_std, options.magnitude_std_spread, options.structure_seed, device)
    return Parts(tree(options), options.exclusive, options.compensate, options.scale_children, factor, mean, std)


def tree(options: Options) -> list[int]:
    """The parents of the hierarchy's features (empty: none)."""
    if options.parents is not None:
        return list(options.parents)
    return hierarchy.built(options.roots, options.branching, options.depth) if options.roots else []


@register_data
class Synthetic(Generator):
    name, kernel, Options = "synthetic", UNIFORM, Options
    kernel_scope = "without trees, correlation or drawn magnitudes"

    def check(self, config: Config) -> None:
        options = self.options(config)
        if options.parents is not None and options.roots:
            raise ValueError("parents: give the tree as parents or as roots, branching and depth, not both")
        if problem := hierarchy.problem(tree(options), config.features):
            raise ValueError(f"{'parents' if options.parents is not None else 'roots'}: {problem}")
        if isinstance(options.exclusive, list) and any(not 0 <= q < len(tree(options)) for q in options.exclusive):
            raise ValueError(f"exclusive: {options.exclusive} must list features of the tree (0 to {len(tree(options)) - 1}), parents of exclusive siblings")
        if options.correlation_rank > config.features:
            raise ValueError(f"correlation_rank: {options.correlation_rank} is more than features ({config.features})")
        if options.magnitude == "uniform":
            normal_only = {"magnitude_mean": 1.0, "magnitude_mean_end": None, "magnitude_std": 0.0, "magnitude_std_spread": 0.0}
            for key, default in normal_only.items():
                if getattr(options, key) != default:
                    raise ValueError(f"{key}: applies to normal magnitudes; give magnitude = \"normal\"")

    def hierarchy(self, config: Config) -> list[int]:
        return tree(self.options(config))

    def draw(self, options: Options, p: Float[Tensor, "inst feat 1"], stream: Stream) -> Float[Tensor, "inst feat batch"]:
        return compose(parts_of(options, p.shape[1], p.device), p, stream)

    def kernel_draw(self, config: Config) -> KernelDraw | None:
        options = self.options(config)
        if tree(options) or options.correlation_rank:  # before the copula's factor is built for nothing
            return None
        return kernel_draw(parts_of(options, config.features, torch.device("cpu")))

    def describe(self, config: Config) -> str:
        options, parts = self.options(config), []
        parents = tree(options)
        if parents:
            roots = sum(1 for q in parents if q < 0)
            shape = f"{roots} trees of {len(parents)} features" + (", exclusive siblings" if options.exclusive is True else ", some siblings exclusive" if options.exclusive else "")
            parts.append(shape)
        if options.correlation_rank:
            parts.append(f"rank-{options.correlation_rank} correlation")
        if options.magnitude == "normal":
            parts.append("normal magnitudes")
        return f"{self.name} data" + (f" ({'; '.join(parts)})" if parts else "")
