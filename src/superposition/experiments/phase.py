"""Phase diagrams: when does an extra feature get learned, alone or in superposition?

n=2, m=1 and n=3, m=2, tied ReLU models. The extra (last) feature's importance runs
from 0.1 to 10 and the density of every feature from 1 to 0.01, both on log grids;
the other features have importance 1. Each cell keeps the best of several copies
(`--seeds`, default 3). For n=2, a cell is "not learned" when the extra feature's
norm is at most 0.5, "learned alone" when it is represented and the other is not,
"superposition" when both are. For n=3 a cell is one of the paper's four
configurations or the triangle, read from the direction W ignores (theory.py), or
"other". The analytic diagram comes from theory.py; the claim is the fraction of
cells where the two agree.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..analysis import theory
from ..labels import describe
from ..plots import save_figure
from . import Claim, Options, Outcome, fit

# (n, m): the phases, their colours, the analytic phase of (importance, density), and
# the observed phase of trained models from their weights W (inst, n, m)
SETTINGS = {
    (2, 1): (theory.PHASES, theory.PHASE_COLOURS, theory.phase, lambda W: theory.observed_phase(np.linalg.norm(W, axis=-1))),
    (3, 2): (theory.PHASES_3X2, theory.PHASE_COLOURS_3X2, theory.phase_3x2, theory.observed_configuration),
}


def run(directory: Path, options: Options) -> Outcome:
    size = 8 if options.quick else 20
    importance = np.logspace(-1, 1, size)
    density = np.logspace(0, -2, size)
    claims, table = [], []
    for (n, m), (phases, colours, analytic_phase, observed) in SETTINGS.items():
        cells = [(p, r) for p in density for r in importance]  # row-major: density down, importance across
        keys = {
            "features": n,
            "hidden": m,
            "feature_probability": [[float(p)] * n for p, _ in cells],
            "importance": [[1.0] * (n - 1) + [float(r)] for _, r in cells],
            "steps": 4000 if options.quick else 10_000,
            "lr": 3e-3 if options.quick else 1e-3,
        }
        result, metrics = fit(directory / f"{n}x{m}", keys, options, restarts=2 if options.quick else 3)
        empirical = observed(result.params["W"].numpy()).reshape(size, size)
        analytic = np.array([phases.index(analytic_phase(r, p)) for p, r in cells]).reshape(size, size)
        agree = float((empirical == analytic).mean())
        fig = _figure(empirical, analytic, importance, density, phases, colours, f"n={n}, m={m}", describe(result.config))
        save_figure(fig, directory / f"phase-{n}x{m}.png")
        counts = {name: int((empirical == k).sum()) for k, name in enumerate(phases)}
        # the three phases of the n=2 diagram, for comparison: every pairing is "superposition"
        coarse = [min(k, 2) for k in range(len(phases))]
        coarse_agree = float((np.take(coarse, empirical) == np.take(coarse, analytic)).mean())
        table.append({"n x m": f"{n}x{m}", "cells": size * size, **counts, "agreement": round(agree, 3)})
        claims.append(
            Claim(
                f"n={n}, m={m}: the empirical phase diagram agrees with the theory on most cells",
                "most cells",
                f"{agree:.0%} of {size}x{size} cells agree ({coarse_agree:.0%} on not learned / learned alone / "
                f"superposition); empirical counts {counts}",
                agree >= 0.75,
            )
        )
    return Outcome(claims=claims, table=table)


def _figure(empirical, analytic, importance, density, phases, colours, label: str, trained: str) -> Figure:
    cmap = ListedColormap(colours)
    fig = Figure(figsize=(10, 4.6))
    axes = fig.subplots(1, 2, sharey=True)
    dx = np.log10(importance[1] / importance[0]) / 2  # cells centred on their grid values
    dy = np.log10(density[0] / density[1]) / 2
    extent = [np.log10(importance[0]) - dx, np.log10(importance[-1]) + dx, np.log10(density[-1]) - dy, np.log10(density[0]) + dy]
    for ax, grid, title in zip(axes, (empirical, analytic), ("trained (best of restarts)", "theory (expected losses)")):
        ax.imshow(grid, cmap=cmap, vmin=0, vmax=len(phases) - 1, extent=extent, aspect="auto", interpolation="nearest")
        ax.set_title(f"{label}: {title}", fontsize=10)
        ax.set_xlabel("log10 importance of the extra feature")
    axes[0].set_ylabel("log10 feature density 1-S")
    handles = [Patch(color=colour, label=name) for colour, name in zip(colours, phases)]
    fig.legend(handles=handles, loc="lower center", ncol=len(phases), fontsize=9)
    fig.suptitle(trained, fontsize=8)
    fig.subplots_adjust(bottom=0.2)
    return fig
