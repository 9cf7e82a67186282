"""The geometry of superposition: many features of equal importance, density swept.

n=200, m=20 (the paper also shows n=400, m=30), I=1, densities 1 … 0.001. Figures:
D* against 1/(1-S) on a log axis with lines at 1 and 1/2 (the paper's "sticky"
plot), and every represented feature's D_i with lines at 1, 3/4, 2/3, 1/2, 2/5, 3/8.
Claims: D* sticks at 1/2 (antipodal pairs) over a range of densities; the D_i
cluster at those fractions. geometry.local_geometry names each feature's polytope.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..geometry import POLYTOPES, local_geometry
from ..labels import describe
from ..plots import save_figure
from . import Claim, Options, Outcome, fit

FRACTIONS = [1, 3 / 4, 2 / 3, 1 / 2, 2 / 5, 3 / 8]
NEAR = 0.03  # |D_i - fraction| counted as "at" the fraction
PLATEAU = 0.05  # |D* - 1/2| counted as on the plateau


def run(directory: Path, options: Options) -> Outcome:
    n, m, count = (40, 8, 12) if options.quick else (200, 20, 30)
    density = np.logspace(0, -3, count)
    keys = {
        "features": n,
        "hidden": m,
        "importance_decay": 1.0,
        "feature_probability": [[float(p)] * n for p in density],
        "steps": 4000 if options.quick else 20_000,
        "lr": 3e-3 if options.quick else 1e-3,
    }
    result, metrics = fit(directory / f"{n}x{m}", keys, options)
    instances = metrics["instances"]
    d_star = np.array([x["dimensions_per_feature"] for x in instances])
    dims = [np.array(x["feature_dimensionality"])[np.array(x["feature_norms"]) > 0.5] for x in instances]
    names = [Counter(local_geometry(W)) for W in result.params["W"]]
    save_figure(_figure(density, d_star, dims, describe(result.config)), directory / "geometry.png")
    table = [
        {"1/(1-S)": round(1 / p, 2), "D*": round(float(d), 3), "represented": len(di)}
        | {name: c[name] for name in [*POLYTOPES, "other", "not learned"]}
        for p, d, di, c in zip(density, d_star, dims, names)
    ]
    on_plateau = np.abs(d_star - 0.5) < PLATEAU
    run_length = _longest_run(on_plateau)
    # every listed fraction is >= 3/8: where D* < 3/8 the average feature must sit below
    # them all, so the clusters can only be looked for where D* >= 3/8
    packed = d_star >= min(FRACTIONS)
    near_all = _near(np.concatenate(dims))
    near = _near(np.concatenate([di for di, keep in zip(dims, packed) if keep]))
    baseline = _uniform_share()
    plateau_names = sum((names[k] for k in np.flatnonzero(on_plateau)), Counter())
    plateau_represented = sum(len(dims[k]) for k in np.flatnonzero(on_plateau))
    claims = [
        Claim(
            "D* is sticky at 1/2: it stays near 1/2 (antipodal pairs) over a range of densities",
            "plateau at 1/2",
            f"{int(on_plateau.sum())} of {count} densities within ±{PLATEAU} of 1/2, longest run {run_length} "
            f"(1/(1-S) {', '.join(f'{1 / p:.3g}' for p in density[on_plateau])})",
            run_length >= 3,
        ),
        Claim(
            "feature dimensionalities D_i cluster at 1, 3/4, 2/3, 1/2, 2/5, 3/8",
            "clusters at those fractions",
            f"where D* >= 3/8 ({int(packed.sum())} densities): {near.mean():.0%} of {len(near)} represented "
            f"features within ±{NEAR} of one (a uniform spread over [0.3, 1] would put {baseline:.0%} there); "
            f"over all densities {near_all.mean():.0%} of {len(near_all)}",
            near.mean() >= 0.7,
            f"sparser than that, D_i fall smoothly to {np.median(dims[-1]):.2f} (m/n = {m / n:.2f}): "
            "features crowd into larger, non-uniform arrangements",
        ),
        Claim(
            "on the plateau the features are in antipodal pairs (digons)",
            "digons",
            f"{plateau_names['digon']} of {plateau_represented} represented features on the plateau are digons; "
            f"others: {dict((k, v) for k, v in plateau_names.items() if k not in ('digon', 'not learned'))}",
            plateau_represented > 0 and plateau_names["digon"] >= 0.5 * plateau_represented,
        ),
    ]
    return Outcome(claims=claims, table=table)


def _near(dims: np.ndarray) -> np.ndarray:
    return np.min(np.abs(dims[:, None] - np.array(FRACTIONS)[None]), axis=1) < NEAR


def _longest_run(mask: np.ndarray) -> int:
    best = current = 0
    for value in mask:
        current = current + 1 if value else 0
        best = max(best, current)
    return best


def _uniform_share() -> float:
    """Share of [0.3, 1] within NEAR of some fraction."""
    grid = np.linspace(0.3, 1, 70001)
    return float(_near(grid).mean())


def _figure(density, d_star, dims, trained: str) -> Figure:
    fig = Figure(figsize=(12, 4.4))
    sticky, scatter = fig.subplots(1, 2, sharex=True)
    x = 1 / density
    sticky.plot(x, d_star, "o-", color="black", ms=3)
    scatter.set_xscale("log")
    for value in (1, 0.5):
        sticky.axhline(value, color="grey", lw=0.8, ls="--")
    sticky.set_ylabel("dimensions per feature D* = m / ‖W‖²_F")
    sticky.set_ylim(0, 1.1)
    for xi, di in zip(x, dims):
        scatter.scatter(np.full(len(di), xi), di, s=6, alpha=0.5, color="tab:blue")
    for value in FRACTIONS:
        scatter.axhline(value, color="grey", lw=0.6, ls="--")
    scatter.set_ylabel("feature dimensionality D_i (represented features)")
    scatter.set_ylim(0, 1.1)
    for ax in (sticky, scatter):
        ax.set_xlabel("1/(1-S)")
    fig.suptitle(trained, fontsize=8)
    return fig
