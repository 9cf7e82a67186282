"""Computation in superposition: a model that computes |x|, not just stores x.

h = ReLU(W x), y' = ReLU(W_out h + b) (untied, hidden ReLU), present values
~ U[-1, 1], target |x|. With n=3, m=6 (dense) each feature gets one neuron for
ReLU(x) and one for ReLU(-x). With n=100, m=40, I=0.8^i, densities 1 … 0.001,
neurons turn polysemantic as sparsity grows. A feature drives a neuron when its
|weight| there is at least DRIVES of the neuron's largest. Densities below SLOW
train 10x longer, in a run of their own (`100x40-sparse`): see SLOW_STEPS.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..labels import density_label, describe
from ..plots import save_figure
from . import Claim, Options, Outcome, fit

DRIVES = 0.3
# below this density the large model trains SLOW_STEPS steps: 1/(lr · wd) = 100,000 with
# lr 1e-3 and wd 0.01. At 10,000 steps the 0.001 model's neurons had 18.7 features each,
# most of them initial weights never trained away; at 100,000 about 4.
SLOW, SLOW_STEPS = 0.005, 100_000
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
    keys = {**COMPUTE, "features": n, "hidden": m, "importance_decay": 0.8, "lr": 3e-3 if options.quick else 1e-3}
    # the sparsest densities train longer: their rarely seen features keep their initial
    # weights until AdamW's decay clears them, with time constant 1/(lr · wd) steps
    groups = [[p for p in densities if p >= SLOW], [p for p in densities if p < SLOW]]
    steps = [4000 if options.quick else 10_000, SLOW_STEPS]
    parts = [
        fit(directory / f"{n}x{m}{suffix}", {**keys, "feature_probability": [[p] * n for p in group], "steps": count}, options)[0]
        for group, count, suffix in zip(groups, steps, ("", "-sparse"))
        if group
    ]
    large_W = np.concatenate([part.params["W"].numpy() for part in parts])
    per_neuron = []
    table = []
    for p, w in zip(densities, large_W):
        used = [f for f in drivers(w) if f]
        per_neuron.append(float(np.mean([len(f) for f in used])) if used else 0.0)
        table.append({"density": p, "neurons used": len(used), "features per used neuron": round(per_neuron[-1], 2)})
    save_figure(_figure(W, large_W, parts), directory / "computation.png")
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
            " and ".join(f"densities {', '.join(map(str, g))}: {c:,} steps" for g, c in zip(groups, steps) if g),
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


def _figure(small: np.ndarray, large: np.ndarray, parts) -> Figure:
    """Neuron-feature weights: the n=3 model, then the large model at each density."""
    count = 1 + large.shape[0]
    fig = Figure(figsize=(2.6 * count, 4.4))
    axes = fig.subplots(1, count)
    labels = [f"{density_label(row)}, {part.config.steps:,} steps" for part in parts for row in part.config.feature_probability]
    panels = [(small, "n=3, m=6, dense")] + list(zip(large, labels))
    for ax, (w, title) in zip(axes, panels):
        limit = float(np.abs(w).max()) or 1.0
        ax.imshow(w, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto", interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("neuron")
    axes[0].set_ylabel("feature")
    fig.suptitle(f"W (feature × neuron) — {describe(parts[0].config)}", fontsize=7)
    return fig
