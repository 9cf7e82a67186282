"""The seed project's experiment: its One Weight (tied) and Two Weight (untied) nets.

Settings as the seed ran them (../shared/seed/NOTES.md): 20 features into 5,
sparsities 0 … 0.999, importance 0.7^i, AdamW lr 1e-3 wd 0.01, batch 1024,
10,000 steps, the seed's data. Two differences are options, not defaults:
`data="paper"` switches to the paper's distribution and `warm_start=True`
trains the sparsities in sequence from the previous one's weights, as the seed did.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ..config import SEED_SPARSITIES, resolve
from ..files import REPRODUCTION, atomic_dir
from ..plots import gram_figure, save_figure
from ..runs import package_version, record
from ..train import train

SETTINGS: dict[str, Any] = {
    "features": 20,
    "hidden": 5,
    "sparsity": list(SEED_SPARSITIES),
    "importance_decay": 0.7,
    "activation": "relu",
    "optimizer": "adamw",
    "lr": 1e-3,
    "weight_decay": 0.01,
    "batch_size": 1024,
    "steps": 10_000,
    "data": "seed",
}
# The seed's names for its two nets, and ours.
MODELS = {"one_weight": "tied", "two_weight": "untied"}


def reproduce(out: Path, overrides: dict[str, Any], progress: bool = False) -> list[dict[str, Any]]:
    """Train both nets into out/one_weight and out/two_weight; return the summary rows."""
    configs = {name: resolve({**SETTINGS, **overrides, "model": model}) for name, model in MODELS.items()}
    rows = []
    started = time.perf_counter()
    with atomic_dir(out) as staging:
        for name, config in configs.items():
            result = train(config, progress=progress)
            (staging / name).mkdir()
            metrics = record(staging / name, result)
            save_figure(gram_figure(config, result.params), staging / f"{name}.png")
            for instance in metrics["instances"]:
                rows.append(
                    {
                        "net": name,
                        "model": result.config.model,
                        "sparsity": round(1 - instance["feature_probability"][0], 12),
                        "represented": instance["represented"],
                        "diagonal_count": instance["diagonal_count"],
                        "loss": instance["loss"],
                    }
                )
        summary = {
            "preset": "seed",
            "overrides": overrides,
            "package_version": package_version(),
            "wall_seconds": time.perf_counter() - started,
            "summary": rows,
        }
        (staging / REPRODUCTION).write_text(json.dumps(summary, indent=2))
    return rows
