"""The batches of a config: training steps, the evaluation batch and the finite sets, all
drawn from the counter stream by the config's generator.

Steps of the stream that training never reaches (a config's steps are < 2**31) hold
the draws that are not training batches, each its own: a finite training set, the
evaluation batch, a finite set's test blocks (EVAL_STEP + b, block 0 the evaluation
batch, b < 2**40), and the shuffles of a finite set.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .generator import GENERATORS, Generator
from .stream import Stream, counters, step_keys, unit_columns

if TYPE_CHECKING:
    from ..config import Config

DATASET_STEP, EVAL_STEP, SHUFFLE_STEP = 2**40, 2**40 + 1, 2**41
# the evaluation batch is drawn this many values at a time: the hash's int64 temporaries
# are twice the batch's size
EVAL_CHUNK_VALUES = 2**24

Draw = Callable[..., Float[Tensor, "inst batch feat"]]


def drawer(config: Config) -> Draw:
    """The draw of this config's data, its options resolved once: a compiled step calls it
    inside its trace, where no options can be validated. Called as
    `(feature_probability, keys, rows, counter=None)`: see `draw`."""
    generator = GENERATORS[config.data]
    return partial(_draw, generator, generator.options(config), config.normalize)


def _draw(
    generator: Generator,
    options: Any,
    normalize: bool,
    feature_probability: Float[Tensor, "inst feat"],
    keys: Int[Tensor, "inst"],
    rows: int,
    counter: Int[Tensor, "feat batch"] | None = None,
) -> Float[Tensor, "inst batch feat"]:
    feat = feature_probability.shape[1]
    counter = counters(feat, rows, keys.device) if counter is None else counter
    x = generator.draw(options, feature_probability[:, :, None], Stream(keys, counter))
    if normalize:  # Henighan et al. (2023): every example scaled to unit norm
        x = unit_columns(x)
    return x.transpose(1, 2)


def draw(
    config: Config,
    feature_probability: Float[Tensor, "inst feat"],
    keys: Int[Tensor, "inst"],
    rows: int,
    counter: Int[Tensor, "feat batch"] | None = None,
) -> Float[Tensor, "inst batch feat"]:
    """`rows` examples per instance from its key (see `stream.step_keys`); of the config,
    only the data options are read. `counter`, the element counters, may be passed in
    (see `stream.Stream`)."""
    return drawer(config)(feature_probability, keys, rows, counter)


def batch(
    config: Config,
    feature_probability: Float[Tensor, "inst feat"],
    instances: Int[Tensor, "inst"],
    step: int,
    rows: int | None = None,
) -> Float[Tensor, "inst batch feat"]:
    """The batch of these (global) instances at `step`, as every engine draws it (`rows` of
    them: batch_size unless given)."""
    keys = step_keys(config.seed, instances.to(feature_probability.device), step)
    return draw(config, feature_probability, keys, rows or config.batch_size)


def evaluation(config: Config, rows: int | None = None, device: torch.device | str = "cpu") -> Float[Tensor, "inst batch feat"]:
    """The fixed evaluation batch of every instance (eval_batch_size rows unless given):
    the stream's draw at EVAL_STEP, made a few instances at a time."""
    rows = rows or config.eval_batch_size
    probs = feature_probability(config, device)
    per_draw = max(1, EVAL_CHUNK_VALUES // (config.features * rows))
    return torch.cat([
        batch(config, probs[first : first + per_draw], torch.arange(first, min(first + per_draw, config.instances)), EVAL_STEP, rows)
        for first in range(0, config.instances, per_draw)
    ])  # fmt: skip


def feature_probability(config: Config, device: torch.device | str = "cpu") -> Float[Tensor, "inst feat"]:
    return torch.tensor(config.feature_probability, dtype=torch.float32, device=device)
