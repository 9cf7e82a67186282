"""SAELens's synthetic models (`sae_lens.synthetic.SyntheticModel`, saved with `.save(dir)`),
read as an SAE source and written from a trained toy model, so that a user moves between
the two without code. A saved model is a directory of

  synthetic_model_config.json   num_features, hidden_dim, the generators' configs, seed
  synthetic_model.safetensors   feature_vectors (N, D), bias (D), firing_probabilities (N:
                                each feature's own chance, after any compensation),
                                correlation_factor (N, rank) and correlation_diag (N)
  hierarchy.json                {"roots": [node, …]}, a node {feature_index,
                                mutually_exclusive_children, scale_children_by_parent,
                                children}

Read: its features are the true directions, its activations x F + bias, x drawn by our
synthetic data's parts (data/synthetic.py) from its own tensors: the same copula, trees and
magnitudes as SAELens's, on our counter stream. SAELens keeps the magnitudes as configs and
regenerates them on load; a folded normal's draw is torch.randn under the model's seed + 1
(standard deviations) or + 2 (means), as SAELens draws it (checked against a model SAELens
wrote: tests/fixtures/saelens-synthetic).

Written: a toy run's instance as a model: W as feature_vectors, its feature probabilities
(own chances), its trees, its copula, its normal magnitudes as constant or linear configs.
SAELens has no U[0, 1] magnitude: the paper's data is written as normal magnitudes of its
mean and standard deviation (0.5, 1/√12), which `export` says.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from safetensors.torch import load, save
from torch import Tensor

from ..config import Config, ConfigError
from ..data import GENERATORS, counters, step_keys
from ..data.hierarchy import compensated
from ..data.lowrank import diagonal, factor as copula_factor
from ..data.magnitudes import means as linear_means, spreads
from ..data.stream import Stream
from ..data.generator import KernelDraw
from ..data.synthetic import Parts, compose, kernel_draw
from ..files import atomic_dir, seal, to_json
from .sources import RunSource

CONFIG_FILE, WEIGHTS_FILE, HIERARCHY_FILE = "synthetic_model_config.json", "synthetic_model.safetensors", "hierarchy.json"
STD_SEED, MEAN_SEED = 1, 2  # SAELens's offsets of the model's seed for its magnitudes' draws


def is_model(path: Any) -> bool:
    return isinstance(path, (str, Path)) and (Path(path) / CONFIG_FILE).is_file()


def weights_sha256(path: Path) -> str:
    return hashlib.sha256((Path(path) / WEIGHTS_FILE).read_bytes()).hexdigest()


@dataclass
class Model:
    data: Config  # its shape, probabilities and trees as our synthetic data's config (figures, scores)
    parts: Parts
    features: Float[Tensor, "feat hidden"]
    bias: Float[Tensor, "hidden"]


def read(path: str | Path) -> Model:
    """A saved SyntheticModel; ConfigError, one line, where it is not one we can draw."""
    path = Path(path)
    try:
        config = json.loads((path / CONFIG_FILE).read_text())
        weights = load((path / WEIGHTS_FILE).read_bytes())
        tree = json.loads((path / HIERARCHY_FILE).read_text()) if (path / HIERARCHY_FILE).is_file() else {"roots": []}
    except (OSError, ValueError) as error:
        raise ConfigError(f"data: {path} is not a readable SAELens synthetic model ({error})") from None
    missing = {"feature_vectors", "firing_probabilities"} - set(weights)
    if missing:
        raise ConfigError(f"data: {path}/{WEIGHTS_FILE} has no {sorted(missing)[0]}; save the model with SAELens's SyntheticModel.save")
    F = weights["feature_vectors"].float()
    n, d = F.shape
    probs = weights["firing_probabilities"].float().clamp(min=2.0**-24)
    parents, exclusive, scaled = _tree(tree["roots"], path)
    factor = weights.get("correlation_factor")
    if factor is not None and not torch.allclose(weights["correlation_diag"].float(), diagonal(factor.float()), atol=1e-5):
        raise ConfigError(f"data: {path}'s correlation_diag is not 1 - sum of the factor's squares (floored at 0.01), which is all we draw")
    seed = config.get("seed")
    mean = _magnitudes(config.get("mean_firing_magnitudes", 1.0), n, seed, MEAN_SEED, path)
    std = _magnitudes(config.get("std_firing_magnitudes", 0.0), n, seed, STD_SEED, path)
    std = std if bool(std.any()) else None  # constant magnitudes: nothing to draw (synthetic.Parts)
    # the options say what the draw is made of, so that what decides on them (the engine, figure
    # titles) decides right; the draw itself is of the model's own tensors (SAELensSource)
    options = {"parents": parents, "exclusive": exclusive, "scale_children": scaled} if parents else {}
    options |= {"correlation_rank": factor.shape[1]} if factor is not None else {}
    options |= {"magnitude": "normal", "magnitude_mean": float(mean.mean()), "magnitude_std": 0.0 if std is None else float(std.mean())}
    data = Config(features=n, hidden=d, feature_probability=[probs.tolist()], data="synthetic", data_options=options)
    parts = Parts(parents, exclusive, False, scaled, None if factor is None else factor.float(), mean, std)
    return Model(data, parts, F, weights.get("bias", torch.zeros(d)).float())


def _tree(roots: list[dict], path: Path) -> tuple[list[int], list[int], bool]:
    """(parents, the parents whose children are exclusive, scale_children) of hierarchy.json's nodes."""
    edges: dict[int, int] = {}
    exclusive: list[int] = []
    scales: set[bool] = set()

    def visit(node: dict, parent: int) -> None:
        index = node.get("feature_index")
        if index is None:
            raise ConfigError(f"data: {path}/{HIERARCHY_FILE} has a node without a feature; we draw trees whose nodes are features")
        edges[index] = parent
        if node.get("children"):
            scales.add(bool(node.get("scale_children_by_parent")))
            if node.get("mutually_exclusive_children"):
                exclusive.append(index)
        for child in node.get("children", []):
            visit(child, index)

    for root in roots:
        visit(root, -1)
    if not edges:
        return [], [], False
    if len(scales) > 1:
        raise ConfigError(f"data: {path}/{HIERARCHY_FILE} scales some children by their parents and not others; we scale all or none")
    parents = [edges.get(i, -1) for i in range(max(edges) + 1)]
    if any(p >= i for i, p in enumerate(parents)):
        raise ConfigError(f"data: {path}/{HIERARCHY_FILE} numbers a child before its parent; we draw trees numbered breadth first, as SAELens makes them")
    return parents, sorted(exclusive), scales == {True}


def _magnitudes(spec: Any, n: int, seed: int | None, offset: int, path: Path) -> Float[Tensor, "feat"]:
    """A magnitude config of SAELens's as its per-feature values."""
    if isinstance(spec, (int, float)):
        return torch.full((n,), float(spec))
    name = spec.get("generator_name")
    if name == "constant":
        return torch.full((n,), float(spec["value"]))
    if name == "linear":
        return linear_means(n, float(spec["start"]), float(spec["end"]), torch.device("cpu"))
    if name == "exponential":
        return float(spec["start"]) * (float(spec["end"]) / float(spec["start"])) ** torch.linspace(0, 1, n)
    if name == "folded_normal":
        if seed is None:
            raise ConfigError(f"data: {path}'s folded-normal magnitudes were drawn without a seed; SAELens cannot draw them again either")
        draws = torch.randn(n, generator=torch.Generator().manual_seed(seed + offset))
        values = (float(spec["mean"]) + draws * float(spec["std"])).abs()
        low, high = spec.get("min_value"), spec.get("max_value")
        return values.clamp(min=low, max=high) if low is not None or high is not None else values
    raise ConfigError(f"data: {path} has magnitudes {name!r}; we read constant, linear, exponential and folded_normal")


class SAELensSource(RunSource):
    """A SAELens model's activations: x F + bias, x drawn from its parts (one instance)."""

    def __init__(self, model: Model, device: str):
        super().__init__(model.data, model.features[None], device)
        move = {k: getattr(model.parts, k) for k in ("factor", "mean", "std")}
        self.parts = Parts(**{**model.parts.__dict__, **{k: None if v is None else v.to(device) for k, v in move.items()}})
        self.bias = model.bias.to(device)

    def inputs(self, seed: int, rows: int, step: int) -> Float[Tensor, "inst rows feat"]:
        stream = Stream(step_keys(seed, self.ids, step), counters(self.config.features, rows, self.W.device))
        return compose(self.parts, self.probs[:, :, None], stream).transpose(1, 2)

    def kernel_draw(self) -> KernelDraw | None:
        return kernel_draw(self.parts)


def export(config: Config, W: Float[Tensor, "inst feat hidden"], instance: int, out: Path) -> list[str]:
    """Write instance `instance` of a toy run as a SAELens model directory at `out`; the
    notes on what SAELens cannot hold exactly."""
    if not 0 <= instance < config.instances:
        raise ConfigError(f"instance: {instance} is not one of the run's instances (0 to {config.instances - 1})")
    if config.data not in ("paper", "synthetic"):
        raise ConfigError(f"data: {config.data} data has no SAELens equivalent; paper and synthetic data do")
    generator = GENERATORS[config.data]
    options, notes = generator.options(config), []
    if config.data == "paper" and options.correlation != "none":
        raise ConfigError(f"correlation: SAELens has no {options.correlation} sets; export independent or synthetic data")
    if config.normalize:
        raise ConfigError("normalize: SAELens does not scale examples to unit norm; export a run without it")
    n, d = config.features, config.hidden
    probs = torch.tensor(config.feature_probability[instance])[None, :, None]
    parents = generator.hierarchy(config)
    synthetic = config.data == "synthetic"
    if parents and options.compensate:
        probs = compensated(probs, parents, options.exclusive)
    weights = {"feature_vectors": W[instance].float().contiguous(), "bias": torch.zeros(d), "firing_probabilities": probs.flatten().float()}
    if synthetic and options.correlation_rank and not bool((probs == probs.flatten()[0]).all()):
        # SyntheticModel.load_from_disk sets the copula's thresholds from the probabilities its
        # config regenerates, before it loads the saved ones: only a constant one survives that
        raise ConfigError(
            "correlation_rank: SAELens draws correlated firing at the probabilities its config regenerates, not at saved "
            "per-feature ones; export correlated data whose features (after compensation) share one probability"
        )
    if synthetic and options.correlation_rank:
        F = copula_factor(options.structure_seed, n, options.correlation_rank, options.correlation_scale, torch.device("cpu"))
        weights |= {"correlation_factor": F.contiguous(), "correlation_diag": diagonal(F)}
    if synthetic and options.magnitude == "normal":
        mean = _linear(options.magnitude_mean, options.magnitude_mean_end)
        spread = spreads(n, options.magnitude_std, options.magnitude_std_spread, options.structure_seed, torch.device("cpu"))
        std = _linear(float(spread.mean()), None)
        if options.magnitude_std_spread:
            notes.append(
                "magnitude_std_spread: SAELens regenerates per-feature spreads from its own seed; the model holds their "
                f"mean ({float(spread.mean()):.3g}) for every feature instead"
            )
    else:
        mean, std = {"value": 0.5, "generator_name": "constant"}, {"value": 1 / math.sqrt(12), "generator_name": "constant"}
        notes.append("magnitudes: SAELens has no U[0, 1]; written as ReLU(0.5 + N(0, 1/12)), its mean and standard deviation")
    record = {
        "num_features": n, "hidden_dim": d,
        # its tensor holds each feature's, which SAELens loads over what this regenerates
        "firing_probability": {"probability": float(probs.flatten()[0]), "generator_name": "constant"},
        "hierarchy": None, "orthogonalization": None,
        "correlation": {"rank": options.correlation_rank, "correlation_scale": options.correlation_scale, "seed": None}
        if synthetic and options.correlation_rank else None,
        "std_firing_magnitudes": std, "mean_firing_magnitudes": mean, "bias": 0.0, "dtype": "float32", "seed": 0,
    }  # fmt: skip
    with atomic_dir(Path(out), "saelens-model") as staging:
        (staging / CONFIG_FILE).write_text(to_json(record))
        (staging / WEIGHTS_FILE).write_bytes(save(weights))
        if parents:
            exclusive = options.exclusive
            (staging / HIERARCHY_FILE).write_text(to_json({"roots": _nodes(parents, exclusive, options.scale_children)}))
        seal(staging, "saelens-model", [f.name for f in staging.iterdir()])
    return notes


def _linear(start: float, end: float | None) -> dict[str, Any]:
    if end is None:
        return {"value": start, "generator_name": "constant"}
    return {"start": start, "end": end, "generator_name": "linear"}


def _nodes(parents: list[int], exclusive: bool | list[int], scale: bool) -> list[dict]:
    children: dict[int, list[int]] = {}
    for i, p in enumerate(parents):
        children.setdefault(p, []).append(i)

    def node(i: int) -> dict:
        kids = children.get(i, [])
        return {
            "feature_index": i, "mutually_exclusive_children": bool(kids) and (exclusive is True or (isinstance(exclusive, list) and i in exclusive)),
            "scale_children_by_parent": bool(kids) and scale, "feature_id": None, "children": [node(k) for k in kids],
        }  # fmt: skip

    return [node(r) for r in children.get(-1, []) if children.get(r)]
