"""Feature hedging (Chanin et al. 2025, "Feature Hedging: Correlated features break narrow
sparse autoencoders"), on their single-latent toy: two orthonormal features in 50
dimensions, a parent (p = 0.25) and a child that fires only with it (on 20% of its rows),
every firing feature of magnitude 1; 8 random dictionaries (quick: 2). ReLU SAEs at our
default L1 (0.3 / d):

  narrow       1 latent for the 2 features: the SAE is narrower than the features, and
               its latent mixes in the child's direction (hedges) to cut the error of the
               rows where both fire
  independent  the same, on features that fire independently at the same rates (parent
               0.25, child 0.05): no correlation, nothing to hedge
  full         2 latents, one per feature: the parent's latent no longer hedges, and the
               child's latent absorbs the parent instead (Chanin et al.: "the same data
               with 2 latents gives absorption")

Hedging: the cosine of the parent's latent (the latent closest to it) with the child's
direction, or with the parent's where that latent took the child.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from . import Claim, Options, Outcome, _Checked, mean_se, sae_overrides

PARENT_P, CHILD_GIVEN_PARENT, DIMS = 0.25, 0.2, 50
HEDGES = 0.1  # "hedges": the latent's cosine with the child's direction at least this
NONE = 0.03  # "does not": below this


def data(instances: int, steps: int, tree: bool) -> dict:
    density = [PARENT_P, CHILD_GIVEN_PARENT] if tree else [PARENT_P, PARENT_P * CHILD_GIVEN_PARENT]
    return {
        "data": "dictionary", "features": 2, "dims": DIMS, "orthogonal": True, "density": density, "instances": instances,
        "generator": "synthetic", "magnitude": "normal", "magnitude_mean": 1.0, "steps": steps, "kind": "relu",
        **({"parents": [-1, 0]} if tree else {}),
    }  # fmt: skip


def hedging(sae) -> list[float]:
    """Per SAE, the cosine of the parent's latent (the one closest to the parent) with the
    feature it does not represent: the child's direction, unless the latent took the child
    (a 1-latent SAE on independent features may), then the parent's."""
    from ..analysis.recovery import cosines

    cos = cosines(sae.features, sae.params["W_dec"])  # (inst, feature, latent)
    out = []
    for i in range(len(cos)):
        latent = int(cos[i, 0].argmax())
        own = int(cos[i, :, latent].abs().argmax())
        out.append(float(cos[i, 1 - own, latent]))
    return out



def run(directory: Path, options: Options) -> Outcome:
    from ..plots import save_figure
    from ..saes.config import resolve_sae
    from ..saes.runs import train_sae
    from ..saes.training import check

    instances, steps = (2, 300) if options.quick else (8, 3000)
    common = sae_overrides("hedging", options)
    cases = {"narrow": (True, 1), "independent": (False, 1), "full": (True, 2)}
    saes = {}
    for name, (tree, latents) in cases.items():
        config = resolve_sae({**data(instances, steps, tree), "latents": latents, **common})
        if options.check:
            check(config)
            raise _Checked
        saes[name] = train_sae(config, progress=options.progress)
        saes[name].save(directory / name)
    hedge = {name: mean_se(hedging(sae)) for name, sae in saes.items()}
    absorbed = mean_se([r["absorption"] for r in saes["full"].metrics["instances"]])
    table = [
        {
            "case": name, "latents": sae.config.latents, "child fires": "with its parent" if cases[name][0] else "independently",
            "hedging (cos with child)": f"{hedge[name][0]:+.3f} ± {hedge[name][1]:.3f}",
            "absorption": f"{mean_se([r['absorption'] for r in sae.metrics['instances']])[0]:.3f}" if cases[name][0] else "",
            "var. explained": round(sum(r["variance_explained"] for r in sae.metrics["instances"]) / instances, 3),
        }
        for name, sae in saes.items()
    ]  # fmt: skip
    save_figure(_figure(saes, hedge), directory / "hedging.png")

    def took_child(name: str) -> int:
        from ..analysis.recovery import cosines

        cos = cosines(saes[name].features, saes[name].params["W_dec"])
        return sum(int(cos[i, :, int(cos[i, 0].argmax())].abs().argmax()) == 1 for i in range(len(cos)))

    def said(name: str) -> str:
        return f"{name} {hedge[name][0]:+.3f} ± {hedge[name][1]:.3f}"

    claims = [
        Claim(
            f"an SAE narrower than its correlated features hedges: with 1 latent for a parent and a child that fires only with it "
            f"({instances} dictionaries, orthonormal in {DIMS} dims), the latent leans toward the child (cosine >= {HEDGES}); "
            f"on independent features of the same rates it does not (absolute cosine below {NONE})",
            "Chanin et al. 2025: a narrow SAE's latent mixes in the directions of features correlated with its own",
            f"the latent's cosine with the feature it does not represent (mean ± SE): {said('narrow')}; {said('independent')}; "
            f"latents that took the child instead of the parent: narrow {took_child('narrow')}, independent {took_child('independent')} of {instances}",
            hedge["narrow"][0] >= HEDGES and abs(hedge["independent"][0]) < NONE,
        ),
        Claim(
            "at full width (2 latents) the parent's latent stops hedging, and the child's latent absorbs the parent instead",
            "Chanin et al. 2025: with a latent for each feature, hedging gives way to absorption",
            f"parent latent's cosine with the child: {said('full')} (narrow {hedge['narrow'][0]:+.3f}); "
            f"absorption rate {absorbed[0]:.2f} ± {absorbed[1]:.2f}",
            abs(hedge["full"][0]) < hedge["narrow"][0] / 2 and absorbed[0] > 0.25,
        ),
    ]
    legend = (
        "hedging: the cosine of the parent's latent (the latent closest to the parent's direction) with the child feature's "
        "direction (with the parent's where that latent took the child); 0 where the latent is one feature's own"
    )
    return Outcome(claims=claims, table=table, legend=legend)


def _figure(saes: dict, hedge: dict) -> Figure:
    """Each case's hedging per dictionary, and the mean."""
    fig = Figure(figsize=(6.5, 3.4), layout="constrained")
    ax = fig.subplots()
    for x, (name, sae) in enumerate(saes.items()):
        values = hedging(sae)
        ax.scatter([x] * len(values), values, color="C0", alpha=0.6, s=18)
        ax.errorbar([x + 0.15], [hedge[name][0]], yerr=[hedge[name][1]], fmt="o", color="C3", capsize=3)
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_xticks(range(len(saes)), [f"{name}\n({sae.config.latents} latent{'s' if sae.config.latents > 1 else ''})" for name, sae in saes.items()])
    ax.set_ylabel("latent's cosine with the other feature")
    config = saes["narrow"].config
    fig.suptitle(
        f"Feature hedging: {config.features} orthonormal features in {config.dims} dims, ReLU SAEs (L1 {config.settings[0]:.3g}), "
        f"{config.steps:,} steps x {config.batch_size:,}; {config.source_instances} dictionaries (dots), mean ± SE (red)",
        fontsize=8,
    )
    return fig
