"""The words and names built from the config that was trained: figure titles, panel
labels, file stems. No plotting library here, so the command line can name a run
without loading matplotlib.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .config import Config
from .data import GENERATORS
from .models import KINDS


def density_label(probabilities: list[float]) -> str:
    low, high = min(probabilities), max(probabilities)
    return f"1-S={low:.3f}" if low == high else f"1-S={low:.3g}…{high:.3g}"


def importance_label(importance: list[list[float]]) -> str:
    rows = {tuple(row) for row in importance}
    if len(rows) > 1:
        return "I varies by instance"
    row = np.array(next(iter(rows)))
    if np.allclose(row, row[0]):
        return f"I={row[0]:g}"
    ratios = row[1:] / np.where(row[:-1] == 0, np.nan, row[:-1])
    if row[0] == 1 and np.allclose(ratios, ratios[0]):
        return f"I={ratios[0]:.3g}^i"
    return f"I={row[0]:.3g}…{row[-1]:.3g}"


def describe(config: Config) -> str:
    """One line naming what was trained, for figure titles."""
    optimizer = {"adamw": "AdamW", "adam": "Adam", "sgd": f"SGD (momentum {config.momentum:g})"}[config.optimizer]
    warm = ", warm start" if config.warm_start else ""
    copies = f", {config.replicates} copies of each" if config.replicates > 1 else ""
    data = GENERATORS[config.data].describe(config)
    if config.target == "abs":
        data += ", target |x|"
    if config.normalize:
        data += " scaled to unit norm"
    if config.loss_reduction == "sum":
        data += ", loss summed over features"
    batch = config.batch_size
    if config.dataset_size:
        data += f", {config.dataset_size:,} training examples"
        batch = min(batch, config.dataset_size)
    return (
        f"{KINDS[config.model].describe(config)}, {config.features} features → {config.hidden} hidden, "
        f"{importance_label(config.importance)}, {data}, {optimizer} lr {config.lr:g} "
        f"wd {config.weight_decay:g}, {config.steps:,} steps × {batch}, seed {config.seed}{copies}{warm}"
    )


def stem(config: Config) -> str:
    return f"{KINDS[config.model].stem(config)}-{config.features}x{config.hidden}"


def sae_source(config) -> str:
    """What a batch of SAEs was trained on."""
    if config.source == "run":
        source = f"run {Path(config.run).name if config.run else '(not saved)'}"
    elif config.source == "saelens":
        source = f"SAELens model {Path(config.run).name}"
    else:
        firing = config.firing
        if firing:
            rate = f"{firing['firing']} firing {firing['firing_max']:g} to {firing['firing_min']:g}"
        elif isinstance(config.density, list):
            rate = f"densities {min(config.density):g} to {max(config.density):g}"
        else:
            rate = f"density {config.density:g}"
        shape = Config(features=config.features, hidden=config.dims, sparsity=[0.0], data=config.generator, data_options=config.data_options)
        data = "" if config.generator == "paper" else f" of {GENERATORS[config.generator].describe(shape)}"
        source = f"a random {'orthonormal ' if config.orthogonal else ''}dictionary{data}, {rate}"
    return f"{source}: {config.features} features in {config.dims} dims"


def describe_sae(config) -> str:
    """One line naming a batch of SAEs and what they were trained on, for figure titles."""
    from .saes import SAE_KINDS

    return (
        f"{config.kind} SAE ({SAE_KINDS[config.kind].formula}), {config.latents} latents, on {sae_source(config)}; "
        f"{config.steps:,} steps × {config.batch_size}, "
        f"Adam lr {config.lr:g}, {'resampling' if config.resample else 'no resampling'}, seed {config.seed}"
    )


def sae_stem(config) -> str:
    return f"sae-{config.kind}-{config.latents}-on-{config.features}x{config.dims}"


# What each column of a run's table means, said once beneath it (the command line and the report)
COLUMN_MEANINGS = {
    "1-S": "the probability that a feature is present in an example (S is the sparsity)",
    "loss": "importance-weighted squared error on a fixed evaluation batch",
    "repr": "features represented, ‖W_i‖ > 0.5",
    "diag": "features whose own output weight (W Wᵀ)_ii exceeds 0.5, the seed's count",
    "D*": "hidden dimensions per feature, m / ‖W‖_F² (1/2 for antipodal pairs, 2/5 for a pentagon)",
    "superpos": "superposition Σ_{j≠i} (Ŵ_i·W_j)², averaged over features; 0 when every feature has a direction of its own",
    "T": "examples in the training set",
    "train": "importance-weighted squared error on the training set",
    "test": "the same on a fresh test set",
}


def metric_legend(config: Config) -> str:
    """What every column of `metric_rows` means, for this config's table."""
    columns = [c for c in COLUMN_MEANINGS if c != ("loss" if config.dataset_size else "T")]
    columns = [c for c in columns if config.dataset_size or c not in ("train", "test")]
    return " ".join(f"{c}: {COLUMN_MEANINGS[c]}." for c in columns)


def metric_rows(config: Config, metrics: dict) -> list[dict[str, float | int | str]]:
    """One row per instance: the numbers a run's table shows (see COLUMN_MEANINGS)."""
    rows = []
    for k, m in enumerate(metrics["instances"]):
        probs = m["feature_probability"]
        row = {
            "inst": k,
            "1-S": sum(probs) / len(probs),
            "loss": m["loss"],
            "repr": f"{m['represented']}/{config.features}",
            "diag": m["diagonal_count"],
            "D*": m["dimensions_per_feature"],
            "superpos": sum(m["superposition"]) / len(m["superposition"]),
        }
        if config.dataset_size:
            row.update({"T": config.dataset_size, "train": m["train_loss"], "test": m["test_loss"]})
            del row["loss"]  # the test loss, shown under its own name
        rows.append(row)
    return rows
