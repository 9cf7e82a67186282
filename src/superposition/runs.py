"""A trained model as one object (`Run`), and the run directory it is saved as.

  config.json          the resolved Config plus `package_version`
  model.safetensors    the kind's parameters (models.py): W (inst, feat, hidden), b (inst, feat), ...
  metrics.json         per-instance metrics (see metrics.py)
  history.safetensors  `loss` (steps, inst) float32: the training loss of every step, 4 bytes each
  dataset.safetensors  finite-data runs only: the training set x (inst, T, feat) as compressed
                       sparse rows (dataset.py): x_row_ptr (inst, T + 1) int64, x_cols int32,
                       x_values float32; `Run.dataset` is it as a torch sparse tensor
  checkpoints.safetensors  runs with `checkpoints` only: every parameter at the steps kept,
                       (checkpoints, inst, ...) under its own name, and `steps` (checkpoints,) int64
  *.png                figures, named from the config
  superposition.json   the marker, written last: format version and the SHA-256 of the
                       data files above (figures are not sealed: `plot` redraws them)

A run is built in a hidden sibling directory and published in one atomic step as
its last act (files.atomic_dir), so a crashed or killed run never leaves a
directory that looks complete; loading verifies the checksums.
"""

from __future__ import annotations

import json
import operator
import os
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from jaxtyping import Float
from safetensors import SafetensorError
from safetensors.torch import load, save
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from . import data
from .analysis.metrics import REPRESENTED_NORM, measure
from .analysis.recovery import score
from .config import Config, ConfigError, validate_saved
from .files import CONFIG, atomic_dir, seal, to_json, verify
from .models import KINDS, Params, loss_per_instance, loss_weights
from .training.loop import Diverged, TrainResult, checkpoint_bytes, divergence, train as fit

if TYPE_CHECKING:
    import pandas

    from .training.dataset import Sparse

MODEL, METRICS, HISTORY, DATASET = "model.safetensors", "metrics.json", "history.safetensors", "dataset.safetensors"
CHECKPOINTS = "checkpoints.safetensors"
SEALED = (CONFIG, MODEL, METRICS, HISTORY)


def sealed(config: Config) -> tuple[str, ...]:
    return SEALED + ((DATASET,) if config.dataset_size else ()) + ((CHECKPOINTS,) if config.checkpoints else ())


def package_version() -> str:
    return version("superposition")


@dataclass
class Run:
    """A trained batch of toy models: what `superposition.training.loop` returns and `load_run` reads.

    config   the Config it was trained with (device and engine as they ran)
    params   name -> tensor, on the CPU: W (inst, feat, hidden), b (inst, feat), W_out for untied kinds
    metrics  metrics.json as a dict: `instances` holds one dict per instance
    losses   training loss (steps, inst), float32; `history` is the same as a DataFrame
    path     the directory it was saved to or loaded from, if any
    examples a finite-data run's training set (dataset.Sparse); `dataset` is it as a tensor
    checkpoints  the weights at the steps `config.checkpoints` kept, (checkpoints, inst, ...)
             per parameter (fewer where early stop ended training first); `checkpoint(step)`
    step     where this Run is a checkpoint of another: the steps its weights had trained
    """

    config: Config
    params: Params
    metrics: dict[str, Any]
    losses: np.ndarray
    path: Path | None = None
    examples: Sparse | None = None
    checkpoints: Params | None = None
    step: int | None = None
    # a Run of one instance taken from another (`run[i]`): that run and the instance. A
    # config of one instance would draw instance 0's stream; this one's is instance i's
    origin: tuple[Run, int] | None = field(default=None, repr=False)

    @property
    def dataset(self) -> Tensor | None:
        """The training set x (inst, T, features) as a torch sparse tensor (`.to_dense()`), or
        None where every step drew a fresh batch."""
        return None if self.examples is None else self.examples.torch()

    @property
    def history(self) -> pandas.DataFrame:
        """Training loss: index `step`, one column per instance."""
        import pandas  # only when asked: it costs the command line 0.2 s

        frame = pandas.DataFrame(self.losses, columns=range(self.losses.shape[1]))
        frame.index.name = "step"
        return frame

    @classmethod
    def from_result(cls, result: TrainResult) -> Run:
        """Measure a trained model; a non-finite weight or loss is `Diverged`, never a Run."""
        metrics = measure(result.config, result.params, result.dataset)
        problem = divergence(result.params, [row["loss"] for row in metrics["instances"]])
        if problem:
            raise Diverged(problem)
        return cls(result.config, result.params, metrics, result.history.numpy(), examples=result.dataset, checkpoints=result.checkpoints)

    @classmethod
    def of(cls, config: Config, params: Params) -> Run:
        """A Run of weights set by hand (a constructed critical point, say), measured as a
        trained one; it has no training history."""
        if config.checkpoints or config.dataset_size:
            key = "checkpoints" if config.checkpoints else "dataset_size"
            raise ConfigError(f"{key}: a Run of weights set by hand has no training, so no {key.replace('_', ' ')}; drop it from the config")
        params = {k: torch.as_tensor(v, dtype=torch.float32).detach().clone() for k, v in params.items()}
        expected = KINDS[config.model].shapes(config)
        if {k: tuple(v.shape) for k, v in params.items()} != expected:
            raise ConfigError(f"params: this config's model needs {expected}, got {({k: tuple(v.shape) for k, v in params.items()})}")
        return cls(config, params, measure(config, params), np.zeros((0, config.instances), np.float32))

    def __len__(self) -> int:
        return self.config.instances

    def __getitem__(self, i: int) -> Run:
        """Instance i alone, as a Run of one instance."""
        try:
            i = operator.index(i)  # numpy integers too
        except TypeError:
            raise TypeError(f"instance {i!r}: index a run with one whole number") from None
        if not -len(self) <= i < len(self):
            raise IndexError(f"instance {i}: this run has instances 0 … {len(self) - 1}")
        i %= len(self)
        config = self.config.subset([i])
        metrics = {**self.metrics, "instances": [self.metrics["instances"][i]]}
        params = {k: v[i : i + 1].clone() for k, v in self.params.items()}
        examples = None if self.examples is None else self.examples.subset([i]).compact()
        kept = None if self.checkpoints is None else {k: v[:, i : i + 1].clone() for k, v in self.checkpoints.items()}
        origin = self.origin or (self, i)
        return Run(config, params, metrics, self.losses[:, i : i + 1].copy(), examples=examples, checkpoints=kept, step=self.step, origin=origin)

    @property
    def checkpoint_steps(self) -> list[int]:
        """The steps whose weights this run kept (`checkpoints = N` in its config)."""
        return [] if self.checkpoints is None else self.config.checkpoints[: len(next(iter(self.checkpoints.values())))]

    def checkpoint(self, step: int) -> Run:
        """The run as it stood after `step` training steps (0: its initial weights), measured as a
        finished run is: the weights training had then (those of the same config trained for
        `step` steps where its course does not depend on its length: a constant schedule, no
        warm start or restarts)."""
        steps = self.checkpoint_steps
        if not steps:
            if self.config.checkpoints:
                raise ConfigError(f"checkpoint: early stop ended this run at step {len(self.losses)}, before its first checkpoint ({self.config.checkpoints[0]})")
            raise ConfigError("checkpoint: this run kept no checkpoints; train it with checkpoints = N (or a list of steps)")
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step not in steps:
            shown = ", ".join(map(str, steps)) if len(steps) <= 12 else f"{', '.join(map(str, steps[:6]))}, …, {', '.join(map(str, steps[-3:]))}"
            raise ConfigError(f"checkpoint: step {step!r} is not one this run kept; it kept {len(steps)}: {shown}")
        if self.origin is not None:  # measured as part of its run: on its own instance's stream
            run, i = self.origin
            return run.checkpoint(step)[i]
        at = steps.index(int(step))
        params = {k: v[at].clone() for k, v in self.checkpoints.items()}
        metrics = measure(self.config, params, self.examples)
        return Run(self.config, params, metrics, self.losses[: int(step)].copy(), examples=self.examples, step=int(step))

    def _inputs(self, x: Any) -> Float[Tensor, "inst batch feat"]:
        x = torch.as_tensor(x, dtype=torch.float32)
        if x.dim() != 3 or x.shape[0] != len(self) or x.shape[2] != self.config.features:
            raise ConfigError(
                f"x: expected shape (instances={len(self)}, batch, features={self.config.features}), got {tuple(x.shape)}"
            )
        return x

    def encode(self, x: Any) -> Float[Tensor, "inst batch hidden"]:
        """Hidden vectors of x (inst, batch, features), after the hidden activation."""
        with torch.no_grad():
            return KINDS[self.config.model].encode(self.params, self._inputs(x), self.config)

    def forward(self, x: Any) -> Float[Tensor, "inst batch feat"]:
        """The model's outputs x' for x (inst, batch, features)."""
        return self.module()(self._inputs(x)).detach()

    def module(self) -> torch.nn.Module:
        """A torch.nn.Module computing `forward`, with the hidden layer as its submodule `hidden`
        (so `module.hidden.register_forward_hook` sees the hidden vectors). Its parameters are
        copies: training it leaves the run unchanged."""
        return ToyModel(self.config, self.params)

    def plain_module(self) -> PlainToyModel:
        """This one-instance run's model (`run[i].plain_module()`) as a plain torch module, for
        tools that take one (devinterp, SPD): (batch, features) -> outputs, its parameters the
        run's without the instances axis, and `loss(outputs, target)` the run's own loss.
        Its parameters are copies: training it leaves the run unchanged."""
        self._one_instance("plain_module")
        return PlainToyModel(self.config, self.params)

    def loader(self, batch_size: int = 1024, rows: int | None = None, shuffle: bool = True, seed: int = 0) -> DataLoader:
        """A DataLoader of (x, target) batches of this one-instance run's data (`run[i].loader()`),
        target being x, or |x| where the run reproduces |x|: a finite-data run's training set,
        otherwise `rows` fresh examples of its instance's stream (default eval_batch_size: the
        evaluation batch behind `loss`, so the plain module's mean loss over them is that loss).
        Shuffled by a generator of its own seeded with `seed`."""
        self._one_instance("loader")
        for name, value in (("batch_size", batch_size), ("rows", 1 if rows is None else rows)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}: a whole number of examples from 1 up, got {value!r}")
        if self.examples is not None:
            if rows is not None:
                raise ConfigError(f"rows: this run trained on its {self.config.dataset_size} examples, which the loader gives; drop rows")
            x = self.examples.torch().to_dense()[0]
        else:
            run, i = self.origin or (self, 0)
            probs = data.feature_probability(run.config)[i : i + 1]
            x = data.batch(run.config, probs, torch.tensor([i]), data.EVAL_STEP, rows or run.config.eval_batch_size)[0]
        target = x.abs() if self.config.target == "abs" else x
        shuffled = torch.Generator().manual_seed(seed) if shuffle else None
        return DataLoader(Examples(x, target), batch_size=batch_size, shuffle=shuffle, generator=shuffled, collate_fn=_as_is)

    def _one_instance(self, method: str) -> None:
        if len(self) != 1:
            raise ConfigError(f"{method}: this run has {len(self)} instances; take one first, run[i].{method}()")

    def recovery(self, latents: Any) -> list[dict[str, Any]]:
        """How well a dictionary recovers this run's features, per instance (recovery.py):
        latents (inst, n_latents, hidden), e.g. an SAE's decoder rows trained on `encode`'s
        output; the true features are the encoder rows W_i (for a hidden ReLU, the
        directions of the pre-activation), the represented ones those with ‖W_i‖ > 0.5."""

        latents = torch.as_tensor(latents, dtype=torch.float32)
        if latents.dim() != 3 or latents.shape[0] != len(self) or latents.shape[2] != self.config.hidden:
            raise ConfigError(
                f"latents: expected shape (instances={len(self)}, latents, hidden={self.config.hidden}), "
                f"got {tuple(latents.shape)}"
            )
        W = self.params["W"]
        return score(W, latents, W.norm(dim=-1) > REPRESENTED_NORM)

    def plot(self, name: str = "gram"):
        """One figure as a matplotlib Figure: gram, norms, weights, or polygon (hidden == 2)."""
        from .plots import figure

        return figure(name, self.config, self.params)

    def write(self, directory: Path, figures: bool = True) -> None:
        """Write the run's files into `directory` (a staging directory from `atomic_dir`), sealed last."""
        if self.step is not None:  # its config.json would train another model
            raise ConfigError(f"save: this Run is the checkpoint at step {self.step} of a run; save the run, which holds it")
        directory = Path(directory)
        record = {**self.config.model_dump(), "package_version": package_version()}
        (directory / CONFIG).write_text(to_json(record))
        (directory / MODEL).write_bytes(save({k: v.contiguous() for k, v in self.params.items()}))
        (directory / METRICS).write_text(to_json(self.metrics))
        losses = torch.tensor(self.losses, dtype=torch.float32)
        (directory / HISTORY).write_bytes(save({"loss": losses}))
        if self.examples is not None:
            from safetensors.numpy import save as save_arrays

            own = self.examples.compact()
            arrays = {"x_row_ptr": own.row_ptr, "x_cols": own.cols, "x_values": own.values}
            (directory / DATASET).write_bytes(save_arrays(arrays))
        if self.config.checkpoints:
            steps = torch.tensor(self.checkpoint_steps, dtype=torch.int64)
            (directory / CHECKPOINTS).write_bytes(save({**{k: v.contiguous() for k, v in self.checkpoints.items()}, "steps": steps}))
        if figures:
            from .plots import write_figures

            write_figures(self.config, self.params, directory)
        seal(directory, "run", sealed(self.config))

    def save(self, path: str | os.PathLike[str], figures: bool = True) -> Path:
        """Save as a run directory (replacing one of ours, refusing anything else); returns its path."""
        with atomic_dir(Path(path), "run") as staging:
            self.write(staging, figures)
        self.path = Path(path)
        return self.path


class _Layer(torch.nn.Module):
    """A named step of ToyModel (the kind's encode or decode), so that forward hooks can
    be registered on it; it is handed the weights, so copies of the model stay apart."""

    def __init__(self, config: Config, step: str):
        super().__init__()
        self.config, self.step = config, step

    def forward(self, inputs: Tensor, weights: torch.nn.ParameterDict) -> Tensor:
        return getattr(KINDS[self.config.model], self.step)(dict(weights), inputs, self.config)


class ToyModel(torch.nn.Module):
    """A run's model as a torch module: forward(x) = output(hidden(x)), x (inst, batch, features)."""

    def __init__(self, config: Config, params: Params):
        super().__init__()
        self.weights = torch.nn.ParameterDict({k: torch.nn.Parameter(v.clone()) for k, v in params.items()})
        self.hidden = _Layer(config, "encode")
        self.output = _Layer(config, "decode")

    def forward(self, x: Float[Tensor, "inst batch feat"]) -> Float[Tensor, "inst batch feat"]:
        return self.output(self.hidden(x, self.weights), self.weights)


class Examples(TensorDataset):
    """(x, target) rows that a DataLoader takes a whole batch of at once (one index per
    tensor, not one per row: per-row indexing and stacking was 80% of an SGLD step)."""

    def __getitems__(self, rows: list[int]) -> tuple[Tensor, ...]:
        index = torch.as_tensor(rows)
        return tuple(tensor[index] for tensor in self.tensors)


def _as_is(batch: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    return batch


class PlainToyModel(torch.nn.Module):
    """One toy model as a plain module: forward(x) = outputs, x (batch, features); parameters
    named as in model.safetensors, without the instances axis (W (feat, hidden), b (feat))."""

    def __init__(self, config: Config, params: Params):
        super().__init__()
        self.config = config
        # in the kind's order, never the dict's: a loaded file's order varies from process to
        # process, and a sampler's noise is drawn parameter by parameter in this order
        for name in KINDS[config.model].shapes(config):
            self.register_parameter(name, torch.nn.Parameter(params[name][0].clone()))
        self.register_buffer("importance", loss_weights(config))  # (1, feat): I_i, times n for a summed loss

    def _batched(self) -> Params:
        return {name: p.unsqueeze(0) for name, p in self.named_parameters()}

    def encode(self, x: Float[Tensor, "batch feat"]) -> Float[Tensor, "batch hidden"]:
        return KINDS[self.config.model].encode(self._batched(), x.unsqueeze(0), self.config).squeeze(0)

    def forward(self, x: Float[Tensor, "batch feat"]) -> Float[Tensor, "batch feat"]:
        kind, params = KINDS[self.config.model], self._batched()
        return kind.decode(params, kind.encode(params, x.unsqueeze(0), self.config), self.config).squeeze(0)

    def loss(self, outputs: Float[Tensor, "batch feat"], target: Float[Tensor, "batch feat"]) -> Float[Tensor, ""]:
        """The run's training loss: importance-weighted squared error, over the batch's mean."""
        return loss_per_instance(outputs.unsqueeze(0), target.unsqueeze(0), self.importance, self.config).squeeze(0)


def train(config: Config, progress: bool | None = None) -> Run:
    """Train `config` (all its instances at once) and measure it: the notebook's entry point.

    progress: a progress bar; None shows one in a terminal or a notebook.
    """

    return Run.from_result(fit(config, progress=show_progress() if progress is None else progress))


def show_progress() -> bool:
    """Whether a progress bar can be drawn here: a terminal, or a notebook with ipywidgets."""
    from rich.console import Console

    console = Console(stderr=True)
    return console.is_terminal or (console.is_jupyter and _has("ipywidgets"))  # rich draws with it there


def _has(module: str) -> bool:
    from importlib.util import find_spec

    return find_spec(module) is not None


def record(directory: Path, result: TrainResult, figures: bool = True) -> dict[str, Any]:
    """Measure a trained model and write its run into `directory`; return its metrics."""
    run = Run.from_result(result)
    run.write(directory, figures)
    return run.metrics


def run_bytes(config: Config) -> int:
    """Disk space a run of `config` takes, roughly: history, weights, metrics and figures."""
    values = config.instances * (config.steps + 4 * config.features * (config.hidden + 4))
    if config.dataset_size:  # the training set (8 bytes a present value) and D_t, ||h_t|| in metrics.json
        present = sum(map(sum, config.feature_probability))
        values += config.dataset_size * (config.instances * 6 + int(present))
    return 8 * values + checkpoint_bytes(config) + 4 * 2**20


def load_run(path: str | os.PathLike[str]) -> Run:
    """Read a run directory back as the Run that was saved. Raises ConfigError if broken."""
    path = Path(path)
    seals = set(verify(path, "run", "run")["sha256"])
    try:
        raw = json.loads((path / CONFIG).read_text())
        metrics = json.loads((path / METRICS).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"run: {path} has an unreadable JSON file ({error})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"run: {path}/{CONFIG} does not hold a config object")
    config = validate_saved(raw, path)
    if seals != set(sealed(config)):
        raise ConfigError(f"run: {path}/superposition.json does not seal the files of a run; write it again")
    params = _tensors(path / MODEL)
    expected = KINDS[config.model].shapes(config)
    shapes = {k: tuple(v.shape) for k, v in params.items()}
    if shapes != expected:
        raise ConfigError(f"run: {path}/{MODEL} holds {shapes}, but its config needs {expected}")
    check_metrics(metrics, config, path / METRICS)
    history = _tensors(path / HISTORY, finite=False)
    if set(history) != {"loss"} or history["loss"].dim() != 2 or history["loss"].shape[1] != config.instances:
        raise ConfigError(f"run: {path}/{HISTORY} does not hold a (steps, {config.instances}) loss")
    examples = _examples(path / DATASET, config) if config.dataset_size else None
    kept = _checkpoints(path / CHECKPOINTS, config, expected) if config.checkpoints else None
    return Run(config, params, metrics, history["loss"].numpy(), path, examples, kept)


def _checkpoints(path: Path, config: Config, shapes: dict[str, tuple[int, ...]]) -> Params:
    """Saved checkpoints, checked against the config: a prefix of its steps, every parameter."""
    try:
        tensors = load(path.read_bytes())
    except (SafetensorError, OSError, ValueError) as error:
        raise ConfigError(f"run: {path} is corrupted ({error})") from None
    steps = tensors.pop("steps", None)
    ok = (
        steps is not None and steps.dtype == torch.int64 and steps.dim() == 1
        and steps.tolist() == config.checkpoints[: len(steps)] and set(tensors) == set(shapes)
        and all(v.dtype == torch.float32 and tuple(v.shape) == (len(steps), *shapes[k]) for k, v in tensors.items())
    )  # fmt: skip
    if not ok:
        raise ConfigError(f"run: {path} does not hold the weights at the config's checkpoints")
    return tensors


def _examples(path: Path, config: Config) -> Sparse:
    """A saved training set, checked against its config."""
    from safetensors.numpy import load as load_arrays

    from .training.dataset import Sparse

    try:
        arrays = load_arrays(path.read_bytes())
        row_ptr, cols, values = arrays["x_row_ptr"], arrays["x_cols"], arrays["x_values"]
    except (SafetensorError, OSError, ValueError, KeyError) as error:
        raise ConfigError(f"run: {path} is corrupted ({error})") from None
    shape = (config.instances, config.dataset_size + 1)
    ok = (
        row_ptr.dtype == np.int64 and row_ptr.shape == shape and cols.dtype == np.int32 and values.dtype == np.float32
        and cols.ndim == values.ndim == 1 and len(cols) == len(values) == row_ptr[-1, -1] and row_ptr[0, 0] == 0 and bool((np.diff(row_ptr.ravel()) >= 0).all())
        and bool(((cols >= 0) & (cols < config.features)).all()) and bool(np.isfinite(values).all())
    )  # fmt: skip
    if not ok:
        raise ConfigError(f"run: {path} does not hold a training set of {config.dataset_size} examples per instance")
    return Sparse(row_ptr, cols, values, config.features)


def _tensors(path: Path, finite: bool = True) -> dict[str, Tensor]:
    try:
        tensors = load(path.read_bytes())
    except (SafetensorError, OSError, ValueError) as error:
        raise ConfigError(f"run: {path} is corrupted ({error})") from None
    for name, tensor in tensors.items():
        if tensor.dtype != torch.float32:
            raise ConfigError(f"run: {path} holds {name} as {tensor.dtype}; runs store float32")
        if finite and not bool(torch.isfinite(tensor).all()):
            raise ConfigError(f"run: {path} holds non-finite values in {name}")
    return tensors


def check_metrics(metrics: Any, config: Config, source: Path) -> None:
    """metrics.json has the structure every reader relies on, or one ConfigError line."""
    per_feature = ("feature_probability", "feature_norms", "superposition", "feature_dimensionality", "bias")
    numbers = ("loss", "dimensions_per_feature", "represented", "diagonal_count")
    per_example: tuple[str, ...] = ()
    if config.dataset_size:
        numbers += ("train_loss", "test_loss", "test_loss_se", "test_rows")
        per_example = ("data_dimensionality", "data_norms")

    def is_number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    rows = metrics.get("instances") if isinstance(metrics, dict) else None
    if not isinstance(rows, list) or len(rows) != config.instances:
        raise ConfigError(f"run: {source} does not hold one metrics object per instance ({config.instances})")
    for k, row in enumerate(rows):
        ok = isinstance(row, dict) and all(is_number(row.get(key)) for key in numbers) and all(
            isinstance(row.get(key), list) and len(row[key]) == size and all(map(is_number, row[key]))
            for keys, size in ((per_feature, config.features), (per_example, config.dataset_size))
            for key in keys
        )
        if not ok:
            raise ConfigError(f"run: {source}: instance {k} lacks a metric or holds one of the wrong type")
