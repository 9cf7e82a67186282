"""The seed project's experiment: its One Weight (tied) and Two Weight (untied) nets.

Settings as the seed ran them (../shared/seed/NOTES.md): 20 features into 5,
sparsities 0 … 0.999, importance 0.7^i, AdamW lr 1e-3 wd 0.01, batch 1024,
10,000 steps, the seed's data. Two procedures, each over REPLICATES seeds packed as
instances (one run per net and procedure): the seed's own, every sparsity
warm-started from the previous one's weights in the seed's order, and fresh models
per sparsity. Every claim is checked on every seed of both: it holds where it holds
for most seeds of the seed's own procedure, and the count for each procedure says
the rest. `--data paper` switches to the paper's distribution.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from ..config import SEED_SPARSITIES
from ..analysis.geometry import code_likeness, ternary_codes
from ..models import gram
from ..plots import gram_figure, save_figure
from ..training.loop import TrainResult
from . import Claim, Options, Outcome, fit, still_falling

SETTINGS: dict[str, Any] = {
    "features": 20,
    "hidden": 5,
    "sparsity": list(SEED_SPARSITIES),
    "importance_decay": 0.7,
    "optimizer": "adamw",
    "lr": 1e-3,
    "weight_decay": 0.01,
    "batch_size": 1024,
    "steps": 10_000,
    "data": "seed",
}
# The seed's names for its two nets, and ours.
MODELS = {"one_weight": "tied", "two_weight": "untied"}
REPLICATES = 5
# procedure -> (warm start, suffix of its run directories and figures); the seed's first
PROCEDURES = {"warm start": (True, ""), "fresh": (False, "-fresh")}
LEGEND = (
    "The seed is the earlier project this toolkit reproduces first: its One Weight (tied, x W Wᵀ) and Two "
    "Weight (untied, x W W_out) nets, 20 features into 5 hidden dimensions. Seeds 0-4 are random seeds: "
    f"{REPLICATES} copies of every setting, each with its own initial weights and data. diagonal count: the "
    "features whose entry on the diagonal of W Wᵀ (or W W_out) exceeds 0.5, the seed's count of features "
    "learned. Procedures: warm start is the seed's own (each sparsity starts from the previous one's "
    "weights), fresh a new model per sparsity. A claim holds where it holds for most random seeds of the "
    "seed's own procedure; the fresh count beside it is for comparison, not part of the verdict. In the "
    "figures, blue is positive and red negative."
)


def run(directory: Path, options: Options) -> Outcome:
    quick = {"steps": 3000} if options.quick else {}
    options = replace(options, overrides={k: v for k, v in options.overrides.items() if k != "warm_start"})  # both run
    rows, claims = [], {}
    for procedure, (warm, suffix) in PROCEDURES.items():
        seeds: list[dict[str, Any]] = [{} for _ in range(REPLICATES)]
        for name, model in MODELS.items():
            keys = {**SETTINGS, **quick, "model": model, "replicates": REPLICATES, "warm_start": warm}
            # the run's own figures would show all its seeds side by side: seed 0's are drawn below
            result, metrics = fit(directory / f"{name}{suffix}", keys, options, figures=False)
            for r in range(REPLICATES):
                seeds[r][name] = _replicate(result, metrics["instances"], r)
            first, instances = seeds[0][name]
            save_figure(gram_figure(first.config, first.params), directory / f"{name}{suffix}.png")
            for k, instance in enumerate(instances):
                every = [seeds[r][name][1][k] for r in range(REPLICATES)]
                rows.append(
                    {
                        "procedure": procedure,
                        "net": f"{name} ({model})",
                        "sparsity": round(1 - instance["feature_probability"][0], 12),
                        f"diagonal count, seeds 0-{REPLICATES - 1}": " ".join(str(i["diagonal_count"]) for i in every),
                        "mean loss": sum(i["loss"] for i in every) / REPLICATES,
                    }
                )
        claims[procedure] = [_claims(runs) for runs in seeds]
    return Outcome(claims=_per_procedure(claims), table=rows, legend=LEGEND)


def _replicate(result: TrainResult, instances: list[dict[str, Any]], r: int) -> tuple[TrainResult, list[dict[str, Any]]]:
    """Seed r of a run with `replicates` copies of every sparsity: its instances, in order."""
    picked = list(range(r, result.config.instances, result.config.replicates))
    alone = TrainResult(
        config=result.config.subset(picked),
        params={k: v[picked] for k, v in result.params.items()},
        history=result.history[:, picked],
        steps_run=result.steps_run,
    )
    return alone, [instances[i] for i in picked]


def _per_procedure(claims: dict[str, list[list[Claim]]]) -> list[Claim]:
    """One claim per claim of the seed: how many seeds of each procedure it holds in."""
    merged = []
    own = next(iter(PROCEDURES))
    for k, first in enumerate(claims[own][0]):
        counts = {p: sum(seed[k].holds for seed in every) for p, every in claims.items()}
        ours = ", ".join(f"{p} {n}/{REPLICATES}" for p, n in counts.items())
        seed0 = "; ".join(f"{p}, seed 0: {every[0][k].ours}" for p, every in claims.items())
        notes = "; ".join(f"{p}: {every[0][k].note}" for p, every in claims.items() if every[0][k].note)
        merged.append(Claim(first.claim, first.paper, f"{ours} seeds ({seed0})", 2 * counts[own] > REPLICATES, notes))
    return merged


def _claims(runs: dict[str, Any]) -> list[Claim]:
    seen, holds = [], []
    for name, (_, instances) in runs.items():
        norms = torch.tensor(instances[0]["feature_norms"])
        dropped_bias = torch.tensor(instances[0]["bias"])[norms <= 0.5]
        top = (norms > 0.5).nonzero().flatten().tolist()
        seen.append(f"{name}: learned {top}, {int((dropped_bias > 0).sum())}/{len(dropped_bias)} dropped with b > 0")
        holds.append(top == [0, 1, 2, 3, 4] and bool((dropped_bias > 0).all()))
    claims = [
        Claim(
            "dense data: only the 5 most important features learned, the other 15 get a positive bias",
            "5 of 20, positive bias",
            "; ".join(seen),
            all(holds),
        )
    ]
    tied = runs["one_weight"][1][-1]["diagonal_count"]
    claims.append(Claim("tied net at S=0.999 learns almost 18 of 20", "~18", str(tied), abs(tied - 18) <= 2))
    result = runs["two_weight"][0]
    untied = runs["two_weight"][1][3]["diagonal_count"]
    falling = ", ".join(f"{still_falling(result.history, k):.0%}" for k in (3, 4))
    note = f"the untied training loss at S=0.99, 0.999 was still falling {falling} over the last tenth of the steps"
    claims.append(Claim("untied net at S=0.99 learns all 20", "20", str(untied), untied == 20, note))
    matrices = gram(result.params, result.config)
    upper = [float(torch.triu(m, 1).clamp(max=0).sum()) for m in matrices[3:]]
    lower = [float(torch.tril(m, -1).clamp(max=0).sum()) for m in matrices[3:]]
    claims.append(
        Claim(
            "untied net: negative entries of W W_out cluster above the diagonal (S=0.99, 0.999)",
            "upper triangle",
            ", ".join(f"upper {u:.1f} vs lower {l:.1f}" for u, l in zip(upper, lower)),
            all(u < 2 * l for u, l in zip(upper, lower)),
            note,
        )
    )
    claims.append(_postulate(runs))
    negative = [sum(b < 0 for b in instance["bias"]) for instance in runs["one_weight"][1]]
    claims.append(
        Claim(
            "tied net: biases turn negative as sparsity rises",
            "negative at high sparsity",
            "negative biases per sparsity: " + ", ".join(map(str, negative)),
            negative[0] == 0 and negative[-1] > 10,
        )
    )
    return claims


def _postulate(runs: dict[str, Any]) -> Claim:
    """The seed's postulate: its 5 neurons hold 20 features as a binary or ternary code.

    A ±1/0 code would give every feature equal magnitudes on its active neurons
    (code-likeness 1) and distinct patterns. Measured on the sparsest instance.
    """
    parts, coded, rotated = [], [], []
    for name, (result, instances) in runs.items():
        W = result.params["W"][-1]
        represented = torch.tensor(instances[-1]["feature_norms"]) > 0.5
        codes = [c for c, r in zip(ternary_codes(W), represented) if r]
        likeness = code_likeness(W)[represented]
        unit = torch.nn.functional.normalize(W[represented], dim=-1)
        antipodal = int(((unit @ unit.T) < -0.9).sum()) // 2
        coded.append(float(likeness.median()) > 0.8)
        rotated.append(_rotation_check(result.config, result.params, represented))
        parts.append(
            f"{name}: {int(represented.sum())} features, {len(set(codes))} distinct sign patterns, "
            f"median code-likeness {float(likeness.median()):.2f}, {antipodal} antipodal pairs"
        )
    return Claim(
        "the seed's postulate: the 5 neurons hold the features as a binary/ternary (±1/0) code (S=0.999)",
        "a ±1/0 code on 5 neurons",
        "; ".join(parts),
        all(coded),
        "code-likeness is the smallest over the largest |weight| among a feature's active neurons "
        "(|w| >= 0.3 max): a ±1/0 code gives 1; continuous directions give less. Without a ReLU on the "
        "hidden layer the neurons are no privileged basis: rotating the hidden space (W → W R, and W_out → "
        "Rᵀ W_out) " + "; ".join(rotated) + ". So a code on the neurons is not what the model learns; its "
        "geometry (directions, antipodal pairs) is.",
    )


def _rotation_check(config, params, represented) -> str:
    """Evaluation loss and sign patterns after a random rotation R of the hidden space."""
    from ..analysis.metrics import eval_loss

    last = {k: v[-1:] for k, v in params.items()}
    R = torch.linalg.qr(torch.randn(config.hidden, config.hidden, generator=torch.Generator().manual_seed(0)))[0]
    turned = {**last, "W": last["W"] @ R}
    if "W_out" in last:
        turned["W_out"] = R.T @ last["W_out"]
    single = config.subset([config.instances - 1])
    before, after = float(eval_loss(single, last)), float(eval_loss(single, turned))
    changed = sum(a != b for a, b, r in zip(ternary_codes(last["W"][0]), ternary_codes(turned["W"][0]), represented) if r)
    return f"{config.model}: loss {before:.3g} → {after:.3g}, {changed} of {int(represented.sum())} sign patterns change"
