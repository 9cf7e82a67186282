"""The seed project's experiment: its One Weight (tied) and Two Weight (untied) nets.

Settings as the seed ran them (../shared/seed/NOTES.md): 20 features into 5,
sparsities 0 … 0.999, importance 0.7^i, AdamW lr 1e-3 wd 0.01, batch 1024,
10,000 steps, the seed's data. Two differences are options, not defaults:
`--data paper` switches to the paper's distribution and `--warm-start` trains the
sparsities in sequence from the previous one's weights, as the seed did.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..config import SEED_SPARSITIES
from ..geometry import code_likeness, ternary_codes
from ..models import gram
from ..plots import gram_figure, save_figure
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


def run(directory: Path, options: Options) -> Outcome:
    quick = {"steps": 3000} if options.quick else {}
    rows, runs = [], {}
    for name, model in MODELS.items():
        result, metrics = fit(directory / name, {**SETTINGS, **quick, "model": model}, options)
        save_figure(gram_figure(result.config, result.params), directory / f"{name}.png")
        runs[name] = (result, metrics["instances"])
        for instance in metrics["instances"]:
            rows.append(
                {
                    "net": f"{name} ({model})",
                    "sparsity": round(1 - instance["feature_probability"][0], 12),
                    "represented": instance["represented"],
                    "diagonal_count": instance["diagonal_count"],
                    "loss": instance["loss"],
                }
            )
    return Outcome(claims=_claims(runs), table=rows)


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
    mode = "warm-started" if result.config.warm_start else "fresh (the seed warm-started: --warm-start)"
    falling = ", ".join(f"{still_falling(result.history, k):.0%}" for k in (3, 4))
    note = f"models {mode}; the untied training loss at S=0.99, 0.999 was still falling {falling} over the last tenth of the steps"
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
    from ..metrics import eval_loss

    last = {k: v[-1:] for k, v in params.items()}
    R = torch.linalg.qr(torch.randn(config.hidden, config.hidden, generator=torch.Generator().manual_seed(0)))[0]
    turned = {**last, "W": last["W"] @ R}
    if "W_out" in last:
        turned["W_out"] = R.T @ last["W_out"]
    single = config.model_copy(update={"feature_probability": config.feature_probability[-1:], "importance": config.importance[-1:]})
    before, after = float(eval_loss(single, last)), float(eval_loss(single, turned))
    changed = sum(a != b for a, b, r in zip(ternary_codes(last["W"][0]), ternary_codes(turned["W"][0]), represented) if r)
    return f"{config.model}: loss {before:.3g} → {after:.3g}, {changed} of {int(represented.sum())} sign patterns change"
