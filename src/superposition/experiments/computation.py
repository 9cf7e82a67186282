"""Computation in superposition: a model that computes |x|, not just stores x.

h = ReLU(W x), y' = ReLU(W_out h + b) (untied, hidden ReLU), present values
~ U[-1, 1], target |x|. With n=3, m=6 (dense) each feature gets one neuron for
ReLU(x) and one for ReLU(-x). With n=100, m=40, I=0.8^i, densities 1 … 0.001,
neurons turn polysemantic as sparsity grows. A feature drives a neuron when its
|weight| there is at least DRIVES of the neuron's largest.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..labels import density_label, describe
from ..plots import save_figure
from . import Claim, Options, Outcome, fit

DRIVES = 0.3
COMPUTE = {"model": "untied", "hidden_activation": "relu", "activation": "relu", "data": "signed", "target": "abs"}


def drivers(W: np.ndarray) -> list[list[int]]:
    """Per neuron k, the features with |W[i, k]| >= DRIVES · max_i |W[i, k]| (dead neurons: none)."""
    out = []
    for k in range(W.shape[1]):
        column = np.abs(W[:, k])
        out.append([] if column.max() < 0.1 else [int(i) for i in np.flatnonzero(column >= DRIVES * column.max())])
    return out


def run(directory: Path, options: Options) -> Outcome:
    small, _ = fit(
        directory / "3x6",
        {**COMPUTE, "features": 3, "hidden": 6, "importance_decay": 1.0, "sparsity": [0.0], "steps": 10_000, "lr": 3e-3},
        options,
        restarts=2 if options.quick else 4,
    )
    W = small.params["W"][0].numpy()
    pairs = _abs_pairs(W)
    n, m, densities = (20, 8, [1.0, 0.1, 0.01]) if options.quick else (100, 40, [1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001])
    large, metrics = fit(
        directory / f"{n}x{m}",
        {
            **COMPUTE,
            "features": n,
            "hidden": m,
            "importance_decay": 0.8,
            "feature_probability": [[p] * n for p in densities],
            "steps": 4000 if options.quick else 10_000,
            "lr": 3e-3 if options.quick else 1e-3,
        },
        options,
    )
    per_neuron = []
    table = []
    for p, w in zip(densities, large.params["W"].numpy()):
        used = [f for f in drivers(w) if f]
        per_neuron.append(float(np.mean([len(f) for f in used])) if used else 0.0)
        table.append({"density": p, "neurons used": len(used), "features per used neuron": round(per_neuron[-1], 2)})
    save_figure(_figure(W, large.params["W"].numpy(), small.config, large.config), directory / "computation.png")
    claims = [
        Claim(
            "n=3, m=6, dense: each feature gets a ReLU(x) and a ReLU(-x) neuron",
            "one neuron per (feature, sign)",
            "neurons (feature, sign of its weight): " + ", ".join(f"({f}, {'+' if s > 0 else '-'})" for f, s in pairs),
            sorted(pairs) == [(f, s) for f in range(3) for s in (-1, 1)],
        ),
        Claim(
            f"n={n}, m={m}: neurons grow more polysemantic with sparsity",
            "monosemantic when dense, polysemantic when sparse",
            "features per used neuron by density: " + ", ".join(f"{p}: {v:.2f}" for p, v in zip(densities, per_neuron)),
            per_neuron[-1] > per_neuron[0] and per_neuron[0] <= 1.5,
        ),
    ]
    return Outcome(claims=claims, table=table)


def _abs_pairs(W: np.ndarray) -> list[tuple[int, int]]:
    """(dominant feature, sign) of each monosemantic neuron of the small model."""
    pairs = []
    for k, features in enumerate(drivers(W)):
        if len(features) == 1:
            f = features[0]
            pairs.append((f, int(np.sign(W[f, k]))))
    return pairs


def _figure(small: np.ndarray, large: np.ndarray, small_config, large_config) -> Figure:
    """Neuron-feature weights: the n=3 model, then the large model at each density."""
    count = 1 + large.shape[0]
    fig = Figure(figsize=(2.6 * count, 4.4))
    axes = fig.subplots(1, count)
    panels = [(small, "n=3, m=6, dense")] + [
        (w, density_label(row)) for w, row in zip(large, large_config.feature_probability)
    ]
    for ax, (w, title) in zip(axes, panels):
        limit = float(np.abs(w).max()) or 1.0
        ax.imshow(w, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto", interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("neuron")
    axes[0].set_ylabel("feature")
    fig.suptitle(f"W (feature × neuron) — {describe(large_config)}", fontsize=7)
    return fig
