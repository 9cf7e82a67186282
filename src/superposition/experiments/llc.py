"""The learning coefficient of the toy model of superposition (Chen, Lau, Mendel, Wei and
Murfet 2023, "Dynamical versus Bayesian Phase Transitions in a Toy Model of Superposition").

Their setup: c = 6 features in 2 dimensions, f(x) = ReLU(Wᵀ W x + b); every input has
exactly one feature present, x = μ e_i with i uniform and μ ~ U[0, 1] (our `paper` data,
anticorrelated in one set of 6 at probability 1/6 each); the loss summed over features
and averaged over examples, L = E‖x − f(x)‖².

Critical points. A k-gon puts k columns of W at the angles 2πj/k, of length l, their
biases b; the other c − k columns are 0, and in k^{σ+} σ of those have the bias 1/(2c)
(which lowers the loss by 1/(4c²) each). We find l*, b* by minimising the exact loss (a
quadrature of μ on 20,000 points per feature) with L-BFGS and compare them and the loss
with the paper's table, then estimate each point's LLC with devinterp's SGLD on n = 5,000
fresh examples (nβ = n / log n, γ = 1) beside the paper's theoretical λ and its estimates.

Training. 8 models (quick: 3) trained as the paper's section 5 does: SGD at lr 0.005 on
n = 1,000 examples in batches of 20, here for 50,000 steps (theirs 225,000, from a 4-gon
with noise; ours from Xavier-normal weights), with 25 log-spaced checkpoints, and the
LLC of every checkpoint with the paper's trajectory settings: full batch, ε = 1e-3,
γ = 1, 500 draws. The paper's finding: loss plateaus at k-gon levels with drops between
them, where the LLC rises ("opposing staircases").

Where the paper's numbers come from: its table for c = 6 (l*, b*, the loss, λ and λ̂ at
n = 5,000) as transcribed in two independent sources (the arXiv source's table, and the
ICLR 2024 reviews); the paper's own text was not available to check them against here.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from scipy.stats import spearmanr
from torch import Tensor

from ..config import ConfigError, resolve
from ..models import forward, loss_per_instance, loss_weights
from ..plots import save_figure
from ..runs import Run, load_run
from ..tools.llc import llc, require_devinterp
from . import Claim, Options, Outcome, fit, mean_se

C = 6
# the paper's table (c = 6): l*, b*, loss, the theoretical λ (None: not given) and λ̂ ± std at n = 5,000
PAPER = {
    "4": (1.0, 0.0, 0.11111, None, None),
    "4+": (1.0, 0.0, 0.10417, None, None),
    "5": (1.17046, -0.28230, 0.06874, 7.0, (7.71, 0.85)),
    "5+": (1.17046, -0.28230, 0.06180, 8.5, (9.91, 1.27)),
    "6": (1.32053, -0.61814, 0.04819, 8.5, (9.03, 0.59)),
}
DATA = {
    "features": C, "hidden": 2, "model": "tied", "sparsity": [1 - 1 / C], "importance_decay": 1.0,
    "correlation": "anticorrelated", "set_size": C, "loss_reduction": "sum", "weight_decay": 0.0,
}  # fmt: skip
TRAINING = {"optimizer": "sgd", "lr": 0.005, "batch_size": 20, "dataset_size": 1000}
# a loss change between checkpoints beyond this share is a drop; within PLATEAU, a plateau
DROP, PLATEAU = 0.05, 0.01
LLC_FLOOR = -5  # the figure's lowest LLC


def kgon(name: str, length: float | Tensor, bias: float | Tensor) -> dict[str, Tensor]:
    """The parameters of the critical point `name` ("5+": a 5-gon, one dead feature with bias 1/(2c))."""
    k, plus = int(name[0]), name.count("+")
    angles = 2 * math.pi * torch.arange(k) / k
    rows = torch.stack([torch.cos(angles), torch.sin(angles)], dim=1) * length  # (k, 2)
    W = torch.cat([rows, torch.zeros(C - k, 2)])
    b = torch.cat([torch.ones(k) * bias, torch.full((plus,), 1 / (2 * C)), torch.zeros(C - k - plus)])
    return {"W": W[None], "b": b[None]}


def critical_point(name: str, config) -> tuple[float, float, float]:
    """(l*, b*, loss) of the k-gon `name`: its exact loss minimised over l and b."""
    mu = (torch.arange(20_000, dtype=torch.float64) + 0.5) / 20_000  # midpoint quadrature of U[0, 1]
    x = torch.zeros(C * len(mu), C, dtype=torch.float64)
    for i in range(C):
        x[i * len(mu) : (i + 1) * len(mu), i] = mu
    weights = loss_weights(config).double()

    def loss(length, bias):
        params = {k: v.double() for k, v in kgon(name, length, bias).items()}
        return loss_per_instance(forward(params, x[None], config), x[None], weights, config)[0]

    found = torch.tensor([1.0, -0.1], dtype=torch.float64, requires_grad=True)  # the search starts away from the paper's
    search = torch.optim.LBFGS([found], max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-15, line_search_fn="strong_wolfe")

    def closure():
        search.zero_grad()
        value = loss(found[0], found[1])
        value.backward()
        return value

    search.step(closure)
    length, bias = (float(v) for v in found.detach())
    return length, bias, float(loss(found[0], found[1]).detach())


def run(directory: Path, options: Options) -> Outcome:
    quick = options.quick
    instances, steps, checkpoints, draws = (3, 1500, 5, 40) if quick else (8, 50_000, 25, 500)
    keys = {**DATA, **TRAINING, "replicates": instances, "steps": steps, "checkpoints": checkpoints}
    if other := sorted(set(options.overrides) - {"seed", "device", "engine", "steps"}):
        raise ConfigError(f"{other[0]}: the llc preset trains Chen et al.'s setup; it takes --seed, --steps, --device and --engine only")
    require_devinterp()  # before anything trains (`reproduce all` checks every preset first)
    fit(directory / "training", keys, options)  # in `check` mode it raises once the config resolves
    trained = load_run(directory / "training")
    trajectory = llc(trained, checkpoints=True, batch_size=TRAINING["dataset_size"], lr=1e-3, localization=1.0, draws=draws, chains=1)

    point_config = resolve({**DATA, "steps": 1, "device": "cpu"})
    rows, point_draws, chains = (1000, 60, 2) if quick else (5000, 2000, 4)
    points = {}
    for name in PAPER:
        length, bias, loss = critical_point(name, point_config)
        entry = {"length": length, "bias": bias, "loss": loss}
        if PAPER[name][3] is not None:
            at = Run.of(point_config, kgon(name, length, bias))
            found = llc(at, rows=rows, batch_size=rows, lr=3e-4, localization=1.0, draws=point_draws, burnin=point_draws // 4, chains=chains)
            entry |= {"llc": found["estimates"][0]["llc_mean"], "llc_std": found["estimates"][0]["llc_std"]}
        points[name] = entry
    return _outcome(directory, trained, trajectory, points, rows)


def _outcome(directory: Path, trained: Run, trajectory: dict, points: dict, rows: int) -> Outcome:
    steps = trained.checkpoint_steps
    count = len(trained)
    loss = np.array([[e["init_loss"] for e in trajectory["estimates"] if e["instance"] == i] for i in range(count)])  # (inst, checkpoints)
    lam = np.array([[e["llc_mean"] for e in trajectory["estimates"] if e["instance"] == i] for i in range(count)])
    change = np.diff(loss, axis=1) / loss[:, :-1]
    rise = np.diff(lam, axis=1)
    drops, plateaus = rise[change <= -DROP], np.abs(rise[np.abs(change) <= PLATEAU])
    final = float(spearmanr(loss[:, -1], lam[:, -1]).statistic)
    save_figure(_trajectory_figure(steps, loss, lam, points, trained), directory / "llc-training.png")
    save_figure(_points_figure(points, rows), directory / "llc-critical-points.png")

    worst = max(abs(points[n]["loss"] - PAPER[n][2]) / PAPER[n][2] for n in PAPER)
    shape = max(max(abs(points[n]["length"] - PAPER[n][0]), abs(points[n]["bias"] - PAPER[n][1])) for n in PAPER)
    estimated = {n: p for n, p in points.items() if "llc" in p}
    said = "; ".join(f"{n}: {p['llc']:.2f} ± {p['llc_std']:.2f} (λ {PAPER[n][3]}, theirs {PAPER[n][4][0]} ± {PAPER[n][4][1]})" for n, p in estimated.items())
    table = [
        {
            "point": n, "l*": round(p["length"], 5), "b*": round(p["bias"], 5), "loss": round(p["loss"], 5), "paper's loss": PAPER[n][2],
            "LLC (ours)": f"{p['llc']:.2f} ± {p['llc_std']:.2f}" if "llc" in p else "", "λ (theory)": PAPER[n][3] or "",
            "λ̂ (paper)": f"{PAPER[n][4][0]} ± {PAPER[n][4][1]}" if PAPER[n][4] else "",
        }
        for n, p in points.items()
    ]  # fmt: skip
    claims = [
        Claim(
            "the k-gons are critical points whose loss is the paper's: minimising the exact loss over l and b gives its l*, b* and loss for c = 6",
            "Chen et al. table (c = 6): " + ", ".join(f"{n} loss {PAPER[n][2]}" for n in PAPER),
            ", ".join(f"{n} {points[n]['loss']:.5f}" for n in PAPER) + f"; largest relative loss difference {worst:.1e}, largest |Δl*|, |Δb*| {shape:.1e}",
            worst < 1e-3 and shape < 1e-3,
        ),
        Claim(
            "the LLC orders the critical points as the paper's estimates do: the 5-gon lowest, below the 6-gon and 5+",
            "theory λ: 5-gon 7, 5+ 8.5, 6-gon 8.5; their SGLD estimates at n = 5,000: 7.71 ± 0.85, 9.91 ± 1.27, 9.03 ± 0.59",
            f"SGLD on {rows:,} fresh examples (nβ = n / log n, ε 3e-4, γ 1), mean ± std over chains: {said}",
            estimated["5"]["llc"] < min(estimated["5+"]["llc"], estimated["6"]["llc"]),
        ),
        Claim(
            "over SGD training the loss falls in drops between plateaus, and the LLC rises at the drops, not on the plateaus",
            "Chen et al. §5: plateaus at k-gon losses, and a drop in loss comes with a rise of the estimated LLC ('opposing staircases')",
            f"{count} models, {len(steps)} checkpoints each: across intervals where the loss fell by >= {DROP:.0%} the LLC rose by "
            f"{_mean(drops)} (n = {len(drops)}); on plateaus (loss within {PLATEAU:.0%}) it moved by |{_mean(plateaus)}| (n = {len(plateaus)})",
            len(drops) > 0 and float(np.mean(drops)) > 0 and (len(plateaus) == 0 or float(np.mean(drops)) > 3 * float(np.mean(plateaus))),
        ),
        Claim(
            "the trained models are ordered by loss and LLC: the lower the final loss, the higher the LLC",
            "Chen et al.: critical points of lower loss have higher LLC",
            f"Spearman correlation of final loss and final LLC over {count} models: {final:+.2f}; final (loss, LLC): "
            + ", ".join(f"({loss[i, -1]:.3f}, {lam[i, -1]:.1f})" for i in range(count)),
            final < -0.5,
        ),
    ]
    legend = (
        "k^{σ+}: a k-gon with σ of its dead features given the bias 1/(2c); LLC: devinterp's SGLD estimate nβ (E[L] − L(w*)); "
        "along training L(w*) is the loss of the checkpoint on the training set, and early checkpoints, far from a critical point, "
        "estimate below 0"
    )
    return Outcome(claims=claims, table=table, legend=legend)


def _mean(values: np.ndarray) -> str:
    if len(values) == 0:
        return "n/a"
    mean, se = mean_se([float(v) for v in values])
    return f"{mean:+.2f} ± {se:.2f}" if len(values) > 1 else f"{mean:+.2f}"


def _trajectory_figure(steps, loss, lam, points, trained: Run) -> Figure:
    """Loss and LLC over training, one line per model, the k-gons' losses dotted."""
    fig = Figure(figsize=(7, 5.5), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    x = np.maximum(steps, 1)
    for i in range(len(loss)):
        top.plot(x, loss[i], "-o", ms=2.5, lw=1, color=f"C{i}")
        bottom.plot(x, lam[i], "-o", ms=2.5, lw=1, color=f"C{i}")
    for name, point in points.items():
        top.axhline(point["loss"], color="0.6", lw=0.7, ls=":")
        top.annotate(name, (x[0], point["loss"]), fontsize=7, color="0.3", xytext=(-14, 0), textcoords="offset points", va="center")
    top.set_xscale("log")
    # the staircase lies below the first k-gons; far from any critical point the loss is high
    # and the LLC estimate far below 0, which the axes cut off
    top.set_ylim(0.03, 0.2)
    bottom.set_ylim(LLC_FLOOR, max(1.0, float(lam.max())) * 1.15)
    top.set_ylabel("training loss L(w*)")
    bottom.set_ylabel("estimated LLC")
    bottom.axhline(0, color="0.6", lw=0.7)
    bottom.set_xlabel(f"step (0 drawn at 1); cut off: losses above 0.2, LLC estimates below {LLC_FLOOR}")
    config = trained.config
    fig.suptitle(
        f"{config.features} features in {config.hidden} dims, one present at a time, SGD lr {config.lr:g}, batch {config.batch_size} "
        f"of {config.dataset_size:,} examples, {config.steps:,} steps; {len(loss)} models; dotted: the k-gons' losses",
        fontsize=8,
    )
    return fig


def _points_figure(points: dict, rows: int) -> Figure:
    """Each critical point's LLC: ours, the theory's and the paper's estimate."""
    names = [n for n in points if "llc" in points[n]]
    fig = Figure(figsize=(6, 3.6), layout="constrained")
    ax = fig.subplots()
    at = np.arange(len(names))
    ax.bar(at - 0.25, [points[n]["llc"] for n in names], 0.25, yerr=[points[n]["llc_std"] for n in names], capsize=3, label=f"ours (n = {rows:,})")
    ax.bar(at, [PAPER[n][4][0] for n in names], 0.25, yerr=[PAPER[n][4][1] for n in names], capsize=3, label="Chen et al. (n = 5,000)")
    ax.bar(at + 0.25, [PAPER[n][3] for n in names], 0.25, label="theory λ")
    ax.set_xticks(at, [f"{n}\nloss {points[n]['loss']:.4f}" for n in names])
    ax.set_ylabel("local learning coefficient")
    ax.legend(fontsize=8)
    fig.suptitle(f"LLC of the k-gon critical points, {C} features in 2 dims (SGLD mean ± std over chains)", fontsize=8)
    return fig
