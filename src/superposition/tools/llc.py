"""The local learning coefficient (LLC) of a run's models, estimated with devinterp's SGLD.

    λ̂ = nβ (E_w[L_n(w)] − L_n(w*))

over SGLD draws w from the tempered posterior localised at the trained weights w*
(Lau et al. 2023; Chen et al. 2023 for the toy model of superposition). devinterp
(`pip install 'superposition[llc]'`, its 1.x API: a model and a DataLoader) does the
sampling; this module hands it each instance as a plain module with the run's own loss
(`Run.plain_module`) and the run's data (`Run.loader`: a finite-data run's training set,
otherwise the evaluation batch), at the final weights or at every checkpoint, and writes
what it returns into the run's directory (`llc.json`: not sealed, like the figures, since
a run is complete without it).
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import ConfigError
from ..files import to_json, write_atomic
from ..runs import Run

LLC_FILE = "llc.json"


class Settings(BaseModel):
    """SGLD's settings (devinterp's names), checked once. The defaults are devinterp's TMS
    example's (localization 1, 5 chains of 100 draws) with lr 1e-3 from its sweep and Chen
    et al.'s nβ = n / log n; see `reproduce llc` for how they behave on k-gons."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    lr: float = Field(1e-3, gt=0, description="SGLD's step size ε")
    localization: float = Field(1.0, ge=0, description="γ: the pull back to the trained weights")
    nbeta: float | None = Field(None, gt=0, description="nβ, the inverse temperature; default n / log n of the loader's rows")
    draws: int = Field(100, gt=0, le=10**6)
    chains: int = Field(5, gt=0, le=10**4)
    burnin: int = Field(0, ge=0, le=10**6)
    batch_size: int = Field(1024, gt=0, le=2**31)
    rows: int | None = Field(None, gt=1, le=2**31, description="fresh examples for a run without a finite set (its eval_batch_size)")
    seed: int = Field(0, ge=0, lt=2**32)


def settings(**given: Any) -> Settings:
    try:
        return Settings(**given)
    except ValidationError as error:
        first = error.errors()[0]
        raise ConfigError(f"{first['loc'][0] if first['loc'] else 'llc'}: {first['msg']} (got {first.get('input')!r})") from None


def require_devinterp() -> None:
    """Refuse, before any work, where devinterp (1.x) is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        major = int(version("devinterp").split(".")[0])
    except PackageNotFoundError:
        major = None
    if major != 1:
        found = "is not installed" if major is None else f"is {version('devinterp')}, whose API samples language models only"
        raise ConfigError(f"llc: the learning coefficient needs devinterp 1.x, which {found}; pip install 'superposition[llc]'")


def estimate(run: Run, setting: Settings) -> dict[str, Any]:
    """devinterp's estimate for a run of one instance (its final weights, or a checkpoint's)."""
    from devinterp.optim.sgld import SGLD
    from devinterp.slt.sampler import estimate_learning_coeff_with_summary

    loader = run.loader(setting.batch_size, setting.rows, seed=setting.seed)
    rows = len(loader.dataset)
    if setting.nbeta is None and rows < 2:
        raise ConfigError("nbeta: n / log n needs at least 2 examples; give nbeta, or a run with more data")
    nbeta = setting.nbeta or rows / math.log(rows)
    with warnings.catch_warnings():  # devinterp warns of its own deprecations and of cycling a short loader
        warnings.simplefilter("ignore")
        result = estimate_learning_coeff_with_summary(
            run.plain_module(), loader, evaluate=_evaluate, sampling_method=SGLD,
            optimizer_kwargs=dict(lr=setting.lr, localization=setting.localization, nbeta=nbeta),
            num_draws=setting.draws, num_chains=setting.chains, num_burnin_steps=setting.burnin,
            cores=1, seed=setting.seed, device="cpu", verbose=False,
        )  # fmt: skip
    chains = [float(result[f"llc-chain/{c}"]) for c in range(setting.chains)]
    trace = np.asarray(result["loss/trace"], dtype=float)  # (chains, draws)
    return {
        "llc_mean": float(result["llc/mean"]),
        "llc_std": float(result["llc/std"]),
        "llc_per_chain": chains,
        "init_loss": float(trace.mean() - result["llc/mean"] / nbeta),
        "nbeta": nbeta,
        "rows": rows,
        "loss_trace": trace.tolist(),
    }


def _evaluate(model, batch):
    x, target = batch
    return model.loss(model(x), target)


def llc(run: Run, checkpoints: bool = False, instances: list[int] | None = None, **given: Any) -> dict[str, Any]:
    """The LLC of every instance (or those listed) of a run, at its final weights or, with
    `checkpoints`, at every step it kept. Returns {"settings", "estimates"}: one estimate per
    (instance, step), its mean and standard deviation over chains, each chain's value and
    loss trace; written to the run's directory as llc.json where the run has one."""
    setting = settings(**given)
    require_devinterp()
    chosen = list(range(len(run))) if instances is None else instances
    if bad := [i for i in chosen if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(run)]:
        raise ConfigError(f"instance: {bad[0]!r} is not an instance of this run (0 … {len(run) - 1})")
    steps = run.checkpoint_steps if checkpoints else [None]
    if not steps:
        raise ConfigError("checkpoints: this run kept no checkpoints; train it with checkpoints = N, or estimate its final weights")
    estimates = []
    for step in steps:
        at = run if step is None else run.checkpoint(step)
        for i in chosen:
            one = at[i]
            estimates.append({"instance": i, "step": len(run.losses) if step is None else step, "loss": one.metrics["instances"][0]["loss"], **estimate(one, setting)})
    record = {"settings": setting.model_dump(), "estimates": estimates}
    if run.path is not None:
        write(Path(run.path), record)
    return record


def write(directory: Path, record: dict[str, Any]) -> Path:
    """llc.json beside a run's files, written whole or not at all."""
    write_atomic(directory / LLC_FILE, to_json(record))
    return directory / LLC_FILE


def read(directory: Path) -> dict[str, Any]:
    try:
        return json.loads((Path(directory) / LLC_FILE).read_text())
    except (OSError, ValueError) as error:
        raise ConfigError(f"llc: {directory}/{LLC_FILE} cannot be read ({error}); run `superposition llc` on it") from None
