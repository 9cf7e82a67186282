"""Correlated and anticorrelated features (the paper's §"Superposition with correlated features").

n=20, m=10, I=1, each beside the same model on independent features:
- correlated: 2 sets of 10 whose members are present together, density 0.03. Claim:
  each set forms a local orthogonal basis (members orthogonal to each other), the
  two sets sharing the space.
- anticorrelated: 10 sets of 2 that are never present together, density 0.4. Claim:
  anticorrelated features prefer antipodal directions: each feature's most opposite
  partner is its set-mate.
- small m: 3 correlated sets of 2 in m=2, densities 0.01 … 0.6. Claim: set-mates
  that cannot be orthogonal sit side by side (positive cosine, never antipodal), and
  as density rises the pairs collapse onto their principal component (cosine 1,
  each norm ~1/√2).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from ..labels import density_label, describe
from ..plots import save_figure
from . import Claim, Options, Outcome, fit

CASES = {  # name: (correlation, set size, density)
    "correlated": ("correlated", 10, 0.03),
    "anticorrelated": ("anticorrelated", 2, 0.4),
}


def cosines(W: torch.Tensor) -> np.ndarray:
    unit = torch.nn.functional.normalize(W, dim=-1)
    return (unit @ unit.T).numpy()


def run(directory: Path, options: Options) -> Outcome:
    panels, claims, table = [], [], []
    for name, (correlation, size, density) in CASES.items():
        measured = {}
        for kind in (correlation, "none"):
            keys = {
                "features": 20,
                "hidden": 10,
                "importance_decay": 1.0,
                "sparsity": [round(1 - density, 12)],
                "correlation": kind,
                "set_size": size,
                "steps": 6000 if options.quick else 10_000,
                "lr": 3e-3 if options.quick else 1e-3,
            }
            label = f"{name}-sets" if kind != "none" else f"{name}-control"
            result, metrics = fit(directory / label, keys, options, restarts=2 if options.quick else 3)
            cos = cosines(result.params["W"][0])
            sets = np.arange(20) // size
            same = (sets[:, None] == sets[None]) & ~np.eye(20, dtype=bool)
            mate = np.where(np.eye(20, dtype=bool), np.inf, cos).argmin(-1)
            measured[kind] = {
                "within": float(np.abs(cos[same]).mean()),
                "across": float(np.abs(cos[~same & ~np.eye(20, dtype=bool)]).mean()),
                "partner in set": float((sets[mate] == sets).mean()),
                "represented": metrics["instances"][0]["represented"],
            }
            table.append({"case": label, **{k: round(v, 3) for k, v in measured[kind].items()}})
            panels.append((label, cos, size))
            trained = result.config
        sets, control = measured[correlation], measured["none"]
        if name == "correlated":
            claims.append(
                Claim(
                    "correlated features (2 sets of 10, m=10) form local orthogonal bases",
                    "orthogonal within a set",
                    f"mean |cos| within sets {sets['within']:.3f}, across sets {sets['across']:.3f} "
                    f"(independent control: {control['within']:.3f} / {control['across']:.3f})",
                    sets["within"] < 0.05 and sets["across"] > 2 * sets["within"],
                )
            )
        else:
            claims.append(
                Claim(
                    "anticorrelated features (10 sets of 2, m=10) prefer antipodal directions",
                    "antipodal set-mates",
                    f"{sets['partner in set']:.0%} of features have their set-mate as most opposite partner "
                    f"(independent control: {control['partner in set']:.0%})",
                    sets["partner in set"] >= 0.8 and sets["partner in set"] > control["partner in set"],
                )
            )
    save_figure(_figure(panels, trained), directory / "correlated.png")
    claims.append(_small_m(directory, options, table))
    return Outcome(claims=claims, table=table)


SMALL_M_DENSITIES = [0.01, 0.03, 0.1, 0.3, 0.6]


def _small_m(directory: Path, options: Options, table: list) -> Claim:
    keys = {
        "features": 6,
        "hidden": 2,
        "importance_decay": 1.0,
        "feature_probability": [[p] * 6 for p in SMALL_M_DENSITIES],
        "correlation": "correlated",
        "set_size": 2,
        "steps": 10_000,
    }
    result, _ = fit(directory / "small-m", keys, options, restarts=3)  # 2 copies can leave a pair antipodal
    collapsed, side_by_side = [], []
    for p, W in zip(SMALL_M_DENSITIES, result.params["W"]):
        mates = [float(cosines(W)[2 * s, 2 * s + 1]) for s in range(3)]
        collapsed.append(sum(c > 0.95 for c in mates))
        side_by_side.append(min(mates))
        table.append({"case": f"small-m 1-S={p}", "set-mate cosines": ", ".join(f"{c:.2f}" for c in mates)})
    save_figure(_vectors(result.params["W"], result.config), directory / "correlated-small-m.png")
    return Claim(
        "correlated features that cannot be orthogonal (3 sets of 2, m=2) sit side by side, "
        "and collapse onto their principal component as density rises",
        "side by side, then collapsed",
        "collapsed sets (set-mate cos > 0.95) by density: "
        + ", ".join(f"{p}: {c}/3" for p, c in zip(SMALL_M_DENSITIES, collapsed))
        + "; smallest set-mate cosine: "
        + ", ".join(f"{v:.2f}" for v in side_by_side),
        all(v > 0 for v in side_by_side)
        and all(b >= a for a, b in zip(collapsed, collapsed[1:]))
        and collapsed[-1] == 3
        and collapsed[0] < 3,
    )


def _vectors(W: torch.Tensor, config) -> Figure:
    """Each density's 2-D feature vectors, coloured by set."""
    fig = Figure(figsize=(2.6 * W.shape[0], 3.0))
    axes = fig.subplots(1, W.shape[0])
    for ax, w, row in zip(axes, W.numpy(), config.feature_probability):
        for i, (x, y) in enumerate(w):
            ax.plot([0, x], [0, y], color=f"C{i // config.data_options['set_size']}", lw=2)
        ax.set_xlim(-1.3, 1.3)
        ax.set_ylim(-1.3, 1.3)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(density_label(row), fontsize=9)
    fig.suptitle(f"colour = correlated set — {describe(config)}", fontsize=7)
    return fig


def _figure(panels, config) -> Figure:
    fig = Figure(figsize=(3.2 * len(panels), 3.6))
    axes = fig.subplots(1, len(panels))
    for ax, (label, cos, size) in zip(axes, panels):
        image = ax.imshow(cos, cmap="RdBu", vmin=-1, vmax=1)
        for edge in range(size, len(cos), size):
            ax.axhline(edge - 0.5, color="black", lw=0.5)
            ax.axvline(edge - 0.5, color="black", lw=0.5)
        ax.set_title(label, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(image, ax=list(axes), fraction=0.02, label="cos(W_i, W_j)")
    fig.suptitle(
        f"cosines of the feature directions (set boundaries drawn) — {describe(config)}, sets vary by panel", fontsize=8
    )
    return fig
