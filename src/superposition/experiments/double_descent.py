"""Superposition, memorization and double descent (Henighan et al., 2023).

The toy model (tied, ReLU output) trained on a finite set of T examples, for T on a log
grid and a few hidden sizes m. The setup as the note and its replications state it: n =
10,000 features of equal importance at S = 0.999, every example scaled to unit norm,
50,000 full-batch AdamW steps (lr 1e-3, 2,500 warmup steps, then cosine decay to 0,
weight decay 1e-2), the test loss of 4 dataset seeds averaged per T (each seed an instance
of the run: its own training set and initial weights). ARENA's exercise is the
smaller second setting (`double-descent-arena`): 1,000 features at S = 0.99, m = 2, T
from 3 to 2,000.

Where we chose: the paper setting's loss is the note's, L = (1/T) Σ_t Σ_i I_i (x_ti −
x'_ti)², a sum over features (predicting nothing costs 1 per unit-norm example); the
ARENA and quick settings take the mean over features, as ARENA and the toy-model paper
do. With Adam the two differ only in eps (the sum is the mean with eps / n), which at n =
10,000 is no rescaling: the mean's gradients of present features fall below eps from T ≈
100 on, and the model in the middle regime then barely moves (issue 26). Adam's eps
1e-8; the test loss on fresh examples in blocks of 10,000 until its standard error is
below 1% (dataset.test_loss); the mean's standard error is the seeds' spread over √4, or
their own standard errors combined where that is larger; a peak
is judged on the note's scale, in per cent above predicting nothing (1 per example in the
note's loss), and must stand at least 1% and 2 standard errors above it and 2 standard
errors clear of the lowest test loss on either side; an all-zero example stays zero; the
two faster settings train one model per T, the better of 2 copies by training loss; the
grid of T and the m of the last claim are ours: m = 2 from T = 3 to 30,000, m = 3 and 5
up to T = 300 (at T = 1,000 a run of theirs costs 1.2-1.8x m = 2's at T = 3,000; their
generalising regime, past T = 10,000 if it lies as far past their peak as m = 2's,
would take hours a seed on 2 cores: docs/performance.md). `--quick` trains 200
features at S = 0.99 for 8,000 steps at lr 3e-3, with m = 2 and 4, to see the whole
picture in ~25 s.

Measured per run (metrics.py): train and test loss, and the dimensionality of every
training example D_t (its hidden vector h_t = x_t W in place of W_i in D_i) beside the
features' D_i. Σ_t D_t and Σ_i D_i say who holds the m dimensions: the data points
(memorization) or the features (generalization).

`run` trains the grid (on 2 cores, the paper setting's runs two at a time), then
`assemble` draws the figures and checks the claims from the saved runs; it takes runs
trained earlier in pieces too (one m at a time, or on several machines).

Figures: for m = 2, the hidden vectors of the training examples and the features, one
column per T (the note's signature figure); test and train loss against T; the
dimensionality of data points and features against T.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from ..config import ConfigError
from ..labels import describe
from ..plots import save_figure
from . import Claim, Options, Outcome, fit_all

SETTINGS: dict[str, dict[str, Any]] = {
    "paper": {
        # 4 dataset seeds per (m, T), as the note averages, its runs two at a time on 2 cores:
        # about 2 hours here (29 minutes with one seed); m = 3 and 5 only up to T = 300, since
        # m = 5 at T = 30,000 alone would take ~3.6 hours a seed (docs/performance.md)
        "features": 10_000, "sparsity": 0.999, "hidden": (2, 3, 5), "steps": 50_000, "warmup": 2_500, "restarts": 1, "lr": 1e-3,
        "sizes": (3, 5, 10, 30, 100, 300, 500, 1_000, 2_000, 3_000, 5_000, 10_000, 30_000), "other_m_up_to": 300,
        "loss_reduction": "sum", "seeds": 4,
    },
    "arena": {
        # best of 2 seeds: 3 copies on this machine's 2 cores take as long as 4
        "features": 1_000, "sparsity": 0.99, "hidden": (2,), "steps": 50_000, "warmup": 2_500, "restarts": 2, "lr": 1e-3,
        "sizes": (3, 5, 6, 8, 10, 15, 30, 50, 100, 200, 500, 1_000, 2_000), "loss_reduction": "mean",
    },
    "quick": {  # a higher lr for 8,000 steps, and m = 4 to see the peak move within T <= 2,000
        "features": 200, "sparsity": 0.99, "hidden": (2, 4), "steps": 8_000, "warmup": 800, "restarts": 2, "lr": 3e-3,
        "sizes": (3, 10, 30, 60, 100, 150, 200, 300, 500, 1_000, 2_000), "loss_reduction": "mean",
    },
}  # fmt: skip
# a peak: a test loss at least BUMP above predicting nothing (the note's own bump is about
# +1.5%), by Z standard errors, and Z standard errors of the difference above the lowest
# test loss at smaller T and the lowest at larger T
BUMP = 0.01
Z = 2.0
# the note's Figure 3 (top) as issue 26 reads it: about +1.5% above predicting nothing at
# T = 2,000, m = 2; its other values have not been read (the figure is not in our sources)
NOTE_BUMP = (2_000, 1.015)


def grid(spec: dict[str, Any]) -> list[tuple[int, int]]:
    """(m, T) of every run of a setting, in training order; each is the run directory m{m}-T{T}."""
    first, largest = spec["hidden"][0], spec.get("other_m_up_to", max(spec["sizes"]))
    return [(m, T) for m in spec["hidden"] for T in spec["sizes"] if m == first or T <= largest]


def run(directory: Path, options: Options, setting: str = "paper") -> Outcome:
    name = "quick" if options.quick else setting
    spec = SETTINGS[name]
    jobs = [(directory / f"m{m}-T{T}", _keys(spec, m, T), spec["restarts"]) for m, T in grid(spec)]
    fit_all(sorted(jobs, key=lambda job: job[1]["hidden"] * job[1]["dataset_size"], reverse=True), options)
    return assemble([directory], directory, name)


def _keys(spec: dict[str, Any], m: int, T: int) -> dict[str, Any]:
    return {
        "features": spec["features"],
        "hidden": m,
        "sparsity": [spec["sparsity"]] * spec.get("seeds", 1),  # an instance per dataset seed
        "importance_decay": 1.0,
        "dataset_size": T,
        "batch_size": max(spec["sizes"]),  # full batch
        "normalize": True,
        "steps": spec["steps"],
        "warmup": spec["warmup"],
        "schedule": "cosine",
        "lr": spec["lr"],
        "weight_decay": 1e-2,
        "loss_reduction": spec["loss_reduction"],
    }


def assemble(sources: list[Path], directory: Path, setting: str = "paper") -> Outcome:
    """The claims and figures of a setting from runs trained earlier, perhaps in pieces (a few
    m at a time, or on several machines): each (m, T) of its grid is the run directory
    m{m}-T{T} in the first of `sources` that has it. The figures are written to `directory`."""
    from ..runs import load_run

    trained = {}
    for m, T in grid(SETTINGS[setting]):
        name = f"m{m}-T{T}"
        found = next((source / name for source in sources if (source / name).is_dir()), None)
        if found is None:
            raise ConfigError(f"sources: no run {name} in {', '.join(map(str, sources))}; train it first")
        loaded = load_run(found)
        trained[m, T] = (loaded.config, loaded.params, loaded.examples, loaded.metrics)
    return conclude(trained, directory)


def conclude(trained: dict[tuple[int, int], tuple], directory: Path) -> Outcome:
    """Rows, figures and claims from each (m, T)'s (config, params, training sets, metrics):
    one row per (m, T), its test loss the mean over the run's instances (dataset seeds); the
    geometry from every seed for the claims, from the first for the figures."""
    hiddens = tuple(dict.fromkeys(m for m, _ in trained))
    results: dict[int, list[dict[str, Any]]] = {m: [] for m in hiddens}
    seeds: dict[tuple[int, int], list[dict[str, Any]]] = {}  # (m, T) -> each seed's geometry
    geometry: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # T -> (h_t, W_i) of the first m, first seed
    dimensions: dict[int, tuple[list[float], list[float]]] = {}  # T -> (D_t, D_i) of the same
    titles: dict[int, str] = {}
    for (m, T), (config, params, examples, metrics) in trained.items():
        rows = metrics["instances"]
        seeds[m, T] = [_geometry_of(row, params["W"][i].numpy(), examples, i) for i, row in enumerate(rows)]
        test = np.array([row["test_loss"] for row in rows])
        own = np.sqrt(np.sum([row["test_loss_se"] ** 2 for row in rows])) / len(rows)  # their test sets' errors
        # the seeds' spread over √seeds, or their own errors where those are the larger: four
        # heavy-tailed losses can happen to agree (at T = 300, within 0.02 of each other at ±0.1 each)
        se = max(test.std(ddof=1) / np.sqrt(len(rows)), own) if len(rows) > 1 else own
        results[m].append(
            {
                "m": m,
                "T": T,
                "seeds": len(rows),
                "train_loss": float(np.mean([row["train_loss"] for row in rows])),
                "test_loss": float(test.mean()),
                "test_loss_se": float(se),
                "test_low": float(test.min()),
                "test_high": float(test.max()),
                "nothing": _nothing(config),
                **seeds[m, T][0],
            }
        )
        if m == hiddens[0]:
            geometry[T] = (examples.hidden(params["W"])[0].numpy(), params["W"][0].numpy())
            dimensions[T] = (rows[0]["data_dimensionality"], rows[0]["feature_dimensionality"])
        titles[m] = _of_every_T(config)
    first = titles[hiddens[0]]
    every_m = first.replace(f"→ {hiddens[0]} hidden", f"→ m = {', '.join(map(str, hiddens))} hidden")
    reduction = next(iter(trained.values()))[0].loss_reduction
    save_figure(_losses(results, every_m, reduction), directory / "double-descent-loss.png")
    save_figure(_dimensionality(dimensions, first), directory / f"double-descent-dimensionality-m{hiddens[0]}.png")
    if hiddens[0] == 2:
        save_figure(_geometry(geometry, first), directory / "double-descent-geometry-m2.png")
    # 6 significant digits: a standard error at n = 1,000 is ~1e-7
    table = [{k: float(f"{v:.6g}") if isinstance(v, float) else v for k, v in row.items()} for m in hiddens for row in results[m]]
    return Outcome(claims=_claims(results, seeds, hiddens), table=table)


def _geometry_of(row: dict[str, Any], W: np.ndarray, examples, i: int) -> dict[str, Any]:
    """Who holds the hidden space in seed i: its largest D_t and D_i, and the median norms of
    its training points' hidden vectors and of the features that occur in its training set."""
    low, high = examples.row_ptr[i, 0], examples.row_ptr[i, -1]
    present = np.unique(examples.cols[low:high])
    return {
        "data_dimensions": float(np.max(row["data_dimensionality"])),
        "feature_dimensions": float(np.max(row["feature_dimensionality"])),
        "data_norm": float(np.median(row["data_norms"])),
        "feature_norm": float(np.median(np.linalg.norm(W[present], axis=-1))),
        "represented": row["represented"],
    }


def _nothing(config) -> float:
    """The expected loss of predicting nothing on a fresh example, E Σ_i I_i x_i²: for the
    settings' unit-norm examples of importance 1, the chance that an example is not empty
    (divided by n for the mean over features)."""
    p = np.asarray(config.feature_probability[0], np.float64)
    nonempty = 1.0 - float(np.exp(np.log1p(-np.minimum(p, 1 - 1e-12)).sum()))
    return nonempty / (1 if config.loss_reduction == "sum" else config.features)


def _peak(rows: list[dict[str, Any]]) -> tuple[int | None, float]:
    """The T of the highest interior test loss that stands at least BUMP above predicting
    nothing, by Z standard errors, and Z standard errors clear of the lowest test loss on
    either side; with how far above predicting nothing it is, as a fraction (None, 0.0 if
    there is none)."""
    losses = np.array([r["test_loss"] for r in rows])
    se = np.array([r["test_loss_se"] for r in rows])
    nothing = rows[0]["nothing"]

    def above(k: int, other: int) -> bool:
        return losses[k] - losses[other] >= Z * np.hypot(se[k], se[other])

    best, height = None, 0.0
    for k in range(1, len(rows) - 1):
        before, after = int(np.argmin(losses[:k])), k + 1 + int(np.argmin(losses[k + 1 :]))
        bump = losses[k] / nothing - 1
        clear = bump >= BUMP and losses[k] - nothing >= Z * se[k]
        if clear and above(k, before) and above(k, after) and bump > height:
            best, height = rows[k]["T"], float(bump)
    return best, height


def _claims(results: dict[int, list[dict[str, Any]]], seeds: dict[tuple[int, int], list[dict[str, Any]]], hiddens: tuple[int, ...]) -> list[Claim]:
    m = hiddens[0]
    rows = results[m]
    small, large = rows[0], rows[-1]
    memorising = [s["data_dimensions"] > s["feature_dimensions"] and s["data_norm"] > s["feature_norm"] for s in seeds[m, small["T"]]]
    generalising = [s["feature_dimensions"] > s["data_dimensions"] and s["represented"] > 0 for s in seeds[m, large["T"]]]
    peaks = {h: _peak(results[h]) for h in hiddens}
    claims = [
        Claim(
            f"few examples (T = {small['T']}, m = {m}): the training points, not the features, are in superposition",
            f"data points form a T-gon (D_t = m/T = {m / small['T']:.2f}) with large norms; features small",
            f"largest D_t = {small['data_dimensions']:.2f}, largest D_i = {small['feature_dimensions']:.2f}; median ‖h_t‖ "
            f"{small['data_norm']:.3f}, median ‖W_i‖ of present features {small['feature_norm']:.3f}"
            + _of_seeds(memorising),
            all(memorising),
        ),
        Claim(
            f"many examples (T = {large['T']:,}, m = {m}): the features are in superposition, the data points are not",
            "features form polytopes (a pentagon: D_i = 2/5); data points' D_t near 0",
            f"largest D_i = {large['feature_dimensions']:.2f}, largest D_t = {large['data_dimensions']:.2f}; "
            f"{large['represented']} features with ‖W_i‖ > 0.5" + _of_seeds(generalising),
            all(generalising),
        ),
        Claim(
            f"the test loss rises to a peak at an intermediate T and falls after it (m = {m})",
            "a bump in test loss between the two regimes: about +1.5% above predicting nothing at T = 2,000 in the "
            "note's Figure 3 (the authors later traced the intermediate regime to optimization failure: Circuits "
            "Updates, July 2023)",
            _peak_text(rows, peaks[m]),
            peaks[m][0] is not None,
        ),
    ]
    if len(hiddens) > 1:
        located = [peaks[h][0] for h in hiddens]
        claims.append(
            Claim(
                "the peak moves to larger T as m grows",
                "peak T increases with m",
                ", ".join(
                    f"m = {h}: {'no peak' if t is None else f'T = {t:,}'} (T up to {results[h][-1]['T']:,})" for h, t in zip(hiddens, located)
                ),
                None not in located and all(a <= b for a, b in zip(located, located[1:])) and located[-1] > located[0],
            )
        )
    return claims


def _of_seeds(holds: list[bool]) -> str:
    """With several dataset seeds: that the numbers are the first's, and in how many it holds."""
    return f" (the first seed; holds in {sum(holds)} of {len(holds)})" if len(holds) > 1 else ""


def _peak_text(rows: list[dict[str, Any]], peak: tuple[int | None, float]) -> str:
    """Every T's test loss as per cent above (+) or below predicting nothing, ± its standard error."""
    nothing = rows[0]["nothing"]
    seeds = f", the mean of {rows[0]['seeds']} dataset seeds" if rows[0]["seeds"] > 1 else ""
    losses = ", ".join(f"{r['T']:,}: {100 * (r['test_loss'] / nothing - 1):+.3g}% ± {100 * r['test_loss_se'] / nothing:.2g}" for r in rows)
    found = "no interior peak" if peak[0] is None else f"peak at T = {peak[0]:,}, {100 * peak[1]:+,.4g}% above predicting nothing"
    return f"{found} (test loss against predicting nothing, ± standard error{seeds}, by T: {losses})"


def _losses(results: dict[int, list[dict[str, Any]]], trained: str, reduction: str) -> Figure:
    fig, ax = _against_T()
    for k, (m, rows) in enumerate(results.items()):
        T = [r["T"] for r in rows]
        colour = f"C{k}"
        test, se = [r["test_loss"] for r in rows], [r["test_loss_se"] for r in rows]
        seeds = f"mean of {rows[0]['seeds']} seeds " if rows[0]["seeds"] > 1 else ""
        ax.errorbar(T, test, yerr=se, fmt="o-", color=colour, capsize=2, label=f"test, {seeds}± standard error, m = {m}")
        ax.plot(T, [r["train_loss"] for r in rows], "s--", color=colour, alpha=0.6, label=f"train, m = {m}")
    first = next(iter(results.values()))
    ax.axhline(first[0]["nothing"], color="grey", ls=":", lw=1, label="predicting nothing")
    if reduction == "sum":  # the note's scale
        ax.plot(*NOTE_BUMP, "k*", ms=9, label="the note's bump (+1.5% at T = 2,000, m = 2, as issue 26 reads its Figure 3)")
    ax.set_yscale("log")
    over = "mean over examples and features" if reduction == "mean" else "mean over examples of the sum over features"
    return _finish(fig, ax, f"loss ({over})", trained)


def compare(sources: dict[str, Path], m: int = 2) -> Figure:
    """The test loss against T of the m runs (directories m{m}-T{T}) in each source, one line
    per source, labelled by its key: the runs of one setting trained under different losses
    (issue 26's sensitivity). Drawn per unit-norm example, where predicting nothing costs 1:
    the sum over features as it is, the mean over features times n."""
    from ..runs import load_run

    fig, ax = _against_T()
    for k, (label, source) in enumerate(sources.items()):
        runs = sorted((load_run(d) for d in Path(source).glob(f"m{m}-T*")), key=lambda run: run.config.dataset_size)
        if not runs:
            raise ConfigError(f"sources: no run m{m}-T* in {source}")
        scale = [run.config.features if run.config.loss_reduction == "mean" else 1 for run in runs]
        rows = [run.metrics["instances"][0] for run in runs]
        ax.errorbar(
            [run.config.dataset_size for run in runs],
            [row["test_loss"] * c for row, c in zip(rows, scale)],
            yerr=[row["test_loss_se"] * c for row, c in zip(rows, scale)],
            fmt="o-", color=f"C{k}", capsize=2, label=f"{label} ({runs[0].config.loss_reduction} over features)",
        )  # fmt: skip
    ax.axhline(1.0, color="grey", ls=":", lw=1, label="predicting nothing")
    ax.set_yscale("log")
    trained = _of_every_T(runs[0].config).replace(", loss summed over features", "")
    return _finish(fig, ax, "test loss per example (sum over features)", trained)


def _of_every_T(config) -> str:
    """What was trained, for a figure of every T: T for the training set and the batch."""
    T = config.dataset_size
    text = describe(config).replace(f"{T:,} training examples", "T training examples")
    return text.replace(f"steps × {T}", "full-batch steps") if T <= config.batch_size else text


def _dimensionality(dimensions: dict[int, tuple[list[float], list[float]]], trained: str) -> Figure:
    """Every training example's D_t and every feature's D_i at each T, as the note plots them."""
    fig, ax = _against_T()
    sizes = sorted(dimensions)
    for k, name in enumerate(("data points D_t", "features D_i")):
        spread = 1 + (0.06 if k else -0.06)  # the two kinds side by side at each T
        for T in sizes:
            values = dimensions[T][k]
            ax.scatter(np.full(len(values), T * spread), values, s=4, alpha=0.25, color=f"C{3 * k}", label=name if T == sizes[0] else None)
        ax.plot(sizes, [max(dimensions[T][k]) for T in sizes], "-", color=f"C{3 * k}", lw=1, label=f"largest {name.split()[-1]}")
    return _finish(fig, ax, "dimensionality", trained)


def _against_T() -> tuple[Figure, Any]:
    fig = Figure(figsize=(7, 4.5))
    return fig, fig.subplots()


def _finish(fig: Figure, ax: Any, ylabel: str, trained: str) -> Figure:
    """A quantity against T on a log axis, titled with what was trained."""
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())  # over a decade or two they overlap: 3×10²4×10²
    ax.set_xlabel("training examples T")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    fig.suptitle(trained, fontsize=7, wrap=True)
    return fig


def _geometry(geometry: dict[int, tuple[np.ndarray, np.ndarray]], trained: str) -> Figure:
    sizes = sorted(geometry)
    fig = Figure(figsize=(1.9 * len(sizes), 4.2))
    axes = fig.subplots(2, len(sizes), squeeze=False)
    for col, T in enumerate(sizes):
        for row, (points, name) in enumerate(zip(geometry[T], ("training examples h_t", "features W_i"))):
            ax = axes[row, col]
            limit = max(float(np.abs(points).max()), 1e-12) * 1.1
            segments = np.stack([np.zeros_like(points), points], axis=1)
            ax.add_collection(LineCollection(segments, colors="C0" if row == 0 else "C3", linewidths=0.6, alpha=0.7))
            ax.set_xlim(-limit, limit)
            ax.set_ylim(-limit, limit)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"T = {T:,}", fontsize=9)
            if col == 0:
                ax.set_ylabel(name, fontsize=8)
    fig.suptitle(trained, fontsize=7, wrap=True)
    return fig
