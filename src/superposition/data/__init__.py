"""Synthetic sparse features, batched over an instances axis.

Each instance has its own probability per feature (`feature_probability`, the paper's
1 - S). What a present feature's value is, and how features share presence, is the
config's generator (`data`): a unit registered in GENERATORS.

  stream.py     the counter stream every engine draws from
  generator.py  what a generator is, and the table of them
  paper.py      `paper` and `signed`, in independent, correlated or anticorrelated sets
  seed.py       `seed`, the seed project's coupled draw scaled to unit norm
  synthetic.py  `synthetic`, SAELens's synthetic data composed of the parts below
    hierarchy.py  trees of features: children gated by parents, exclusive siblings
    lowrank.py    low-rank correlated firing (a Gaussian copula)
    magnitudes.py firing magnitudes: uniform, or normal with per-feature means and spreads
  firing.py     firing probabilities by profile (zipf, linear): the config's firing keys
  sampling.py   a config's batches: training steps, evaluation, finite sets
"""

from . import paper, seed, synthetic  # noqa: F401  (the built-in generators register themselves)
from .firing import Firing
from .generator import GENERATORS, Generator, KernelDraw, NoOptions, option_keys, register_data
from .sampling import (
    DATASET_STEP,
    EVAL_STEP,
    SHUFFLE_STEP,
    batch,
    draw,
    drawer,
    evaluation,
    feature_probability,
)
from .stream import Stream, at_step, counters, instance_keys, step_keys, uniform, unit_columns

__all__ = [
    "DATASET_STEP", "EVAL_STEP", "Firing", "GENERATORS", "SHUFFLE_STEP", "Generator", "KernelDraw", "NoOptions",
    "Stream", "at_step", "batch", "counters", "draw", "drawer", "evaluation", "feature_probability",
    "instance_keys", "option_keys", "register_data", "step_keys", "uniform", "unit_columns",
]  # fmt: skip
