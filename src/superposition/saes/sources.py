"""Activations whose true features are known: what an SAE is trained and scored on.

Two sources, each with `features` (inst, n, d), the true directions, and `batch(step)`,
fresh activations h (inst, batch, d) for a training step (nothing is stored):

- `RunSource`: a trained toy model. h = x W with x from the run's own data distribution
  (its feature probabilities, data kind and correlations), drawn by the counter-based
  stream of data.py under the SAE's seed. The true directions are the encoder rows W_i.
  For a model with a hidden ReLU this is the pre-activation x W, not the hidden layer
  ReLU(x W): in x W every feature is one direction, after the ReLU it is not.
- `DictionarySource`: a synthetic dictionary as in Sharkey et al. (2022): n random unit
  directions in d dimensions per instance, h = x F, with x any generator's data (the
  paper's unless `generator` names another: `synthetic` for trees, low-rank correlation
  and magnitudes), every feature at probability `density` or at a firing profile's.

A source has one instance per dictionary (or toy-model instance); an SAE job trains
`settings` copies of each, setting-major: SAE instance s * sources + i reads source i.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from ..config import Config, ConfigError, firing_profile
from ..limits import MAX_VALUES
from ..data import GENERATORS, batch as draw, feature_probability
from ..data.generator import KernelDraw
from ..analysis.metrics import REPRESENTED_NORM


class RunSource:
    def __init__(self, config: Config, W: Float[Tensor, "inst feat hidden"], device: str):
        self.config = config
        self.W = W.to(device)
        self.bias = torch.zeros(W.shape[-1], device=device)  # added to every activation (a SAELens model has its own)
        self.probs = feature_probability(config, device)
        self.ids = torch.arange(config.instances, device=device)

    def kernel_draw(self) -> KernelDraw | None:
        """The numba kernels' draw of this source's inputs, or None where they have none."""
        return GENERATORS[self.config.data].kernel_draw(self.config)

    @property
    def features(self) -> Float[Tensor, "inst feat hidden"]:
        return self.W

    @property
    def parents(self) -> list[int]:
        """The parent of each of the first features where its data has trees (see data/hierarchy.py), else empty."""
        return GENERATORS[self.config.data].hierarchy(self.config)

    @property
    def represented(self) -> Bool[Tensor, "inst feat"]:
        return self.W.norm(dim=-1) > REPRESENTED_NORM

    def inputs(self, seed: int, rows: int, step: int) -> Float[Tensor, "inst rows feat"]:
        """The true features' values of `rows` fresh inputs: the batch (seed, step) of the source's distribution."""
        config = self.config.model_copy(update={"seed": seed, "batch_size": rows})
        return draw(config, self.probs, self.ids, step)

    def activations(self, x: Float[Tensor, "inst rows feat"]) -> Float[Tensor, "inst rows hidden"]:
        """The activations of inputs x: x W + bias."""
        return torch.baddbmm(self.bias, x, self.W)

    def batch(self, seed: int, rows: int, step: int) -> Float[Tensor, "inst rows hidden"]:
        """Activations of `inputs(seed, rows, step)`."""
        return self.activations(self.inputs(seed, rows, step))


# Each random choice of an SAE job draws from its own stream of the seed. One seed for
# two of them once made the dictionary's directions the SAE's initial decoder rows.
DICTIONARY, SAE_INIT, RESAMPLING, RESAMPLING_POOL, CALIBRATION = 1, 2, 3, 4, 5


def derived_seed(seed: int, purpose: int, *more: int) -> int:
    """A 64-bit seed for one purpose (and e.g. step), independent of every other's, and of
    the toy models' torch seeds, which are the seed itself."""
    return int(np.random.SeedSequence([seed, purpose, *more]).generate_state(1, np.uint64)[0])


def dictionary_data(
    instances: int, features: int, dims: int, density: float | list[float] | None, options: dict[str, Any], generator: str = "paper",
    firing: dict[str, Any] | None = None,
) -> Config:
    """The data a dictionary's features follow: the generator's (the paper's unless named),
    with its `options`, every feature at `density` (or each at its own), or at the probabilities
    of a `firing` profile; ConfigError where they do not fit."""
    if instances * features > MAX_VALUES:  # before a list of them is built
        raise ConfigError(f"features: {instances} instances x {features} features is more than {MAX_VALUES:,} values; split the work into several runs")
    probs = firing_profile(firing, features) if firing else list(density) if isinstance(density, list) else [density] * features
    return Config(features=features, hidden=dims, feature_probability=[probs] * instances, data=generator, data_options=options)


class DictionarySource(RunSource):
    """Random unit directions; with `orthogonal` (features <= dims), orthonormal ones: the same
    draws made orthonormal by QR in order, as Nabeshima's and Chanin et al.'s toys have them;
    with `orthogonalize` steps, spread apart as SAELens spreads an overcomplete dictionary."""

    def __init__(self, data: Config, seed: int, device: str, orthogonal: bool = False, orthogonalize: int = 0):
        generator = torch.Generator().manual_seed(derived_seed(seed, DICTIONARY))
        F = torch.randn(data.instances, data.features, data.hidden, generator=generator)
        if orthogonal:
            Q, R = torch.linalg.qr(F.transpose(1, 2))  # columns of Q: Gram-Schmidt of the draws
            F = (Q * torch.sign(torch.diagonal(R, dim1=1, dim2=2))[:, None, :]).transpose(1, 2)
        F = torch.nn.functional.normalize(F, dim=-1)
        super().__init__(data, spread(F, orthogonalize) if orthogonalize else F, device)


# SAELens's orthogonalisation (sae_lens/synthetic/feature_dictionary.py): Adam at this lr, and
# the pairwise products taken this many rows at a time (memory: chunk x features per instance)
SPREAD_LR, SPREAD_ROWS = 0.01, 1024


def spread(F: Float[Tensor, "inst feat d"], steps: int) -> Float[Tensor, "inst feat d"]:
    """Unit directions pushed apart: `steps` Adam steps on Σ_{i≠j} (v_i · v_j)² + n Σ_i (v_i · v_i − 1)²
    per instance, then unit rows, as SAELens orthogonalises a dictionary with more features than dims."""
    v = F.detach().clone().requires_grad_()
    optimizer = torch.optim.Adam([v], lr=SPREAD_LR)
    n = F.shape[1]
    for _ in range(steps):
        optimizer.zero_grad()
        for first in range(0, n, SPREAD_ROWS):
            dots = v[:, first : first + SPREAD_ROWS] @ v.transpose(1, 2)  # (inst, chunk, feat)
            rows = torch.arange(dots.shape[1])
            own = dots[:, rows, first + rows]
            ((dots**2).sum() - (own**2).sum() + n * ((own - 1) ** 2).sum()).backward()
        optimizer.step()
    return torch.nn.functional.normalize(v.detach(), dim=-1)
