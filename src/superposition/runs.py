"""The run directory: the format users and other tools read.

  config.json         the resolved Config plus `package_version`
  model.safetensors   W (inst, feat, hidden); W_out (inst, hidden, feat) for untied/mlp; b (inst, feat)
  metrics.json        per-instance metrics (see metrics.py)
  history.csv         step, then the training loss of each instance
  *.png               figures, named from the config
  superposition.json  the marker, written last: format version and the SHA-256 of the
                      four data files (figures are not sealed: `plot` redraws them)

A run is built in a hidden sibling directory and published in one atomic step as
its last act (files.atomic_dir), so a crashed or killed run never leaves a
directory that looks complete; loading verifies the checksums.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from .metrics import measure
from .config import Config, ConfigError, validate_saved
from .files import CONFIG, seal, to_json, verify
from .models import KINDS, Params
from .plots import write_figures
from .train import Diverged, TrainResult, divergence

MODEL, METRICS, HISTORY = "model.safetensors", "metrics.json", "history.csv"
SEALED = (CONFIG, MODEL, METRICS, HISTORY)


def package_version() -> str:
    return version("superposition")


@dataclass
class Run:
    path: Path
    config: Config
    params: Params
    metrics: dict[str, Any]


def write_run(
    directory: Path,
    config: Config,
    params: Params,
    history: torch.Tensor,
    metrics: dict[str, Any],
) -> None:
    """Write the files of a run into `directory` (a staging directory from `atomic_dir`)."""
    record = {**config.model_dump(), "package_version": package_version()}
    (directory / CONFIG).write_text(to_json(record))
    (directory / MODEL).write_bytes(save({k: v.contiguous() for k, v in params.items()}))
    (directory / METRICS).write_text(to_json(metrics))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["step"] + [f"loss_{i}" for i in range(config.instances)])
    for step, row in enumerate(history.tolist()):
        writer.writerow([step] + [repr(v) for v in row])
    (directory / HISTORY).write_text(buffer.getvalue())


def record(directory: Path, result: TrainResult, figures: bool = True) -> dict[str, Any]:
    """Measure a trained model and write its whole run (files, and figures unless told not to) into `directory`."""
    metrics = measure(result.config, result.params)
    problem = divergence(result.params, [row["loss"] for row in metrics["instances"]])
    if problem:
        raise Diverged(problem)
    write_run(directory, result.config, result.params, result.history, metrics)
    if figures:
        write_figures(result.config, result.params, directory)
    seal(directory, "run", SEALED)
    return metrics


def run_bytes(config: Config) -> int:
    """Disk space a run of `config` takes, roughly: history, weights, metrics and figures."""
    values = config.instances * (config.steps + 4 * config.features * (config.hidden + 4))
    return 24 * values + 4 * 2**20


def load_run(path: str | os.PathLike[str]) -> Run:
    """Read a run directory back: its config, weights and metrics. Raises ConfigError if broken."""
    path = Path(path)
    if set(verify(path, "run", "run")["sha256"]) != set(SEALED):
        raise ConfigError(f"run: {path}/superposition.json does not seal the files of a run; write it again")
    try:
        raw = json.loads((path / CONFIG).read_text())
        metrics = json.loads((path / METRICS).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"run: {path} has an unreadable JSON file ({error})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"run: {path}/{CONFIG} does not hold a config object")
    config = validate_saved(raw, path)
    try:
        params = load((path / MODEL).read_bytes())
    except (SafetensorError, OSError, ValueError) as error:
        raise ConfigError(f"run: {path}/{MODEL} is corrupted ({error})") from None
    expected = KINDS[config.model].shapes(config)
    shapes = {k: tuple(v.shape) for k, v in params.items()}
    if shapes != expected:
        raise ConfigError(f"run: {path}/{MODEL} holds {shapes}, but its config needs {expected}")
    for name, tensor in params.items():
        if tensor.dtype != torch.float32:
            raise ConfigError(f"run: {path}/{MODEL} holds {name} as {tensor.dtype}; runs store float32")
        if not bool(torch.isfinite(tensor).all()):
            raise ConfigError(f"run: {path}/{MODEL} holds non-finite values in {name}")
    check_metrics(metrics, config, path / METRICS)
    return Run(path=path, config=config, params=params, metrics=metrics)


def check_metrics(metrics: Any, config: Config, source: Path) -> None:
    """metrics.json has the structure every reader relies on, or one ConfigError line."""
    per_feature = ("feature_probability", "feature_norms", "superposition", "feature_dimensionality", "bias")
    numbers = ("loss", "dimensions_per_feature", "represented", "diagonal_count")

    def is_number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    rows = metrics.get("instances") if isinstance(metrics, dict) else None
    if not isinstance(rows, list) or len(rows) != config.instances:
        raise ConfigError(f"run: {source} does not hold one metrics object per instance ({config.instances})")
    for k, row in enumerate(rows):
        ok = isinstance(row, dict) and all(is_number(row.get(key)) for key in numbers) and all(
            isinstance(row.get(key), list) and len(row[key]) == config.features and all(map(is_number, row[key]))
            for key in per_feature
        )
        if not ok:
            raise ConfigError(f"run: {source}: instance {k} lacks a metric or holds one of the wrong type")
