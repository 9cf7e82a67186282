"""SynthSAEBench's shape (Chanin and Garriga-Alonso 2026, on SAELens's synthetic module) at a
size this machine trains in minutes: its 16,384 features in 768 dimensions scaled down 16x
to 1,024 in 48 (quick: 128 in 6), with its data otherwise as it has it: Zipf firing
(exponent 0.5, p from 0.4 to 5e-4), trees of 4 children down 3 levels under 1 root per 128
features with exclusive siblings, compensated rates and children scaled by their parents,
a rank-25 copula (scale 0.1), normal magnitudes with means linear from 5 to 4 and
folded-normal spreads (0.5, 0.5), and its dictionary orthogonalised as SAELens does it (100
Adam steps on the squared cosines: `orthogonalize`, a tight frame). Not here: its bias of
norm 0.5 (b_dec learns a constant).

BatchTopK and Matryoshka SAEs a quarter as wide as the features (as its 4,096 of 16,384),
k the true L0 of the top quarter of the features (as its 25), 2 dictionaries (quick: 1),
4,000 steps of 1,024 rows (4 million samples; it trains 200 million), AuxK and no
resampling, as SAELens trains them. Its published
numbers at L0 = 25 (SAELens's docs): BatchTopK MCC 0.757, F1 0.732, explained variance
0.792; Matryoshka MCC 0.793, F1 0.879, explained variance 0.779.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from . import Claim, Options, Outcome, _Checked, sae_overrides

FULL, QUICK = (1024, 48, 2, 4000), (128, 6, 1, 150)  # features, dims, dictionaries, steps
THEIRS = {"batchtopk": {"mcc": 0.757, "f1": 0.732, "variance_explained": 0.792}, "matryoshka": {"mcc": 0.793, "f1": 0.879, "variance_explained": 0.779}}
SCORES = ("mcc", "f1", "variance_explained", "l0", "uniqueness", "shrinkage", "dead_fraction")


def data(features: int, dims: int, instances: int, steps: int) -> dict:
    return {
        "data": "dictionary", "features": features, "dims": dims, "instances": instances, "steps": steps,
        "firing": "zipf", "firing_max": 0.4, "firing_min": 5e-4, "zipf_exponent": 0.5,
        "generator": "synthetic", "roots": max(1, features // 128), "branching": 4, "depth": 3, "exclusive": True,
        "compensate": True, "scale_children": True, "correlation_rank": 25, "correlation_scale": 0.1,
        "magnitude": "normal", "magnitude_mean": 5.0, "magnitude_mean_end": 4.0, "magnitude_std": 0.5, "magnitude_std_spread": 0.5,
        "orthogonalize": 100, "latents": features // 4, "resample": False,  # SAELens's BatchTopK has AuxK, no resampling
    }  # fmt: skip


def true_l0(keys: dict, top: int) -> float:
    """The mean number of the `top` most frequent features firing per row, measured on 16,384 rows."""
    from ..saes.config import resolve_sae
    from ..saes.training import source_of

    source = source_of(resolve_sae({**keys, "kind": "relu", "steps": 1}))
    x = source.inputs(12_345, 16_384, 0)
    return float((x[..., :top] != 0).sum(-1).float().mean())


def shortfall(mean: dict, steps: int) -> str:
    """What the run shows about why its scores fall short of the full size's."""
    dead = ", ".join(f"{kind} {mean[kind]['dead_fraction']:.0%}" for kind in mean)
    return (
        f"{steps * 1024 / 1e6:.1f} million samples against their 200 million: latents dead at the end {dead}, and "
        f"per-latent F1 splits into dead latents (0) and a bulk near 0.6-0.8 (figure); explained variance already matches theirs"
    )


def run(directory: Path, options: Options) -> Outcome:
    from ..plots import save_figure
    from ..saes.config import resolve_sae
    from ..saes.runs import train_sae
    from ..saes.training import check

    features, dims, instances, steps = QUICK if options.quick else FULL
    common = sae_overrides("synthsaebench", options)
    keys = {**data(features, dims, instances, steps), **common}
    width = keys["latents"]
    k = round(true_l0(keys, width), 2)
    prefixes = [width // 8, width // 4, width // 2, width]
    kinds = {"batchtopk": {"k": k}, "matryoshka": {"k": k, "prefixes": prefixes}}
    saes = {}
    for kind, extra in kinds.items():
        config = resolve_sae({**keys, "kind": kind, **extra})
        if options.check:
            check(config)
            raise _Checked
        saes[kind] = train_sae(config, progress=options.progress)
        saes[kind].save(directory / kind)
    mean = {kind: {s: sum(r[s] for r in sae.metrics["instances"]) / instances for s in SCORES} for kind, sae in saes.items()}
    save_figure(figure(saes, mean), directory / "synthsaebench.png")
    table = [
        {"kind": kind, **{s: round(mean[kind][s], 3) for s in SCORES}, **{f"theirs {s}": THEIRS[kind][s] for s in ("mcc", "f1")}}
        for kind in saes
    ]

    def said(kind: str) -> str:
        m, t = mean[kind], THEIRS[kind]
        return f"{kind}: MCC {m['mcc']:.3f} (theirs {t['mcc']}), F1 {m['f1']:.3f} ({t['f1']}), explained variance {m['variance_explained']:.3f} ({t['variance_explained']}), L0 {m['l0']:.1f}"

    size = f"{features:,} features in {dims} dims, SAEs of {width} latents at k = {k} (the top quarter's L0), {steps:,} steps x 1,024, {instances} dictionaries"
    claims = [
        Claim(
            f"SynthSAEBench's shape at 1/{16384 // features} of its size ({size}): a Matryoshka SAE's F1 is above BatchTopK's at the same k",
            "SynthSAEBench-16k (SAELens docs, L0 = 25): Matryoshka F1 0.879 against BatchTopK 0.732",
            f"{said('matryoshka')}; {said('batchtopk')}",
            mean["matryoshka"]["f1"] > mean["batchtopk"]["f1"],
        ),
        Claim(
            "its MCC is above BatchTopK's too",
            "SynthSAEBench-16k: Matryoshka MCC 0.793 against BatchTopK 0.757",
            f"Matryoshka {mean['matryoshka']['mcc']:.3f}, BatchTopK {mean['batchtopk']['mcc']:.3f}",
            mean["matryoshka"]["mcc"] > mean["batchtopk"]["mcc"],
            shortfall(mean, steps),
        ),
    ]
    legend = "MCC, F1, uniqueness, shrinkage as SAELens's synthetic evaluations define them (analysis/recovery.py); theirs: SynthSAEBench-16k's published values at L0 = 25, full size, 200 million samples"
    return Outcome(claims=claims, table=table, legend=legend)


def figure(saes: dict, mean: dict) -> Figure:
    """Each kind's per-latent F1 (every dictionary's latents), and its MCC, F1 and explained
    variance beside SynthSAEBench-16k's."""
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    left, right = fig.subplots(1, 2)
    bins = [i / 20 for i in range(21)]
    for c, (kind, sae) in enumerate(saes.items()):
        f1 = [v for r in sae.metrics["instances"] for v in r["f1_per_latent"]]
        left.hist(f1, bins=bins, histtype="step", lw=1.5, color=f"C{c}", label=f"{kind} (mean {mean[kind]['f1']:.3f})")
    left.set_xlabel("a latent's F1 against its closest feature's firing")
    left.set_ylabel("latents")
    left.legend(fontsize=8)
    scores = ("mcc", "f1", "variance_explained")
    width = 0.2
    for c, kind in enumerate(saes):
        xs = [i + (c - 0.5) * 2 * width for i in range(len(scores))]
        right.bar([x - width / 2 for x in xs], [mean[kind][s] for s in scores], width, color=f"C{c}", label=f"{kind}, ours")
        right.bar([x + width / 2 for x in xs], [THEIRS[kind][s] for s in scores], width, color=f"C{c}", alpha=0.35, hatch="//", label=f"{kind}, SynthSAEBench-16k")
    right.set_xticks(range(len(scores)), ["MCC", "F1", "explained variance"])
    right.set_ylim(0, 1.3)
    right.legend(fontsize=7, loc="upper center", ncol=2)
    config = next(iter(saes.values())).config
    fig.suptitle(
        f"SynthSAEBench's shape at 1/{16384 // config.features}: {config.features:,} features in {config.dims} dims, SAEs of "
        f"{config.latents} latents, k = {config.settings[0]:g}, {config.steps:,} steps x {config.batch_size:,}, "
        f"{config.source_instances} dictionaries (theirs: 16,384 in 768, 4,096 latents, 200M samples)",
        fontsize=8,
    )
    return fig
