"""The paper's introduction: 5 features in 2 dimensions, I = 0.9^i, sparsity swept.

Claims (Elhage et al., 2022, §"Demonstrating superposition"): dense data gives the
2 most important features orthogonal directions and drops the rest; at ~80%
sparsity the 4 most important form two antipodal pairs; from ~90% on all 5 form a
pentagon. Which sparsity tips it varies by run, so every density keeps the best of
several copies (`--seeds`, default 4), as the paper does.
"""

from __future__ import annotations

from pathlib import Path

from ..analysis.geometry import polygon
from ..plots import polygon_figure, save_figure
from . import Claim, Options, Outcome, fit

DENSITIES = [1.0, 0.5, 0.3, 0.2, 0.15, 0.1, 0.05, 0.03, 0.01]


def run(directory: Path, options: Options) -> Outcome:
    keys = {
        "features": 5,
        "hidden": 2,
        "importance_decay": 0.9,
        "feature_probability": [[p] * 5 for p in DENSITIES],
        "steps": 10_000,
    }
    if options.quick:
        keys.update(steps=3000, lr=3e-3)
    result, _ = fit(directory / "runs", keys, options, restarts=2 if options.quick else 4)
    save_figure(polygon_figure(result.config, result.params), directory / "intro.png")
    shapes = [polygon(W) for W in result.params["W"]]
    table = [{"density": p, "geometry": kind, "represented": str(rep)} for p, (kind, rep) in zip(DENSITIES, shapes)]

    def at(p: float) -> tuple[str, list[int]]:
        return shapes[DENSITIES.index(p)]

    sparse = [(p, at(p)[0]) for p in DENSITIES if p <= 0.1]
    claims = [
        Claim(
            "dense (1-S = 1): the 2 most important features, orthogonal; the rest dropped",
            "orthogonal pair of features 0, 1",
            f"{at(1.0)[0]} of features {at(1.0)[1]}",
            at(1.0) == ("orthogonal pair", [0, 1]),
        ),
        Claim(
            "~80% sparsity (1-S = 0.2): the 4 most important in two antipodal pairs, the 5th dropped",
            "two antipodal pairs of features 0-3",
            f"{at(0.2)[0]} of features {at(0.2)[1]}",
            at(0.2) == ("two antipodal pairs", [0, 1, 2, 3]),
        ),
        Claim(
            "~90% sparsity and beyond (1-S <= 0.1): all 5 features in a regular pentagon",
            "pentagon (72° apart)",
            ", ".join(f"1-S={p}: {kind}" for p, kind in sparse),
            all(kind == "pentagon" for _, kind in sparse),
        ),
    ]
    return Outcome(claims=claims, table=table)
