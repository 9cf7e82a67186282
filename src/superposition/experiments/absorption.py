"""Feature absorption (Chanin et al. 2024), and Matryoshka SAEs against it (Bussmann et al.
2025), on Noa Nabeshima's toy: 20 orthonormal features in 20 dimensions, 3 parents
(p = 0.15) with 3 mutually exclusive children each (given its parent, each child on 20%
of rows and none on 40%: each child's own chance 1 − 0.4^(1/3), one kept of those that
fire), and 8 independent features (p = 0.05); every firing feature has magnitude 1.
8 random dictionaries (quick: 1), one SAE of 20 latents of each kind on each:

  relu        our default L1 (what Chanin et al.'s toy trains: an L1 SAE)
  topk        k = 1 (the true L0, 1.12, rounded)
  batchtopk   k = 1.25 (Nabeshima's target L0 was 1.23)
  matryoshka  BatchTopK at the same k, prefixes 3 (the parents' count), 12, 20

Absorption (recovery.py): a child's rows on which its parent's latent is silent while the
child's latent fires and carries the parent's direction. Beside it, what the sources
report in their toys: the cosine of each child's latent with its parent's direction
(Nabeshima's figure: about 0.7 for a vanilla SAE, near 0 for Matryoshka).
"""

from __future__ import annotations

from pathlib import Path

import torch
from matplotlib.figure import Figure

from . import Claim, Options, Outcome, _Checked, mean_se, sae_overrides

PARENT_P, INDEPENDENT_P, FEATURES = 0.15, 0.05, 20
CHILD_OWN = 1 - 0.4 ** (1 / 3)
ROOTS = BRANCHING = 3
K, BATCH_K = 1, 1.25
PREFIXES = [ROOTS, 12, FEATURES]
ABSORBS = 0.25  # "absorbs": a quarter of the children's rows or more, on average
MARKEDLY = 0.5  # "markedly less": at most half of BatchTopK's at the same k
KINDS = {"relu": {}, "topk": {"k": K}, "batchtopk": {"k": BATCH_K}, "matryoshka": {"k": BATCH_K, "prefixes": PREFIXES}}


def data(instances: int, steps: int) -> dict:
    children = ROOTS * BRANCHING
    density = [PARENT_P] * ROOTS + [CHILD_OWN] * children + [INDEPENDENT_P] * (FEATURES - ROOTS - children)
    return {
        "data": "dictionary", "features": FEATURES, "dims": FEATURES, "orthogonal": True, "density": density, "instances": instances,
        "generator": "synthetic", "roots": ROOTS, "branching": BRANCHING, "exclusive": True, "magnitude": "normal", "magnitude_mean": 1.0,
        "latents": FEATURES, "steps": steps,
    }  # fmt: skip


def parent_lean(sae) -> list[float]:
    """Per SAE, the mean over children of the cosine of the child's matched latent with its parent's direction."""
    from ..analysis.recovery import cosines, matching

    parents = [p for p in range(ROOTS) for _ in range(BRANCHING)]
    cos = cosines(sae.features, sae.params["W_dec"])
    out = []
    for i in range(len(cos)):
        features, latents = matching(cos[i])
        latent = dict(zip(features.tolist(), latents.tolist()))
        out.append(sum(float(cos[i, p, latent[ROOTS + c]]) for c, p in enumerate(parents)) / len(parents))
    return out



def run(directory: Path, options: Options) -> Outcome:
    from ..plots import save_figure
    from ..saes.config import resolve_sae
    from ..saes.runs import train_sae
    from ..saes.training import check

    instances, steps = (1, 200) if options.quick else (8, 3000)
    common = sae_overrides("absorption", options)
    saes = {}
    for kind, extra in KINDS.items():
        config = resolve_sae({**data(instances, steps), "kind": kind, **extra, **common})
        if options.check:
            check(config)
            raise _Checked
        saes[kind] = train_sae(config, progress=options.progress)
        saes[kind].save(directory / kind)
    rate = {kind: mean_se([r["absorption"] for r in sae.metrics["instances"]]) for kind, sae in saes.items()}
    lean = {kind: mean_se(parent_lean(sae)) for kind, sae in saes.items()}
    table = [
        {
            "kind": kind, "setting": " ".join(f"{k} {v}" for k, v in KINDS[kind].items()) or f"l1 {sae.config.settings[0]:.3g}",
            "absorption": f"{rate[kind][0]:.3f} ± {rate[kind][1]:.3f}", "child latent · parent": f"{lean[kind][0]:+.3f}",
            "MCC": round(sum(r["mcc"] for r in sae.metrics["instances"]) / instances, 3),
            "L0": round(sum(r["l0"] for r in sae.metrics["instances"]) / instances, 2),
            "var. explained": round(sum(r["variance_explained"] for r in sae.metrics["instances"]) / instances, 3),
        }
        for kind, sae in saes.items()
    ]  # fmt: skip
    save_figure(_figure(saes, rate), directory / "absorption.png")

    def said(kind: str) -> str:
        return f"{kind} {rate[kind][0]:.2f} ± {rate[kind][1]:.2f} (child latent · parent {lean[kind][0]:+.2f})"

    claims = [
        Claim(
            f"an L1 SAE and a TopK SAE absorb: on {instances} toy dictionaries (Nabeshima's: 3 parents x 3 exclusive children, "
            f"8 independent features, orthonormal in {FEATURES} dims) the parent's latent is silent on its children's rows, "
            f"their latents carrying its direction, on at least {ABSORBS:.0%} of them",
            "Chanin et al. 2024 (toy: the parent's latent stops firing with the child; the child's latent takes parent + child); "
            "Nabeshima 2024 (vanilla SAE: child latents ≈ 0.7 cosine with their parent)",
            f"absorption rate (mean ± SE over dictionaries): {said('relu')}; {said('topk')}",
            rate["relu"][0] >= ABSORBS and rate["topk"][0] >= ABSORBS,
        ),
        Claim(
            f"a Matryoshka SAE absorbs markedly less: at most {MARKEDLY:g}x the rate of BatchTopK at the same k ({BATCH_K}), "
            "and less than L1 and TopK",
            "Bussmann et al. 2025, Nabeshima 2024: Matryoshka SAEs learn the parents as latents of their own "
            "(Nabeshima's figure: near-diagonal, child latents ≈ 0.2 cosine with their parent); on Gemma-2-2B "
            "\"dramatically lower\" absorption (no toy rate is published)",
            f"{said('matryoshka')}; {said('batchtopk')}",
            rate["matryoshka"][0] <= MARKEDLY * rate["batchtopk"][0] and rate["matryoshka"][0] < min(rate["relu"][0], rate["topk"][0]),
        ),
    ]
    legend = (
        "absorption: the share of a child's rows on which its parent's latent (matched one-to-one, Hungarian on |cos|) is "
        "silent while the child's latent fires with at least 0.3 more cosine with the parent than the child itself has, "
        "averaged over the 9 children; child latent · parent: that latent's cosine with the parent's direction (0 for the true "
        "child direction, 0.71 for parent + child)"
    )
    return Outcome(claims=claims, table=table, legend=legend)


def _figure(saes: dict, rate: dict) -> Figure:
    """Each kind's decoder cosines with the true features on dictionary 0 (latents in matched
    order), and the absorption rate of every kind."""
    from matplotlib.ticker import MaxNLocator

    from ..analysis.recovery import cosines, matching

    fig = Figure(figsize=(3.2 * (len(saes) + 1), 3.6), layout="constrained")
    axes = fig.subplots(1, len(saes) + 1)
    for ax, (kind, sae) in zip(axes, saes.items()):
        cos = cosines(sae.features[:1], sae.params["W_dec"][:1])[0]
        _, order = matching(cos)
        image = ax.imshow(cos[:, torch.as_tensor(order)].numpy(), cmap="RdBu_r", vmin=-1, vmax=1)
        ax.set_title(f"{kind} (absorption {rate[kind][0]:.2f})", fontsize=9)
        ax.set_xlabel("latent (matched order)", fontsize=8)
        ax.set_ylabel(f"true feature: 0-{ROOTS - 1} parents, {ROOTS}-{ROOTS * (BRANCHING + 1) - 1} children", fontsize=7)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    fig.colorbar(image, ax=axes[len(saes) - 1], shrink=0.8, label="cosine")
    kinds = list(saes)
    axes[-1].bar(kinds, [rate[k][0] for k in kinds], yerr=[rate[k][1] for k in kinds], color="C0", capsize=3)
    axes[-1].set_ylabel("absorption rate (mean ± SE)")
    axes[-1].tick_params(axis="x", labelsize=8, rotation=30)
    config = next(iter(saes.values())).config
    fig.suptitle(
        f"Feature absorption on Nabeshima's toy: {config.features} orthonormal features in {config.dims} dims ({ROOTS} parents x "
        f"{BRANCHING} exclusive children, the rest independent), SAEs of {config.latents} latents, {config.steps:,} steps x "
        f"{config.batch_size:,}; cosines on dictionary 0 of {config.source_instances}",
        fontsize=9,
    )
    return fig
