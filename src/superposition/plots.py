"""Figures, every label and file name built from the config that was trained.

  gram     the seed's figure: per instance, W Wᵀ (or W W_out) in RdBu over ±1.3
           with the bias as a strip beside it, titled 1-S=...
  norms    the paper's bars: length ||W_i||, colour = superposition of feature i
  weights  W and b as heatmaps per instance
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure, SubFigure
from matplotlib.ticker import MaxNLocator

from .config import Config, ConfigError
from .files import write_atomic
from .labels import density_label, describe, stem
from .analysis.metrics import superposition
from .models import KINDS, Params, gram

GRAM_LIMIT = 1.3  # the seed's colour range for W Wᵀ
# Up to this many features a figure gives each its own row of fixed height (a bar, a row
# of W); beyond it the rows share FEATURE_INCHES, where a bar would be under a pixel high.
ROW_FEATURES = 60
FEATURE_INCHES = 0.22 * ROW_FEATURES


def feature_inches(features: int, per_feature: float) -> float:
    """The height a figure gives its features: per_feature each, at most FEATURE_INCHES."""
    return min(per_feature * features, FEATURE_INCHES)


def gram_figure(config: Config, params: Params, fig: Figure | SubFigure | None = None) -> Figure | SubFigure:
    matrices = gram(params, config).numpy()
    biases = params["b"].numpy()
    n = config.instances
    fig = fig or Figure(figsize=(5 * n, 4.4))
    # a strip one matrix-cell wide: with equal aspect it is exactly as tall as the matrix
    grid = fig.add_gridspec(1, 3 * n, width_ratios=[config.features, 1, 3] * n, wspace=0.1)
    for k in range(n):
        ax = fig.add_subplot(grid[0, 3 * k])
        image = ax.imshow(matrices[k], cmap="RdBu", vmin=-GRAM_LIMIT, vmax=GRAM_LIMIT)
        ax.set_title(density_label(config.feature_probability[k]))
        strip = fig.add_subplot(grid[0, 3 * k + 1])
        limit = GRAM_LIMIT * max(float(np.abs(biases[k]).max()), 1e-12)
        strip.imshow(biases[k][:, None], cmap="RdBu", vmin=-limit, vmax=limit)
        for a in (ax, strip):
            a.set_xticks([])
            a.set_yticks([])
    matrix = KINDS[config.model].matrix
    key = fig.colorbar(image, ax=fig.axes, fraction=0.01 if n > 1 else 0.03, pad=0.01)
    key.set_label(f"{matrix}: blue +, red − (bias strips: their own scale)", fontsize=8)
    fig.suptitle(f"{matrix} and bias b — {describe(config)}", fontsize=10)
    return fig


def norms_figure(config: Config, params: Params, fig: Figure | SubFigure | None = None) -> Figure | SubFigure:
    norms = params["W"].norm(dim=-1).numpy()
    interference = superposition(params["W"]).numpy()
    n, features = config.instances, config.features
    fig = fig or Figure(figsize=(2.6 * n + 1, feature_inches(features, 0.22) + 1.6))
    axes = fig.subplots(1, n, sharex=True, sharey=True, squeeze=False)[0]
    colours = ScalarMappable(norm=Normalize(vmin=0, vmax=1), cmap="viridis")
    for k, ax in enumerate(axes):
        if features > ROW_FEATURES:  # a dot per feature: bars this thin would not show
            ax.scatter(norms[k], np.arange(features), c=colours.to_rgba(interference[k]), s=4, linewidths=0)
            ax.set_ylim(features - 0.5, -0.5)
        else:
            ax.barh(np.arange(features), norms[k], color=colours.to_rgba(interference[k]))
        ax.set_title(density_label(config.feature_probability[k]), fontsize=10)
        ax.set_xlabel("‖W_i‖")
    if features <= ROW_FEATURES:
        axes[0].invert_yaxis()  # feature 0, the most important, on top (the dots' limits say so already)
    axes[0].yaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_ylabel("feature i")
    fig.colorbar(colours, ax=list(axes), label="superposition Σ_{j≠i} (Ŵ_i·W_j)², clipped at 1")
    fig.suptitle(describe(config), fontsize=9, y=1.0, va="bottom")  # above the instances' titles
    return fig


def weights_figure(config: Config, params: Params) -> Figure:
    W = params["W"].numpy()
    b = params["b"].numpy()
    n = config.instances
    fig = Figure(figsize=(2.2 * n + 1, feature_inches(config.features, 0.2) + 2))
    grid = fig.add_gridspec(1, 3 * n, width_ratios=[config.hidden, 1, 1.5] * n, wspace=0.15)
    limit = max(float(np.abs(W).max()), float(np.abs(b).max()), 1e-12)
    for k in range(n):
        ax = fig.add_subplot(grid[0, 3 * k])
        image = ax.imshow(W[k], cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
        ax.set_title(density_label(config.feature_probability[k]), fontsize=10)
        ax.set_xlabel("hidden")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        strip = fig.add_subplot(grid[0, 3 * k + 1], sharey=ax)
        strip.imshow(b[k][:, None], cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
        strip.set_xticks([0], ["b"])
        strip.tick_params(labelleft=False)
        if k == 0:
            ax.set_ylabel("feature")
        else:
            ax.tick_params(labelleft=False)
    fig.colorbar(image, ax=fig.axes, fraction=0.02)
    fig.suptitle(f"W (feature × hidden) and b — {describe(config)}", fontsize=9)
    return fig


def polygon_figure(config: Config, params: Params) -> Figure:
    """The paper's intro figure: each instance's 2-D feature vectors, and W Wᵀ with b below."""
    W = params["W"].numpy()
    n = config.instances
    fig = Figure(figsize=(2.4 * n, 4.8))
    top, bottom = fig.subfigures(2, 1, height_ratios=[1, 0.8])
    axes = top.subplots(1, n, squeeze=False)[0]
    importance = np.array(config.importance)
    colours = ScalarMappable(norm=Normalize(vmin=0, vmax=float(importance.max())), cmap="viridis")
    for k, ax in enumerate(axes):
        for i in range(config.features):
            ax.plot([0, W[k, i, 0]], [0, W[k, i, 1]], color=colours.to_rgba(importance[k, i]), lw=2)
            ax.scatter([W[k, i, 0]], [W[k, i, 1]], color=colours.to_rgba(importance[k, i]), s=12, zorder=3)
        ax.set_xlim(-1.3, 1.3)
        ax.set_ylim(-1.3, 1.3)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(density_label(config.feature_probability[k]), fontsize=10)
    top.colorbar(colours, ax=list(axes), label="importance", fraction=0.015)
    gram_figure(config, params, bottom)
    bottom.suptitle("")
    fig.suptitle(f"feature vectors W_i (top), {KINDS[config.model].matrix} and b (bottom) — {describe(config)}", fontsize=9)
    return fig


def stacked(make, runs: list[tuple[str, Config, Params]], height: float) -> Figure:
    """One figure per run, stacked as rows (e.g. linear above ReLU), each row labelled."""
    width = max(5 * config.instances for _, config, _ in runs)
    fig = Figure(figsize=(width, height * len(runs)))
    for sub, (label, config, params) in zip(fig.subfigures(len(runs), 1), runs):
        make(config, params, sub)
        sub.suptitle(f"{label} — {describe(config)}", fontsize=10)
    return fig


FIGURES = {"gram": gram_figure, "norms": norms_figure, "weights": weights_figure, "polygon": polygon_figure}


def figure(name: str, config: Config, params: Params) -> Figure:
    """One figure by name, for any run it applies to."""
    if name not in FIGURES:
        raise ConfigError(f"figure: unknown {name!r}; choose one of {', '.join(FIGURES)}")
    if name == "polygon" and config.hidden != 2:
        raise ConfigError(f"figure: polygon draws 2-D hidden spaces, this run has hidden = {config.hidden}")
    fig = FIGURES[name](config, params)
    fig._repr_png_ = lambda: png(fig)  # notebooks show it, with or without pyplot
    return fig


def png(fig: Figure, dpi: int = 100) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def save_figure(fig: Figure, path: Path, dpi: int = 100) -> Path:
    write_atomic(path, png(fig, dpi))
    return path


def write_figures(config: Config, params: Params, directory: Path) -> list[Path]:
    """The figures of the run's kind, as PNG files named from the config."""
    return [
        save_figure(figure(name, config, params), Path(directory) / f"{stem(config)}-{name}.png")
        for name in KINDS[config.model].figures
    ]
