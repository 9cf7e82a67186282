"""A privileged basis: a ReLU on the hidden layer makes neurons the unit of analysis.

h = ReLU(W x), x' = ReLU(Wᵀ h + b) (tied, hidden ReLU), n=10, m=5, I=0.75^i,
densities 1 … 0.01, best of several copies (`--seeds`, default 4). A feature drives
a neuron when its weight there is positive and at least DRIVES of the neuron's
largest weight (a negative weight never passes the ReLU). Claims: when dense, every
used neuron is monosemantic; as sparsity grows, neurons carry more features.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..labels import density_label, describe
from ..plots import save_figure
from . import Claim, Options, Outcome, fit

DENSITIES = [1.0, 0.5, 0.3, 0.2, 0.15, 0.1, 0.07, 0.04, 0.02, 0.01]
DRIVES = 0.3


def features_per_neuron(W: np.ndarray) -> list[list[int]]:
    """For each neuron k, the features that drive it (W: feat x hidden)."""
    lists = []
    for k in range(W.shape[1]):
        column = W[:, k]
        top = column.max()
        lists.append([] if top <= 0.1 else [int(i) for i in np.flatnonzero(column >= DRIVES * top)])
    return lists


def _neurons_per_feature(lists: list[list[int]]) -> float:
    """Mean number of neurons each driving feature drives."""
    counts: dict[int, int] = {}
    for features in lists:
        for f in features:
            counts[f] = counts.get(f, 0) + 1
    return float(np.mean(list(counts.values()))) if counts else 0.0


def run(directory: Path, options: Options) -> Outcome:
    keys = {
        "features": 10,
        "hidden": 5,
        "hidden_activation": "relu",
        "importance_decay": 0.75,
        "feature_probability": [[p] * 10 for p in DENSITIES],
        "steps": 10_000,  # quick differs only in restarts: fewer steps leave dense neurons mixed
    }
    result, metrics = fit(directory / "10x5", keys, options, restarts=2 if options.quick else 4)
    W = result.params["W"].numpy()
    neurons = [features_per_neuron(w) for w in W]
    save_figure(_figure(W, result.config), directory / "privileged-basis.png")
    table = []
    for p, lists, inst in zip(DENSITIES, neurons, metrics["instances"]):
        used = [f for f in lists if f]
        table.append(
            {
                "density": p,
                "features learned": inst["represented"],
                "neurons used": len(used),
                "features per used neuron": round(float(np.mean([len(f) for f in used])), 2) if used else 0.0,
                "neurons": " ".join("{" + ",".join(map(str, f)) + "}" for f in lists),
            }
        )
    mean = [row["features per used neuron"] for row in table]
    sparse = [(p, lists) for p, lists in zip(DENSITIES, neurons) if p <= 0.04]
    spread = [(p, _neurons_per_feature(lists)) for p, lists in sparse]
    dense = neurons[0]
    claims = [
        Claim(
            "dense: every used neuron is monosemantic (one feature each)",
            "monosemantic neurons",
            "neurons " + " ".join("{" + ",".join(map(str, f)) + "}" for f in dense),
            all(len(f) <= 1 for f in dense) and any(dense),
        ),
        Claim(
            "as sparsity grows, neurons carry more features (the paper: 3 features in 2 neurons at 0.2-0.5, "
            "5 in 3 at ~0.15, 8 in 5 at 0.05-0.08, each feature on a pair of neurons at <= 0.04)",
            "more features per neuron",
            "features per used neuron by density: " + ", ".join(f"{p}: {m}" for p, m in zip(DENSITIES, mean)),
            mean[0] <= 1 and mean[-1] >= 2 and mean[-1] > mean[0],
        ),
        Claim(
            "at density <= 0.04 each feature is spread over a pair of neurons",
            "2 neurons per feature",
            "mean neurons per driving feature: " + ", ".join(f"{p}: {v:.2f}" for p, v in spread),
            all(1.5 <= v <= 2.5 for _, v in spread),
        ),
    ]
    return Outcome(claims=claims, table=table)


def _figure(W: np.ndarray, config) -> Figure:
    """The paper's stacked bars: per neuron, the positive weight of each feature on it."""
    n = W.shape[0]
    fig = Figure(figsize=(2.0 * n, 3.6))
    axes = fig.subplots(1, n, sharey=True)
    colours = [f"C{i}" for i in range(config.features)]
    for k, ax in enumerate(axes):
        bottom = np.zeros(config.hidden)
        for i in range(config.features):
            height = np.clip(W[k, i], 0, None)
            ax.bar(np.arange(config.hidden), height, bottom=bottom, color=colours[i], label=f"feature {i}")
            bottom += height
        ax.set_title(density_label(config.feature_probability[k]), fontsize=9)
        ax.set_xlabel("neuron")
        ax.set_xticks(range(config.hidden))
    axes[0].set_ylabel("positive weight W[i, neuron], stacked")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=7)
    fig.suptitle(describe(config), fontsize=8)
    fig.subplots_adjust(right=0.93)
    return fig
