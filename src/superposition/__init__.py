"""Train, measure, save and draw toy models of superposition (Elhage et al., 2022).

    import superposition as sp
    config = sp.Config(features=5, hidden=2, sparsity=[0, 0.9], importance_decay=0.9, steps=2000)
    run = sp.train(config)            # a Run: .config, .params, .metrics, .history
    run.save("runs/x"); sp.load_run("runs/x")
    run.plot("polygon"); run.encode(x); run.forward(x); run.module(); run[0]
    sp.sample(config, steps=range(3))  # the batches training drew
    sae = sp.train_sae(run, kind="topk", k=1)  # SAEs on its activations, scored against W_i
    sae.metrics["instances"][0]["mmcs"]; sae.save("saes/x"); sp.load_sae("saes/x")
    sp.train_sae(data="dictionary", features=512, dims=256, l1=[0.003, 0.01])

Heavy imports (torch, numba, matplotlib) wait until a function needs them.
"""

from __future__ import annotations

import os
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
    from .saes.runs import SAE


def train(config: Config, progress: bool | None = None) -> Run:
    """Train every instance of `config` at once; return the measured Run.

    progress: a progress bar (None: shown in a terminal or a notebook, False: never).
    The fused engine on the CPU, the compiled one on a GPU, or plain autograd, as
    `config.engine` and `config.device` say.
    """
    from .runs import train as _train

    return _train(config, progress)


def load_run(path) -> Run:
    """Read a run directory (checksums verified) as the Run that was saved."""
    from .runs import load_run as _load_run

    return _load_run(path)


def llc(run: Run, checkpoints: bool = False, instances: list[int] | None = None, **settings: Any) -> dict[str, Any]:
    """The local learning coefficient of a run's models by devinterp's SGLD (`pip install
    'superposition[llc]'`), at the final weights or at every checkpoint; settings: lr,
    localization, nbeta, draws, chains, burnin, batch_size, rows, seed. Written to the run's
    directory as llc.json where it has one."""
    from .tools.llc import llc as _llc

    return _llc(run, checkpoints, instances, **settings)


def load_sweep(path) -> pandas.DataFrame:
    """The results table of a sweep directory (one row per model) as a pandas DataFrame."""
    from .sweeps.sweep import load_sweep as _load_sweep

    return _load_sweep(path)


def sample(config: Config, steps: Iterable[int] = (0,)) -> Tensor:
    """The batches training draws at `steps`, every engine alike: (steps, inst, batch, features).

    With `restarts` > 1, copies are trained as extra instances of their own; this is
    the data of the instances of `config` as given. With `dataset_size`, the examples of
    the training set each step trains on (all of them, or that step's minibatch).
    """
    import torch

    from . import data
    from .training.loop import require_memory

    steps = _steps(config, steps)
    if config.dataset_size:
        from .training import dataset

        rows = min(config.dataset_size, config.batch_size)
        require_memory(
            4 * config.instances * config.features * (config.dataset_size + len(steps) * rows), "dataset_size",
            "these batches need", f"{config.instances} dense sets of {config.dataset_size} x {config.features}",
            "ask for fewer steps, or read run.dataset (sparse) instead",
        )  # fmt: skip
        examples = dataset.training_set(config).dense()
        if dataset.full_batch(config):
            return torch.stack([examples for _ in steps])
        sources = list(range(config.instances))
        picks = [torch.from_numpy(dataset.batches(config, step, 1, sources)[:, 0]) for step in steps]
        return torch.stack([dataset.gather(examples, p) for p in picks])
    # the batches, their stack, and a draw's temporaries (a uniform and a mask per value)
    require_memory(
        4 * config.instances * config.features * config.batch_size * (2 * len(steps) + 3), "steps",
        "these batches need", f"{len(steps)} steps x {config.instances} instances x batches of {config.batch_size} x {config.features}",
        "ask for fewer steps at a time, or use a smaller batch_size",
    )  # fmt: skip
    probs = data.feature_probability(config)
    instances = torch.arange(config.instances)
    return torch.stack([data.batch(config, probs, instances, step) for step in steps])


def _steps(config: Config, steps: Any) -> list[int]:
    """The step numbers a user asked `sample` for, checked: whole numbers in the run's range."""
    import operator

    if not isinstance(config, Config):
        raise ConfigError(f"config: expected an sp.Config, got {type(config).__name__}; build one with sp.Config(**keys)")
    if isinstance(steps, (str, bytes, dict)) or not hasattr(steps, "__iter__"):
        raise ConfigError(f"steps: expected a list of step numbers such as [0] or range(3), got {steps!r}")
    checked = []
    for step in steps:
        try:
            if isinstance(step, bool):
                raise TypeError
            step = operator.index(step)  # ints and numpy integers, never a float
        except TypeError:
            raise ConfigError(f"steps: {step!r} is not a whole step number") from None
        if not 0 <= step < config.steps:
            raise ConfigError(f"steps: {step} is outside the run's steps, 0 to {config.steps - 1}")
        checked.append(step)
    if not checked:
        raise ConfigError("steps: give at least one step number, such as [0]")
    return checked


def train_sae(source: Run | str | os.PathLike[str] | None = None, progress: bool | None = None, **keys: Any) -> SAE:
    """Train sparse autoencoders on activations whose features are known; return them scored.

    source: a Run (or a run directory) whose hidden activations x W are the data, or
    None with data="dictionary", features=N, dims=D (density, instances). keys: the
    keys of `superposition sae` (sae_config.py): kind, latents, l1 | k | l0 (a list
    trains one SAE per value), steps, lr, batch_size, resample (resample_every,
    resample_until, resample_pool), seed, device.
    """
    from .runs import Run as _Run, show_progress
    from .saes.config import resolve_sae
    from .saes.runs import train_sae as _train_sae

    run = source if isinstance(source, _Run) else None
    if source is not None and run is None:
        keys = {**keys, "run": str(source)}
    config = resolve_sae(keys, run)
    return _train_sae(config, run, show_progress() if progress is None else progress)


def load_sae(path) -> SAE:
    """Read an SAE directory (checksums verified) as the SAE that was saved."""
    from .saes.runs import load_sae as _load_sae

    return _load_sae(path)


def register(kind: type[Kind]) -> type[Kind]:
    """Register a model kind (a subclass of superposition.models.Kind) under its `name`."""
    from .models import register as _register

    return _register(kind)


def register_sae(kind: type) -> type:
    """Register an SAE kind (a subclass of superposition.saes.SAEKind) under its `name`."""
    from .saes import register as _register

    return _register(kind)


def register_data(generator: type) -> type:
    """Register a data generator (a subclass of superposition.data.Generator) under its `name`."""
    from .data import register_data as _register

    return _register(generator)


def __getattr__(name: str) -> Any:
    if name in ("Run", "Kind", "KINDS", "SAE"):
        from . import models, runs
        from .saes import runs as sae_runs

        return {"Run": runs.Run, "Kind": models.Kind, "KINDS": models.KINDS, "SAE": sae_runs.SAE}[name]
    raise AttributeError(f"module 'superposition' has no attribute {name!r}")


__all__ = [
    "Config", "ConfigError", "Kind", "KINDS", "Run", "SAE", "__version__",
    "llc", "load_run", "load_sae", "load_sweep", "register", "register_data", "register_sae", "sample", "train", "train_sae",
]  # fmt: skip
