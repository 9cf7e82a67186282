"""The run directory: the format users and other tools read.

  config.json         the resolved Config plus `package_version`
  model.safetensors   W (inst, feat, hidden); W_out (inst, hidden, feat) for untied/mlp; b (inst, feat)
  metrics.json        per-instance metrics (see metrics.py)
  history.csv         step, then the training loss of each instance
  *.png               figures, named from the config

A run is built in a hidden sibling directory and renamed into place as its last
act, so a crashed or killed run never leaves a directory that looks complete.
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
from safetensors.torch import load_file, save_file

from .metrics import measure
from .config import Config, ConfigError, validate_saved
from .files import CONFIG
from .models import Params, has_w_out
from .plots import write_figures
from .train import TrainResult

MODEL, METRICS, HISTORY = "model.safetensors", "metrics.json", "history.csv"


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
    (directory / CONFIG).write_text(json.dumps(record, indent=2))
    save_file({k: v.contiguous() for k, v in params.items()}, str(directory / MODEL))
    (directory / METRICS).write_text(json.dumps(metrics, indent=2))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["step"] + [f"loss_{i}" for i in range(config.instances)])
    for step, row in enumerate(history.tolist()):
        writer.writerow([step] + [repr(v) for v in row])
    (directory / HISTORY).write_text(buffer.getvalue())


def record(directory: Path, result: TrainResult, figures: bool = True) -> dict[str, Any]:
    """Measure a trained model and write its whole run (files, and figures unless told not to) into `directory`."""
    metrics = measure(result.config, result.params)
    write_run(directory, result.config, result.params, result.history, metrics)
    if figures:
        write_figures(result.config, result.params, directory)
    return metrics


def load_run(path: str | os.PathLike[str]) -> Run:
    """Read a run directory back: its config, weights and metrics. Raises ConfigError if broken."""
    path = Path(path)
    if not (path / CONFIG).is_file():
        raise ConfigError(f"run: {path} is not a run directory (no {CONFIG}); train one with `superposition train`")
    try:
        raw = json.loads((path / CONFIG).read_text())
        metrics = json.loads((path / METRICS).read_text())
    except FileNotFoundError as error:
        raise ConfigError(f"run: {path} is incomplete, {Path(error.filename).name} is missing") from None
    except json.JSONDecodeError as error:
        raise ConfigError(f"run: {path} has a corrupted JSON file ({error})") from None
    config = validate_saved(raw, path)
    try:
        params = load_file(str(path / MODEL))
    except FileNotFoundError:
        raise ConfigError(f"run: {path} is incomplete, {MODEL} is missing") from None
    except (SafetensorError, OSError, ValueError) as error:
        raise ConfigError(f"run: {path}/{MODEL} is corrupted ({error})") from None
    expected = {"W": (config.instances, config.features, config.hidden), "b": (config.instances, config.features)}
    if has_w_out(config.model):
        expected["W_out"] = (config.instances, config.hidden, config.features)
    shapes = {k: tuple(v.shape) for k, v in params.items()}
    if shapes != expected:
        raise ConfigError(f"run: {path}/{MODEL} holds {shapes}, but its config needs {expected}")
    if len(metrics.get("instances", [])) != config.instances:
        raise ConfigError(f"run: {path}/{METRICS} does not match its config's {config.instances} instances")
    return Run(path=path, config=config, params=params, metrics=metrics)
