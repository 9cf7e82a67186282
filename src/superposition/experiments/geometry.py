"""The geometry of superposition: many features of equal importance, density swept.

The paper's size: "a model with n=400 features and m=30 hidden dimensions", I=1,
here over 30 densities 1 … 0.001 (--quick: n=40, m=8). Figures: D* against 1/(1-S)
on a log axis with lines at 1 and 1/2 (the paper's "sticky" plot), every represented
feature's D_i with lines at 1, 3/4, 2/3, 1/2, 2/5, 3/8, and a histogram of the D_i
where D* is between 0.3 and 0.55. Claims: D* sticks at 1/2 (antipodal pairs) over a
range of densities; there the D_i cluster at those fractions (the shares near each
are in the table). geometry.local_geometry names each feature's polytope.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..analysis.geometry import POLYTOPES, local_geometry
from ..labels import describe
from ..plots import save_figure
from . import Claim, Options, Outcome, fit

FRACTIONS = [1, 3 / 4, 2 / 3, 1 / 2, 2 / 5, 3 / 8]
FRACTION_NAMES = ["1", "3/4", "2/3", "1/2", "2/5", "3/8"]
NEAR = 0.03  # |D_i - fraction| counted as "at" the fraction
PLATEAU = 0.05  # |D* - 1/2| counted as on the plateau
PACKED = (0.3, 0.55)  # the D* window where the clusters are looked for


def run(directory: Path, options: Options) -> Outcome:
    n, m, count = (40, 8, 12) if options.quick else (400, 30, 30)
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
    packed = (d_star >= PACKED[0]) & (d_star <= PACKED[1])
    window = np.concatenate([di for di, keep in zip(dims, packed) if keep] or [np.zeros(0)])
    save_figure(_figure(density, d_star, dims, window, describe(result.config)), directory / "geometry.png")
    shares = _shares(window)
    table = [
        {"1/(1-S)": round(1 / p, 2), "D*": round(float(d), 3), "represented": len(di)}
        | {name: c[name] for name in [*POLYTOPES, "other", "not learned"]}
        for p, d, di, c in zip(density, d_star, dims, names)
    ]
    on_plateau = np.abs(d_star - 0.5) < PLATEAU
    run_length = _longest_run(on_plateau)
    near_all = _near(np.concatenate(dims))
    near = _near(window)
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
            f"where {PACKED[0]} <= D* <= {PACKED[1]} ({int(packed.sum())} densities): {near.mean():.0%} of "
            f"{len(near)} represented features within ±{NEAR} of one ("
            + ", ".join(f"{k} {v:.0%}" for k, v in shares.items())
            + f"; a uniform spread over [0.3, 1] would put {baseline:.0%} there); "
            f"over all densities {near_all.mean():.0%} of {len(near_all)}",
            len(near) > 0 and near.mean() >= 0.7,
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


def _shares(dims: np.ndarray) -> dict[str, float]:
    """Share of the D_i within NEAR of each fraction."""
    return {f"near {name}": float(np.mean(np.abs(dims - value) < NEAR)) if len(dims) else 0.0 for name, value in zip(FRACTION_NAMES, FRACTIONS)}


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


def _figure(density, d_star, dims, window, trained: str) -> Figure:
    fig = Figure(figsize=(17, 4.4))
    sticky, scatter, histogram = fig.subplots(1, 3)
    scatter.sharex(sticky)
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
    histogram.hist(window, bins=np.linspace(0, 1.1, 111), color="tab:blue")
    for value in FRACTIONS:
        histogram.axvline(value, color="grey", lw=0.6, ls="--")
    histogram.set_xlabel(f"D_i where {PACKED[0]} <= D* <= {PACKED[1]}")
    histogram.set_ylabel("represented features")
    fig.suptitle(trained, fontsize=8)
    return fig
