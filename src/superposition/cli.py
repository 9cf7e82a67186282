"""The `superposition` command line.

Heavy imports (torch, matplotlib) wait inside the commands, so `--help` is instant.
Every user error ends as one line on stderr and exit status 2.
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import sys
import threading
from pathlib import Path
from typing import Annotated, Any, get_args

import typer

from .config import (
    Activation,
    ConfigError,
    Device,
    Engine,
    LossReduction,
    Optimizer,
    Schedule,
    Target,
)
from .experiments import PRESETS

app = typer.Typer(
    help="Train, measure, save and draw toy models of superposition.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

def _choices(kind: Any) -> str:
    return "|".join(get_args(kind))


def _numbers(name: str, text: str | None, cast: type = float) -> list[Any] | None:
    if text is None:
        return None
    try:
        return [cast(part) for part in text.split(",")]
    except ValueError:
        what, example = ("whole numbers", "1,2,4") if cast is int else ("numbers", "0,0.9,0.99")
        raise ConfigError(f"{name}: {text!r} is not a comma-separated list of {what}, e.g. {example}") from None


def _options(given: list[str], flag: str = "data-option") -> dict[str, Any]:
    """--data-option (or --kind-option) KEY=VALUE flags as keys; a value is read as TOML reads
    it (2, 0.5, true, [1, 2]), else kept as text (correlated)."""
    import tomllib

    keys: dict[str, Any] = {}
    for option in given:
        key, equals, text = option.partition("=")
        if not equals or not key.strip():
            raise ConfigError(f"{flag}: {option!r} is not KEY=VALUE, e.g. --{flag} {'set_size=2' if flag == 'data-option' else 'prefixes=[4,16]'}")
        try:
            value = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = text.strip()
        keys[key.strip()] = value
    return keys


def _checkpoints(text: str | None) -> int | list[int] | None:
    """`--checkpoints 50` (a count) or `--checkpoints 0,10,100` (the steps)."""
    steps = _numbers("checkpoints", text, int)
    return steps[0] if steps and "," not in text else steps


def _whole_or_float(text: str) -> int | float:
    """`3` as a whole number (a whole-number setting takes it), `0.3` as a float."""
    return int(text) if text.strip().lstrip("-").isdigit() else float(text)


def _progress(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty()


def _console():
    from rich.console import Console

    return Console()


@app.command()
def train(
    out: Annotated[Path, typer.Option(help="Run directory to write (replaced only if it is a run of ours).")],
    config: Annotated[Path | None, typer.Option(help="TOML file with the same keys as these flags (or a run's config.json); flags override it.")] = None,
    model: Annotated[str | None, typer.Option(help="A registered model kind; `superposition kinds` lists them.")] = None,
    activation: Annotated[str | None, typer.Option(help=f"{_choices(Activation)}, of the output.")] = None,
    hidden_activation: Annotated[str | None, typer.Option(help=f"{_choices(Activation)}; relu with tied is the paper's privileged-basis model.")] = None,
    features: Annotated[int | None, typer.Option(help="Number of features n.")] = None,
    hidden: Annotated[int | None, typer.Option(help="Hidden dimensions m.")] = None,
    sparsity: Annotated[str | None, typer.Option(help="Comma-separated sparsities S in [0, 1), one instance each.")] = None,
    importance_decay: Annotated[float | None, typer.Option(help="Importance of feature i is R**i.")] = None,
    importance: Annotated[str | None, typer.Option(help="Explicit comma-separated importance per feature.")] = None,
    data: Annotated[str | None, typer.Option(help="The data generator (paper by default); `superposition kinds` lists them with their options.")] = None,
    data_option: Annotated[list[str] | None, typer.Option(help="KEY=VALUE: an option of the data generator, e.g. correlation=anticorrelated, set_size=2, or of a firing profile in place of --sparsity: firing=zipf, firing_max=0.4, firing_min=0.001, zipf_exponent=0.5 (repeat for more).")] = None,
    target: Annotated[str | None, typer.Option(help=f"{_choices(Target)}: reproduce x, or |x| (with --data signed).")] = None,
    loss_reduction: Annotated[str | None, typer.Option(help=f"{_choices(LossReduction)}: the loss over features (the toy paper's mean, the double-descent note's sum).")] = None,
    steps: Annotated[int | None, typer.Option()] = None,
    batch_size: Annotated[int | None, typer.Option()] = None,
    lr: Annotated[float | None, typer.Option()] = None,
    optimizer: Annotated[str | None, typer.Option(help=_choices(Optimizer))] = None,
    weight_decay: Annotated[float | None, typer.Option()] = None,
    schedule: Annotated[str | None, typer.Option(help=_choices(Schedule))] = None,
    warmup: Annotated[int | None, typer.Option(help="Linear warmup steps.")] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    device: Annotated[str | None, typer.Option(help=_choices(Device))] = None,
    engine: Annotated[str | None, typer.Option(help=f"{_choices(Engine)}: fused (numba, CPU), compiled (torch.compile, CUDA graphs) or reference (autograd).")] = None,
    warm_start: Annotated[bool | None, typer.Option("--warm-start/--no-warm-start", help="Train the sparsities in sequence, each from the previous one's weights (the seed's quirk).")] = None,
    replicates: Annotated[int | None, typer.Option(help="Train R copies of every sparsity (own init and data), side by side; with --warm-start, R chains.")] = None,
    early_stop: Annotated[float | None, typer.Option(help="Stop once no instance's loss fell by more than this fraction over 500 steps.")] = None,
    restarts: Annotated[int | None, typer.Option(help="Train K copies of every instance, keep each one's lowest-loss copy.")] = None,
    eval_batch_size: Annotated[int | None, typer.Option(help="Rows of the fixed evaluation batch.")] = None,
    dataset_size: Annotated[int | None, typer.Option(help="Train on a finite set of T examples per instance, drawn once (full batch when T <= batch size).")] = None,
    normalize: Annotated[bool | None, typer.Option("--normalize/--no-normalize", help="Scale every example to unit norm (an all-zero one stays zero).")] = None,
    checkpoints: Annotated[str | None, typer.Option(help="Keep the weights at N log-spaced steps (0 and the last included), or at the comma-separated steps given.")] = None,
    momentum: Annotated[float | None, typer.Option(help="With --optimizer sgd: its momentum.")] = None,
    figures: Annotated[bool, typer.Option(help="Also draw the run's figures (later: `superposition plot RUN`).")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Train one batched model: one instance per sparsity value."""
    from .config import normalise_keys, read_config_file, resolve

    keys: dict[str, Any] = normalise_keys(read_config_file(config)) if config else {}
    flags = {
        "model": model,
        "activation": activation,
        "hidden_activation": hidden_activation,
        "features": features,
        "hidden": hidden,
        "sparsity": _numbers("sparsity", sparsity),
        "importance_decay": importance_decay,
        "importance": _numbers("importance", importance),
        "data": data,
        **_options(data_option or []),
        "target": target,
        "loss_reduction": loss_reduction,
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "optimizer": optimizer,
        "weight_decay": weight_decay,
        "schedule": schedule,
        "warmup": warmup,
        "seed": seed,
        "device": device,
        "engine": engine,
        "warm_start": warm_start,
        "replicates": replicates,
        "early_stop": early_stop,
        "restarts": restarts,
        "eval_batch_size": eval_batch_size,
        "dataset_size": dataset_size,
        "normalize": normalize,
        "checkpoints": _checkpoints(checkpoints),
        "momentum": momentum,
    }
    given = {k: v for k, v in flags.items() if v is not None}
    # A flag replaces whichever of a pair of alternative keys the file used.
    for a, b in (("sparsity", "feature_probability"), ("importance_decay", "importance")):
        if a in given:
            keys.pop(b, None)
        if b in given:
            keys.pop(a, None)
    resolved = resolve({**keys, **given})

    from .files import atomic_dir, check_free_space
    from .runs import run_bytes, train as fit
    from .training.engines import settle
    from .training.loop import check_memory

    settled = settle(resolved)
    check_memory(settled)
    with atomic_dir(out, "run", inputs=[config] if config else ()) as staging:  # refuses a bad --out, or a second writer, before training
        check_free_space(staging, run_bytes(settled))
        if figures:  # matplotlib loads while the fused engine trains without the GIL
            threading.Thread(target=importlib.import_module, args=("superposition.plots",), daemon=True).start()
        run = fit(settled, progress=_progress(quiet))
        run.write(staging, figures)
    _print_metrics(run.config, run.metrics)
    print(f"run written to {out}")


@app.command()
def sae(
    run: Annotated[Path | None, typer.Argument(help="A run directory whose hidden activations x W are the data.")] = None,
    out: Annotated[Path | None, typer.Option(help="SAE directory to write (replaced only if it is an SAE directory of ours).")] = None,
    config: Annotated[Path | None, typer.Option(help="TOML file with the same keys as these flags; flags override it.")] = None,
    data: Annotated[str | None, typer.Option(help="run (default with RUN), dictionary (random unit directions), or the directory of a SAELens SyntheticModel.")] = None,
    features: Annotated[int | None, typer.Option(help="With --data dictionary: true features per dictionary.")] = None,
    dims: Annotated[int | None, typer.Option(help="With --data dictionary: their dimension d_in.")] = None,
    density: Annotated[float | None, typer.Option(help="With --data dictionary: each feature's probability (0.01).")] = None,
    instances: Annotated[int | None, typer.Option(help="With --data dictionary: independent dictionaries (1).")] = None,
    orthogonal: Annotated[bool | None, typer.Option("--orthogonal/--no-orthogonal", help="With --data dictionary: orthonormal directions (features <= dims).")] = None,
    orthogonalize: Annotated[int | None, typer.Option(help="With --data dictionary: spread the directions apart by this many Adam steps, as SAELens orthogonalises a dictionary (SynthSAEBench: 100).")] = None,
    generator: Annotated[str | None, typer.Option(help="With --data dictionary: its data's generator (paper; synthetic: trees, low-rank correlation, magnitudes).")] = None,
    data_option: Annotated[list[str] | None, typer.Option(help="With --data dictionary, KEY=VALUE: an option of its generator (correlation=correlated, set_size=2; roots=3, branching=3, exclusive=true) or of a firing profile in place of --density (firing=zipf, firing_max=0.4, firing_min=0.001).")] = None,
    kind: Annotated[str | None, typer.Option(help="relu, topk, jumprelu, batchtopk, matryoshka, or a registered kind.")] = None,
    kind_option: Annotated[list[str] | None, typer.Option(help="KEY=VALUE: an option of the kind, e.g. prefixes=[4,16,64] for matryoshka.")] = None,
    latents: Annotated[int | None, typer.Option(help="Latents per SAE (default 2 x features).")] = None,
    l1: Annotated[str | None, typer.Option(help="relu: L1 coefficient(s), comma-separated: one SAE per value.")] = None,
    k: Annotated[str | None, typer.Option(help="topk, batchtopk, matryoshka: k (comma-separated for several; a mean over the batch, so fractional, for batchtopk).")] = None,
    l0: Annotated[str | None, typer.Option(help="jumprelu: L0 coefficient(s).")] = None,
    setting: Annotated[str | None, typer.Option(help="The kind's setting value(s), whichever it is (a registered kind's own).")] = None,
    steps: Annotated[int | None, typer.Option()] = None,
    lr: Annotated[float | None, typer.Option()] = None,
    batch_size: Annotated[int | None, typer.Option()] = None,
    resample: Annotated[bool | None, typer.Option("--resample/--no-resample", help="Resample dead latents (Towards Monosemanticity).")] = None,
    resample_every: Annotated[int | None, typer.Option(help="Steps between checks for dead latents (a tenth of the steps).")] = None,
    resample_until: Annotated[float | None, typer.Option(help="The share of training whose checks resample (0.5).")] = None,
    resample_pool: Annotated[int | None, typer.Option(help="Fresh rows a check draws its candidates from (65,536).")] = None,
    beta1: Annotated[float | None, typer.Option(help="Adam's β1 (0.9; Rajamanoharan et al.'s JumpReLU recipe: 0).")] = None,
    sparsity_warmup: Annotated[float | None, typer.Option(help="The share of training over which the penalty ramps up from 0 (0; the JumpReLU recipe: 0.1).")] = None,
    log_threshold: Annotated[bool | None, typer.Option("--log-threshold/--no-log-threshold", help="jumprelu: train θ as log θ (off; on in the JumpReLU recipe).")] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    device: Annotated[str | None, typer.Option(help=_choices(Device))] = None,
    engine: Annotated[str | None, typer.Option(help=f"{_choices(Engine)}: fused (numba, CPU), compiled (torch.compile, CUDA graphs) or reference (autograd).")] = None,
    eval_batch_size: Annotated[int | None, typer.Option(help="Rows of the fixed evaluation batch.")] = None,
    figures: Annotated[bool, typer.Option(help="Draw the figures (directions for d_in = 2, penalty for several settings).")] = True,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Train sparse autoencoders on activations with known features; score them against those features."""
    from .config import normalise_keys, read_config_file
    from .saes.config import resolve_sae, user_keys

    if out is None:
        raise ConfigError("out: give the SAE directory to write, --out DIR")
    keys: dict[str, Any] = normalise_keys(read_config_file(config), user_keys()) if config else {}
    flags = {
        "run": str(run) if run is not None else None,
        "data": data,
        "features": features,
        "dims": dims,
        "density": density,
        "instances": instances,
        "generator": generator,
        "orthogonal": orthogonal,
        "orthogonalize": orthogonalize,
        **_options(data_option or []),
        "kind": kind,
        **_options(kind_option or [], "kind-option"),
        "latents": latents,
        "l1": _numbers("l1", l1),
        "k": _numbers("k", k, _whole_or_float),  # a whole number for topk, any for batchtopk: the kind checks it
        "l0": _numbers("l0", l0),
        "setting": _numbers("setting", setting, _whole_or_float),
        "steps": steps,
        "lr": lr,
        "batch_size": batch_size,
        "resample": resample,
        "resample_every": resample_every,
        "resample_until": resample_until,
        "resample_pool": resample_pool,
        "beta1": beta1,
        "sparsity_warmup": sparsity_warmup,
        "log_threshold": log_threshold,
        "seed": seed,
        "device": device,
        "engine": engine,
        "eval_batch_size": eval_batch_size,
    }
    resolved = resolve_sae({**keys, **{k: v for k, v in flags.items() if v is not None}})

    from .files import atomic_dir
    from .saes.runs import train_sae
    from .saes.training import check

    check(resolved)  # before anything is created: a refused job leaves nothing behind
    inputs = [path for path in (config, resolved.run) if path is not None]
    with atomic_dir(out, "sae", inputs=inputs) as staging:
        trained = train_sae(resolved, progress=_progress(quiet))
        trained.write(staging, figures)
    _print_sae(trained)
    print(f"SAEs written to {out}")


def _print_sae(trained) -> None:
    from rich.table import Table

    from .labels import describe_sae
    from .saes import SAE_KINDS

    column = SAE_KINDS[trained.config.kind].column
    table = Table(title=describe_sae(trained.config), title_justify="left")
    for name in ("instance", column, "source", "MMCS", "recovered", "dead", "L0", "var. explained", "resampled"):
        table.add_column(name, justify="right")
    for i, row in enumerate(trained.metrics["instances"]):
        table.add_row(
            str(i), f"{row[column]:.4g}", str(row["source_instance"]), f"{row['mmcs']:.3f}",
            f"{row['recovered']}/{row['represented']}", f"{row['dead_fraction']:.2f}", f"{row['l0']:.2f}",
            f"{row['variance_explained']:.3f}", str(row["resampled"]),
        )  # fmt: skip
    _console().print(table)


@app.command()
def kinds() -> None:
    """List the registered model kinds (what each computes, its engines and figures) and data
    generators (their options and defaults)."""
    from rich.table import Table

    from .data import GENERATORS
    from .models import KINDS

    table = Table()
    for column in ("kind", "model", "implies", "fused engine", "figures"):
        table.add_column(column)
    for name, kind in KINDS.items():
        implies = ", ".join(f"{k} = {v}" for k, v in kind.defaults.items())
        table.add_row(name, kind.formula, implies, "yes" if kind.fused else "no", ", ".join(kind.figures))
    _console().print(table)
    data = Table()
    for column in ("data", "options (--data-option KEY=VALUE; default)", "fused engine"):
        data.add_column(column)
    for name, generator in GENERATORS.items():
        options = "; ".join(f"{key}: {field.description} ({field.default!r})" for key, field in generator.Options.model_fields.items())
        data.add_row(name, options or "none", "yes" if generator.kernel is not None else "no")
    _console().print(data)


@app.command()
def llc(
    run: Annotated[Path, typer.Argument(help="A run directory.")],
    checkpoints: Annotated[bool, typer.Option("--checkpoints/--final", help="Estimate at every checkpoint the run kept, or at its final weights.")] = False,
    instance: Annotated[str | None, typer.Option(help="Comma-separated instances (default: all).")] = None,
    lr: Annotated[float | None, typer.Option(help="SGLD's step size ε (1e-3).")] = None,
    localization: Annotated[float | None, typer.Option(help="γ, the pull back to the trained weights (1).")] = None,
    nbeta: Annotated[float | None, typer.Option(help="nβ, the inverse temperature (n / log n of the data's rows).")] = None,
    draws: Annotated[int | None, typer.Option(help="Draws per chain (100).")] = None,
    chains: Annotated[int | None, typer.Option(help="Chains (5).")] = None,
    burnin: Annotated[int | None, typer.Option(help="Burn-in steps before the draws (0).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="SGLD's batch (1024).")] = None,
    rows: Annotated[int | None, typer.Option(help="For a run without a finite set: fresh examples to sample on (its eval_batch_size).")] = None,
    seed: Annotated[int | None, typer.Option()] = None,
) -> None:
    """The local learning coefficient of a run's models (devinterp's SGLD), written to RUN/llc.json."""
    from .runs import load_run
    from .tools.llc import LLC_FILE, llc as estimate, require_devinterp, settings

    given = {"lr": lr, "localization": localization, "nbeta": nbeta, "draws": draws, "chains": chains, "burnin": burnin, "batch_size": batch_size, "rows": rows, "seed": seed}
    given = {k: v for k, v in given.items() if v is not None}
    settings(**given)  # bad settings, or no devinterp, are refused before the run is read
    require_devinterp()
    loaded = load_run(run)
    record = estimate(loaded, checkpoints, _numbers("instance", instance, int), **given)
    rows_out = [
        {"instance": e["instance"], "step": e["step"], "L_n(w*)": e["init_loss"], "LLC": e["llc_mean"], "std over chains": e["llc_std"]}
        for e in record["estimates"]
    ]
    _print_rows(rows_out, title=f"local learning coefficient (SGLD: {record['settings']['chains']} chains x {record['settings']['draws']} draws)")
    print(f"estimates written to {run / LLC_FILE}")


export_app = typer.Typer(help="Write a run or an SAE in another tool's format.", no_args_is_help=True)
app.add_typer(export_app, name="export")


@export_app.command("saelens")
def export_saelens(
    path: Annotated[Path, typer.Argument(help="An SAE directory (written as a SAELens SAE) or a run (as a SAELens SyntheticModel).")],
    out: Annotated[Path | None, typer.Option(help="Directory to write: SAELens's SAE.load_from_disk (or SyntheticModel.load_from_disk) reads it.")] = None,
    instance: Annotated[int, typer.Option(help="Which SAE, or which of the run's instances (0).")] = 0,
) -> None:
    """An SAE as SAELens's SAE.load_from_disk loads it; a trained toy model as a SAELens synthetic model."""
    from .files import kind_of

    if out is None:
        raise ConfigError("out: give the directory to write, --out DIR")
    what = kind_of(path)
    if what == "sae":
        from .saes.runs import load_sae
        from .tools.saelens_sae import export

        architecture = export(load_sae(path), instance, out)
        print(f"SAELens SAE ({architecture}) written to {out}")
    elif what == "run":
        from .runs import load_run
        from .saes.saelens import export as export_model

        loaded = load_run(path)
        for note in export_model(loaded.config, loaded.params["W"], instance, out):
            print(f"note: {note}")
        print(f"SAELens synthetic model written to {out}")
    else:
        raise ConfigError(f"path: {path} is not a run or an SAE directory of ours; give one written by train or sae")


@export_app.command("spd")
def export_spd(
    run: Annotated[Path, typer.Argument(help="A run directory of a tied model.")],
    out: Annotated[Path | None, typer.Option(help="Directory to write: tms.pth and tms_train_config.yaml, SPD's TMS target.")] = None,
    instance: Annotated[int, typer.Option(help="Which of the run's instances (0).")] = 0,
    hidden_identity: Annotated[bool, typer.Option(help="Write the frozen identity layer of SPD's +ID targets.")] = False,
) -> None:
    """A tied toy model as SPD's TMS decomposition target."""
    from .runs import load_run
    from .tools.spd import export

    if out is None:
        raise ConfigError("out: give the directory to write, --out DIR")
    for note in export(load_run(run), instance, out, hidden_identity):
        print(f"note: {note}")
    print(f"SPD TMS target written to {out / 'tms.pth'}")


@app.command()
def metrics(
    run: Annotated[Path, typer.Argument(help="A run directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print metrics.json instead of a table.")] = False,
    checkpoint: Annotated[int | None, typer.Option(help="The run as it stood after this many steps (one of its checkpoints).")] = None,
) -> None:
    """Print the metrics of a run, one row per instance."""
    from .runs import load_run

    loaded = load_run(run)
    if checkpoint is not None:
        loaded = loaded.checkpoint(checkpoint)
    if as_json:
        print(json.dumps(loaded.metrics, indent=2))
    else:
        _print_metrics(loaded.config, loaded.metrics)


@app.command()
def plot(
    run: Annotated[Path, typer.Argument(help="A run directory.")],
    out: Annotated[Path | None, typer.Option(help="Directory for the figures (default: the run).")] = None,
) -> None:
    """Draw a run's figures: W Wᵀ with bias, norm/superposition bars, weights."""
    from .plots import write_figures
    from .runs import load_run

    loaded = load_run(run)
    target = out or run
    if target.exists() and not target.is_dir():
        raise ConfigError(f"out: {target} exists and is not a directory; give a directory for the figures")
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"out: cannot create {target} ({error.strerror})") from None
    for path in write_figures(loaded.config, loaded.params, target):
        print(path)


@app.command()
def reproduce(
    name: Annotated[str, typer.Argument(help=f"A preset ({', '.join(PRESETS)}) or all.")],
    out: Annotated[Path, typer.Option(help="Output directory.")],
    quick: Annotated[bool, typer.Option(help="A small, fast version (for tests).")] = False,
    seeds: Annotated[int | None, typer.Option(help="Train K copies per setting, keep the lowest loss (default: the preset's).")] = None,
    data: Annotated[str | None, typer.Option(help="A data generator (default: the preset's); `superposition kinds` lists them.")] = None,
    warm_start: Annotated[bool, typer.Option(help="Train sparsities in sequence from the previous weights.")] = False,
    steps: Annotated[int | None, typer.Option(help="Override the preset's number of steps.")] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    device: Annotated[str | None, typer.Option(help=_choices(Device))] = None,
    engine: Annotated[str | None, typer.Option(help=_choices(Engine))] = None,
    report: Annotated[Path | None, typer.Option(help="With all: where to write the claims report (default OUT/replication.md).")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Run one of the paper's or the seed's experiments end to end, and check its claims."""
    from . import experiments
    from .files import check_output_dir

    if name != "all":
        experiments.module(name)
    elif report is not None:
        experiments.check_report_path(report)
    if seeds is not None and seeds < 1:
        raise ConfigError(f"seeds: must be at least 1, got {seeds}")
    overrides = {"data": data, "steps": steps, "seed": seed, "device": device, "engine": engine}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if warm_start:
        overrides["warm_start"] = True
    check_output_dir(out, "reproduction")
    options = experiments.Options(quick=quick, restarts=seeds, overrides=overrides, progress=_progress(quiet))
    for preset in experiments.IN_ALL if name == "all" else (name,):
        experiments.check(preset, options)  # a bad override fails here, before any preset trains
    if name == "all":
        summaries = experiments.reproduce_all(out, options, report)
    else:
        summaries = [experiments.reproduce(name, out, options)]
    for summary in summaries:
        if summary["table"]:
            _print_rows(summary["table"])
        _print_claims(summary)
    for png in sorted(out.rglob("*.png")) if name != "all" else []:
        if png.parent == out:
            print(f"figure: {png}")


@app.command("sweep")
def sweep_command(
    spec: Annotated[Path, typer.Argument(help="Sweep spec (TOML): [base] config keys (or [sae] for SAEs) and [axes].")],
    out: Annotated[Path, typer.Option(help="Sweep directory; running again resumes it.")],
    executor: Annotated[str, typer.Option(help="local (in this process), processes, or dask.")] = "local",
    workers: Annotated[int, typer.Option(help="Worker processes for --executor processes.")] = 2,
    scheduler: Annotated[str | None, typer.Option(help="Dask scheduler address for --executor dask (OUT must be shared storage).")] = None,
    force: Annotated[bool, typer.Option(help="Continue a directory started with a different spec.")] = False,
    retry_failed: Annotated[bool, typer.Option(help="Train again the shards that failed (NaN or inf loss).")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Train a grid of models (or SAEs) in resumable shards; results in OUT/results.csv."""
    from .sweeps.sweep import sweep

    report = sweep(spec, out, executor, workers, force, retry_failed, _progress(quiet), scheduler)
    print(
        f"{report['shards']} shards: {report['trained']} trained, {report['skipped']} already done, "
        f"{len(report['failed'])} failed{' (' + ', '.join(report['failed']) + '; rerun with --retry-failed)' if report['failed'] else ''}"
    )
    print(f"results: {out / 'results.csv'}")


@app.command("report")
def report_command(
    directory: Annotated[Path, typer.Argument(help="A run, a sweep, or a reproduce output.")],
    x: Annotated[str | None, typer.Option(help="Sweep axis across the phase diagram.")] = None,
    y: Annotated[str | None, typer.Option(help="Sweep axis down the phase diagram.")] = None,
) -> None:
    """Write DIR/report.html: config, metrics, every figure and the claims, in one offline file."""
    from .report import write

    print(write(directory, x, y))


def _print_metrics(config, metrics: dict[str, Any]) -> None:
    from .labels import describe, metric_legend, metric_rows

    _print_rows(metric_rows(config, metrics), title=describe(config))
    _console().print(metric_legend(config), style="dim")


def _print_rows(rows: list[dict[str, Any]], title: str | None = None) -> None:
    """Rows as a table that reads at 80 columns: no vertical rules, three significant digits."""
    from rich import box
    from rich.table import Table

    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in rows[0]:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(*(f"{v:.3g}" if isinstance(v, float) else str(v) for v in row.values()))
    _console().print(table)


def _print_claims(summary: dict[str, Any]) -> None:
    """A block per claim, its prose in one wide column: a table of four prose columns wraps
    into single words at 80 columns."""
    from rich.table import Table
    from rich.text import Text

    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True, justify="right")
    grid.add_column()
    for claim in summary["claims"]:
        verdict = Text("holds", "green") if claim["holds"] else Text("does not hold", "bold red")
        grid.add_row(verdict, Text(claim["claim"], "bold"))
        grid.add_row("paper", Text(claim["paper"]))
        grid.add_row("ours", Text(claim["ours"]))
        grid.add_row("", "")
    console = _console()
    console.print(Text(f"{summary['preset']}: claims", "bold"))
    console.print(grid)
    if summary.get("legend"):
        console.print(Text(summary["legend"], "dim"))


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning every user error into one line and exit 2."""
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="superposition", standalone_mode=False)
    except typer.TyperException as error:  # typer's (vendored click) usage errors
        if type(error).__name__ == "NoArgsIsHelpError":  # a bare `superposition`: the help, as it is
            print(error.ctx.get_help())
            sys.exit(0)
        context = getattr(error, "ctx", None)
        where = f" (see `{context.command_path} --help`)" if context else ""
        _fail(f"{error.format_message()}{where}")
    except ConfigError as error:
        _fail(str(error))
    except (typer.Abort, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except OSError as error:  # the disk filled up, a file vanished under us, ...
        _fail(f"{error.strerror or error}: {error.filename or ''}", status=1)
    except Exception as error:
        if type(error).__name__ == "Diverged":
            _fail(f"training diverged: {error}; nothing was written", status=1)
        if os.environ.get("SUPERPOSITION_DEBUG"):
            raise
        # not a user error: one line all the same, and the way to the traceback
        _fail(f"{type(error).__name__}: {error} (a bug; SUPERPOSITION_DEBUG=1 shows the traceback)", status=1)
    sys.exit(code if isinstance(code, int) else 0)


def script() -> None:
    """The console script (and `python -m superposition`): `main`, then a quick exit.

    Once the command is done and its files are closed, the interpreter would still tear
    down torch, numba and matplotlib module by module (~0.7 s); the atexit handlers are
    all that teardown owes anyone, so they run, output is flushed, and the process ends.
    """
    try:
        main()
        code = 0
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _fail(message: str, status: int = 2) -> None:
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    sys.exit(status)
