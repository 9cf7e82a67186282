"""Non-uniform superposition: one feature made sparser than the rest.

n=5, m=2, I=1; four features present with probability 0.05, the fifth's probability
swept down from 0.05. Every setting trains several copies (`--seeds`, default 16:
"Getting clean results required fitting each model multiple times and taking the
solution with the lowest loss") and each copy's geometry is named; the loss of each
configuration is that of its best copy, all judged on one large evaluation batch.

What the paper shows (section "Perturbing a Single Feature"; its figure's axis is the
"Relative Feature Density (1-S)", baseline 1-S = 0.05): "If we make it sufficiently
sparse, there's a phase change, and it collapses from a pentagon to a pair of digons
with the sparser point at zero. The phase change corresponds to loss curves
corresponding to the two different geometries crossing over." The figure's note puts
the threshold at "~2.5x less than others", i.e. a fifth density near 0.02.
Claims: equal densities give a regular pentagon; at 0.02 the best solution is two
digons with the fifth dropped; the note gives where our two loss curves cross.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from ..config import resolve
from ..analysis.geometry import polygon
from ..labels import describe
from ..analysis.metrics import eval_loss
from ..plots import save_figure
from ..analysis.theory import variance
from . import Claim, Options, Outcome, fit

BASE = 0.05
FIFTH = [0.05, 0.045, 0.04, 0.035, 0.03, 0.025, 0.02, 0.015, 0.01]
CONFIGURATIONS = ("pentagon", "two antipodal pairs")


def run(directory: Path, options: Options) -> Outcome:
    copies = options.restarts or (4 if options.quick else 16)
    probs = [[BASE] * 4 + [p] for p in FIFTH]
    keys = {
        "features": 5,
        "hidden": 2,
        "importance_decay": 1.0,
        "feature_probability": [row for row in probs for _ in range(copies)],
        "steps": 6000 if options.quick else 10_000,
        "lr": 3e-3 if options.quick else 1e-3,
        # ~10,000 non-zero values per feature: the two curves differ by a few percent near the crossing
        "eval_batch_size": 200_000,
    }
    result, _ = fit(directory / "copies", keys, replace(options, restarts=1))  # copies are trained explicitly
    base = resolve({**keys, "feature_probability": probs, **options.overrides})
    params = result.params
    losses = torch.stack([eval_loss(base, {n: v[r::copies] for n, v in params.items()}) for r in range(copies)])
    shapes = [[polygon(params["W"][k * copies + r]) for r in range(copies)] for k in range(len(FIFTH))]
    best = {name: [] for name in CONFIGURATIONS}
    table = []
    for k, p in enumerate(FIFTH):
        for name in CONFIGURATIONS:
            found = [float(losses[r, k]) for r in range(copies) if shapes[k][r][0] == name]
            best[name].append(min(found) if found else np.nan)
        winner = int(losses[:, k].argmin())
        table.append(
            {
                "fifth density": p,
                "best geometry": shapes[k][winner][0],
                "represented": str(shapes[k][winner][1]),
                "pentagon loss": best["pentagon"][-1],
                "two-digon loss": best["two antipodal pairs"][-1],
                "copies: pentagon / two digons / other": "/".join(
                    str(sum(shape[0] == name for shape in shapes[k])) for name in CONFIGURATIONS
                )
                + f"/{sum(shape[0] not in CONFIGURATIONS for shape in shapes[k])}",
            }
        )
    save_figure(_figure(best, describe(result.config)), directory / "nonuniform.png")
    equal = table[0]
    sparser = table[FIFTH.index(0.02)]
    claims = [
        Claim(
            "all five at density 0.05: a regular pentagon",
            "pentagon",
            f"{equal['best geometry']} of {equal['represented']}",
            equal["best geometry"] == "pentagon",
        ),
        Claim(
            "the fifth feature ~2.5x sparser (0.02): two digons, the fifth dropped",
            "two digons",
            f"{sparser['best geometry']} of {sparser['represented']}; best geometry by fifth density: "
            + ", ".join(f"{row['fifth density']}: {row['best geometry']}" for row in table),
            sparser["best geometry"] == "two antipodal pairs" and sparser["represented"] == "[0, 1, 2, 3]",
            _crossing_note(best) + _dropping_note(table),
        ),
    ]
    return Outcome(claims=claims, table=table)


def _crossing_note(best: dict[str, list[float]]) -> str:
    """Where the two loss curves cross: the first fifth density (going sparser) at which
    the best two-digon copy beats the best pentagon copy."""
    pentagon, digons = best["pentagon"], best["two antipodal pairs"]
    for k, p in enumerate(FIFTH):
        if digons[k] < pentagon[k] or (np.isnan(pentagon[k]) and not np.isnan(digons[k])):
            before = f"between {FIFTH[k - 1]} and {p}" if k else f"at or above {p}"
            return (
                f"the loss curves of the two geometries cross {before} "
                f"({BASE / FIFTH[k - 1] if k else 1:.1f}-{BASE / p:.1f}x sparser than the others; the paper: ~2.5x)"
            )
    return f"the two-digon loss stays above the pentagon's down to {FIFTH[-1]} ({BASE / FIFTH[-1]:.1f}x sparser)"


def _dropping_note(table: list[dict]) -> str:
    """What two digons cannot avoid: the dropped fifth feature's error alone, Var(x)/5 (the
    loss is a mean over features), against the best pentagon's whole loss."""
    row = table[FIFTH.index(0.02)]
    return (
        f"; at 0.02 the dropped fifth feature alone costs Var(x)/5 = {variance(0.02) / 5:.3g}, "
        f"the best pentagon's whole loss is {row['pentagon loss']:.3g}"
    )


def _figure(best: dict[str, list[float]], trained: str) -> Figure:
    fig = Figure(figsize=(6.5, 4.2))
    ax = fig.subplots()
    for name, marker in zip(CONFIGURATIONS, ("o-", "s--")):
        ax.plot(FIFTH, best[name], marker, ms=4, label=name if name == "pentagon" else "two digons")
    ax.invert_xaxis()
    ax.set_xlabel("density of the fifth feature (the others 0.05)")
    ax.set_ylabel("evaluation loss of the best copy")
    ax.legend(fontsize=8)
    fig.suptitle(trained, fontsize=7)
    return fig
