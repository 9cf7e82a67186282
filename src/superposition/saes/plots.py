"""Figures of a batch of SAEs, every label and file name built from its config.

  directions  d_in = 2 only: per SAE instance, the true feature directions (grey) and the
              decoder rows (matched green, duplicate orange, unmatched red; recovery.py)
  penalty     several settings: MMCS over the represented features, and L0, against the
              setting (l1, k or l0), one line per source instance
and, for a sweep of SAEs (sae_sweep.py), `sweep_figure`: the same against each kind's
setting, a column per kind and a line per latent count.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullFormatter

from ..config import ConfigError
from ..labels import describe_sae, sae_stem
from ..plots import png, save_figure
from ..analysis.recovery import STATUS, cosines, latent_status
from . import SAE_KINDS

COLUMNS = 8
LATENT_COLOURS = {"matched": "tab:green", "duplicate": "tab:orange", "unmatched": "tab:red"}


def directions_figure(sae) -> Figure:
    config = sae.config
    n = config.instances
    columns = min(n, COLUMNS)
    rows = math.ceil(n / columns)
    fig = Figure(figsize=(2.3 * columns + 0.5, 2.5 * rows + 0.6), layout="constrained")  # room for the two-line title
    axes = fig.subplots(rows, columns, squeeze=False).flatten()
    column = SAE_KINDS[config.kind].column
    features, W_dec = sae.features.numpy(), sae.params["W_dec"].numpy()
    for i, ax in enumerate(axes):
        if i >= n:
            ax.set_axis_off()
            continue
        for f in features[i]:
            ax.plot([0, f[0]], [0, f[1]], color="0.6", lw=4, solid_capstyle="round", zorder=1)
        for latent, status in enumerate(_status(sae, i)):
            d = W_dec[i, latent]
            ax.annotate("", xy=(d[0], d[1]), xytext=(0, 0), arrowprops={"arrowstyle": "->", "color": LATENT_COLOURS[status], "lw": 1.2}, zorder=2)
        ax.set_xlim(-1.25, 1.25)
        ax.set_ylim(-1.25, 1.25)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        row = sae.metrics["instances"][i]
        ax.set_title(f"{column}={row[column]:.3g}, source {row['source_instance']}\nMMCS {row['mmcs']:.3f}, {row['recovered']}/{row['represented']}", fontsize=8)
    legend = ", ".join(f"{c} {s}" for s, c in (("true features", "grey"), *((s, c.removeprefix("tab:")) for s, c in LATENT_COLOURS.items())))
    fig.suptitle(f"true directions and decoder rows ({legend})\n{describe_sae(config)}", fontsize=8)
    return fig


def _status(sae, i: int) -> list[str]:
    cos = cosines(sae.features[i : i + 1], sae.params["W_dec"][i : i + 1])[0]
    return [STATUS[code] for code in latent_status(cos).tolist()]


def penalty_figure(sae) -> Figure:
    config = sae.config
    column = SAE_KINDS[config.kind].column
    rows = sae.metrics["instances"]
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    left, right = fig.subplots(1, 2)
    for source in range(config.source_instances):
        mine = [r for r in rows if r["source_instance"] == source]
        x = np.array([r[column] for r in mine])
        left.plot(x, [r["mmcs"] for r in mine], marker="o", label=f"source {source}")
        right.plot(x, [r["l0"] for r in mine], marker="o")
    _setting_axes((left, right), SAE_KINDS[config.kind], [r[column] for r in rows])
    if config.source_instances <= 10:
        left.legend(fontsize=7)
    fig.suptitle(textwrap.fill(describe_sae(config), 110), fontsize=8)
    return fig


def _setting_axes(pair, kind, values) -> None:
    """Label an (MMCS, L0) pair of axes against a kind's setting: whole numbers (k), or a log
    scale for positive penalties, ticked at the values trained when they are few."""
    values = sorted(set(values))
    for ax, label in zip(pair, ("MMCS (represented features)", "L0 (latents firing per row)"), strict=True):
        ax.set_xlabel(kind.column)
        ax.set_ylabel(label)
        if kind.whole:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        elif values[0] > 0:
            ax.set_xscale("log")
            if len(values) <= 8:
                ax.set_xticks(values, [f"{v:.3g}" for v in values], rotation=40, ha="right", rotation_mode="anchor")
                ax.xaxis.set_minor_formatter(NullFormatter())


def sweep_figure(table, source: str) -> Figure:
    """MMCS and L0 against each kind's setting from a sweep's results (a DataFrame, one row
    per SAE): a column per kind, a line per latent count, each point the mean over seeds,
    source instances and any other axis."""
    ok = table[table["status"] == "ok"]
    kinds = list(dict.fromkeys(ok["kind"]))
    fig = Figure(figsize=(4.2 * len(kinds) + 0.4, 6.2), layout="constrained")
    axes = fig.subplots(2, len(kinds), squeeze=False)
    for c, kind in enumerate(kinds):
        column = SAE_KINDS[kind].column
        mine = ok[ok["kind"] == kind]
        for latents, group in mine.groupby("latents"):
            means = group.groupby(column)[["mmcs", "l0"]].mean()
            axes[0, c].plot(means.index, means["mmcs"], marker="o", ms=3, label=f"{latents} latents")
            axes[1, c].plot(means.index, means["l0"], marker="o", ms=3)
        _setting_axes(axes[:, c], SAE_KINDS[kind], mine[column])
        axes[0, c].set_title(f"{kind} SAE ({SAE_KINDS[kind].formula})", fontsize=8)
        axes[0, c].legend(fontsize=7)
    fig.suptitle(f"SAEs on {source}: mean over seeds, source instances and other axes", fontsize=8)
    return fig


FIGURES = {"directions": directions_figure, "penalty": penalty_figure}


def applies(name: str, config) -> bool:
    """Whether the SAEs of `config` draw figure `name`: their kind's, where it applies."""
    if name not in SAE_KINDS[config.kind].figures:
        return False
    return config.dims == 2 if name == "directions" else len(config.settings) > 1


def figure(name: str, sae) -> Figure:
    if name not in FIGURES:
        raise ConfigError(f"figure: unknown {name!r}; choose one of {', '.join(FIGURES)}")
    if name not in SAE_KINDS[sae.config.kind].figures:
        raise ConfigError(f"figure: the {sae.config.kind} SAE draws {', '.join(SAE_KINDS[sae.config.kind].figures) or 'no figures'}, not {name}")
    if not applies(name, sae.config):
        why = "d_in = 2" if name == "directions" else "several settings"
        raise ConfigError(f"figure: {name} needs {why}")
    fig = FIGURES[name](sae)
    fig._repr_png_ = lambda: png(fig)
    return fig


def write_figures(sae, directory: Path) -> list[Path]:
    return [
        save_figure(figure(name, sae), Path(directory) / f"{sae_stem(sae.config)}-{name}.png")
        for name in FIGURES
        if applies(name, sae.config)
    ]
