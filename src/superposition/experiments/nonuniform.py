"""Non-uniform superposition: one feature made sparser than the rest.

n=5, m=2, I=1; four features present with probability 0.05, the fifth's probability
swept down from 0.05. Every setting trains several copies (`--seeds`, default 8:
the paper needed restarts here) and each copy's geometry is named; the loss of each
configuration is that of its best copy, all judged on the same evaluation batch.
Claims: equal densities give a regular pentagon; a fifth feature ~2.5x sparser
snaps the solution to two digons, the fifth dropped.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from ..config import resolve
from ..geometry import polygon
from ..metrics import eval_loss
from ..plots import describe, save_figure
from . import Claim, Options, Outcome, fit

BASE = 0.05
FIFTH = [0.05, 0.045, 0.04, 0.035, 0.03, 0.025, 0.02, 0.015, 0.01]
CONFIGURATIONS = ("pentagon", "two antipodal pairs")


def run(directory: Path, options: Options) -> Outcome:
    copies = options.restarts or (4 if options.quick else 8)
    probs = [[BASE] * 4 + [p] for p in FIFTH]
    keys = {
        "features": 5,
        "hidden": 2,
        "importance_decay": 1.0,
        "feature_probability": [row for row in probs for _ in range(copies)],
        "steps": 6000 if options.quick else 10_000,
        "lr": 3e-3 if options.quick else 1e-3,
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
            _snap_note(table),
        ),
    ]
    return Outcome(claims=claims, table=table)


def _snap_note(table: list[dict]) -> str:
    digons = [row["fifth density"] for row in table if row["best geometry"] == "two antipodal pairs"]
    if not digons:
        return f"no density down to {FIFTH[-1]} ({BASE / FIFTH[-1]:.1f}x sparser) gives two digons"
    return f"here the snap to two digons comes at {digons[0]} ({BASE / digons[0]:.1f}x sparser than the others)"


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
