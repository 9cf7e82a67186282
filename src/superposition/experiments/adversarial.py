"""Superposition makes models vulnerable to adversarial examples.

Tied ReLU models, n=20, m=5, I=1, densities 1 … 0.001. The analytic attack of the
paper's §"Superposition and adversarial examples": to move output feature i, push
the input along row i of Wᵀ W (here W Wᵀ, row i: what each input feature adds to
output i), with an L2 budget of 0.1 × the mean input norm of the evaluation batch.

Vulnerability of a model: the mean over features i and inputs x of
‖f(x + δ_i) − f(x)‖² / ‖δ_i‖², how much the output moves per unit of attack (1 for
an identity on the attacked direction, 0 when it does not pass). Claims: it rises
more than 3x as superposition forms, and it tracks 1/D* (features per dimension).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from .. import data
from ..config import Config
from ..labels import describe
from ..models import Params, forward, gram
from ..plots import save_figure
from . import Claim, Options, Outcome, fit

BUDGET = 0.1  # attack norm, as a fraction of the mean input norm


def vulnerability(config: Config, params: Params, rows: int = 4096) -> torch.Tensor:
    """Per instance: mean over features and non-empty inputs of the squared output gain of the attack.

    Only inputs with some feature present count, for the budget as for the mean: at
    S = 0.999 nearly every row is empty, and an attack scaled to them would be ~0.
    """
    x = data.evaluation(config, rows)  # (inst, rows, feat)
    norms = x.norm(dim=-1)  # (inst, rows)
    present = (norms > 0).float()
    epsilon = BUDGET * (norms * present).sum(-1) / present.sum(-1).clamp_min(1)  # (inst,)
    directions = torch.nn.functional.normalize(gram(params, config), dim=-1)  # (inst, feat, feat)
    with torch.no_grad():
        clean = forward(params, x, config)
        gains = []
        for i in range(config.features):
            delta = epsilon[:, None, None] * directions[:, i][:, None, :]  # (inst, 1, feat)
            moved = ((forward(params, x + delta, config) - clean) ** 2).sum(-1)  # (inst, rows)
            gains.append((moved * present).sum(-1) / present.sum(-1).clamp_min(1) / epsilon**2)
    return torch.stack(gains).mean(0)


def run(directory: Path, options: Options) -> Outcome:
    density = np.logspace(0, -3, 8 if options.quick else 16)
    keys = {
        "features": 20,
        "hidden": 5,
        "importance_decay": 1.0,
        "feature_probability": [[float(p)] * 20 for p in density],
        "steps": 4000 if options.quick else 10_000,
        "lr": 3e-3 if options.quick else 1e-3,
    }
    result, metrics = fit(directory / "20x5", keys, options, restarts=1 if options.quick else 2)
    vuln = vulnerability(result.config, result.params).numpy()
    features_per_dim = np.array([1 / x["dimensions_per_feature"] for x in metrics["instances"]])
    save_figure(_figure(density, vuln, features_per_dim, describe(result.config)), directory / "adversarial.png")
    rise = vuln[-1] / vuln[0]
    correlation = float(np.corrcoef(vuln, features_per_dim)[0, 1])
    table = [
        {"density": round(float(p), 5), "vulnerability": round(float(v), 4), "1/D*": round(float(f), 3)}
        for p, v, f in zip(density, vuln, features_per_dim)
    ]
    claims = [
        Claim(
            "vulnerability to the analytic attack rises more than 3x as superposition forms",
            "> 3x",
            f"{rise:.1f}x from 1-S=1 to 1-S={density[-1]:.3g} (max {vuln.max() / vuln[0]:.1f}x)",
            rise > 3,
        ),
        Claim(
            "vulnerability tracks 1/D* (features per dimension)",
            "tracks 1/D*",
            f"Pearson r = {correlation:.2f} over {len(density)} densities",
            correlation > 0.8,
        ),
    ]
    return Outcome(claims=claims, table=table)


def _figure(density, vuln, features_per_dim, trained: str) -> Figure:
    fig = Figure(figsize=(6.5, 4.2))
    ax = fig.subplots()
    x = 1 / density
    ax.plot(x, vuln / vuln[0], "o-", color="tab:red", ms=3, label="vulnerability (relative to dense)")
    ax.plot(x, features_per_dim / features_per_dim[0], "s--", color="black", ms=3, label="1/D* (relative to dense)")
    ax.set_xscale("log")
    ax.set_xlabel("1/(1-S)")
    ax.set_ylabel("relative to the dense model")
    ax.legend(fontsize=8)
    fig.suptitle(trained, fontsize=7)
    return fig
