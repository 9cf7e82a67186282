"""Train, measure, save and draw toy models of superposition (Elhage et al., 2022).

    import superposition as sp
    config = sp.Config(features=5, hidden=2, sparsity=[0, 0.9], importance_decay=0.9, steps=2000)
    run = sp.train(config)            # a Run: .config, .params, .metrics, .history
    run.save("runs/x"); sp.load_run("runs/x")
    run.plot("polygon"); run.encode(x); run.forward(x); run.module(); run[0]
    sp.sample(config, steps=range(3))  # the batches training drew

Heavy imports (torch, numba, matplotlib) wait until a function needs them.
"""

from __future__ import annotations

from importlib.metadata import version as _version
from typing import TYPE_CHECKING, Any

from .config import Config, ConfigError

__version__ = _version("superposition")

if TYPE_CHECKING:
    from collections.abc import Iterable

    import pandas
    from torch import Tensor

    from .models import Kind
    from .runs import Run


def train(config: Config, progress: bool | None = None) -> Run:
    """Train every instance of `config` at once; return the measured Run.

    progress: a progress bar (None: shown in a terminal or a notebook, False: never).
    The compiled CPU engine or autograd on a GPU, as `config.engine` and `config.device` say.
    """
    from .runs import train as _train

    return _train(config, progress)


def load_run(path) -> Run:
    """Read a run directory (checksums verified) as the Run that was saved."""
    from .runs import load_run as _load_run

    return _load_run(path)


def load_sweep(path) -> pandas.DataFrame:
    """The results table of a sweep directory (one row per model) as a pandas DataFrame."""
    from .sweep import load_sweep as _load_sweep

    return _load_sweep(path)


def sample(config: Config, steps: Iterable[int] = (0,)) -> Tensor:
    """The batches training draws at `steps`, every engine alike: (steps, inst, batch, features).

    With `restarts` > 1, copies are trained as extra instances of their own; this is
    the data of the instances of `config` as given.
    """
    import torch

    from . import data

    probs = data.feature_probability(config)
    instances = torch.arange(config.instances)
    return torch.stack([data.batch(config, probs, instances, int(step)) for step in steps])


def register(kind: type[Kind]) -> type[Kind]:
    """Register a model kind (a subclass of superposition.models.Kind) under its `name`."""
    from .models import register as _register

    return _register(kind)


def __getattr__(name: str) -> Any:
    if name in ("Run", "Kind", "KINDS"):
        from . import models, runs

        return {"Run": runs.Run, "Kind": models.Kind, "KINDS": models.KINDS}[name]
    raise AttributeError(f"module 'superposition' has no attribute {name!r}")


__all__ = ["Config", "ConfigError", "Kind", "KINDS", "Run", "__version__", "load_run", "load_sweep", "register", "sample", "train"]
