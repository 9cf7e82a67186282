"""The config of an SAE job, validated once at the edge (flags, TOML file, saved SAE).

User keys (the same on the command line, in a TOML file and in `sp.train_sae`):

  run = "runs/x"            the source: a trained toy model's directory (or, in Python, a Run)
  data = "path/to/model"    or a SAELens SyntheticModel's directory (saes/saelens.py)
  data = "dictionary"       or a synthetic dictionary: features, dims, density (one value, one
                            per feature, or a firing profile: firing, firing_max, firing_min,
                            zipf_exponent),
                            instances, and its data: `generator` (paper unless given) with
                            that generator's options (correlation, set_size; roots, …);
                            orthogonal = true for orthonormal directions
  kind = "relu"             relu | topk | jumprelu, or a registered kind (saes.SAE_KINDS)
  latents, l1 | k | l0, steps, lr, batch_size, seed, device, engine, eval_batch_size
  resample, resample_every, resample_until, resample_pool   dead latents (saes/training.py)
  beta1, sparsity_warmup, log_threshold   the recipe: Adam's β1, the share of training over
                            which the penalty ramps up from 0, θ trained as log θ (jumprelu;
                            Rajamanoharan et al.'s recipe is 0, 0.1 and on); a kind's own
                            recipe (`SAEKind.recipe`, jumprelu's lr 3e-3) where none is given

The kind's setting, under its own key (`l1` for relu, `k` for topk, `l0` for jumprelu,
a registered kind's own; `setting` for whichever the kind's is), takes one value or a
list: each value trains its own SAE on every instance of the source, all batched as one
job (SAE instance s * source_instances + i: setting s, source instance i). The config
holds them as `settings`.

Defaults are derived from the source, so that `superposition sae RUN` recovers a toy
model's features without tuning where it can (d: the activations' dimension, n: the
true features, r²: their mean squared norm over the represented ones, 1 for a dictionary):

  latents  2 n                    room for every feature and some spare
  l1       0.3 r² / d             encoding a present feature of value v ~U[0, 1] saves about
                                  r² v² / d of mean squared error and costs l1 v, so l1 is on
                                  the scale r² / d. Measured (5,000 steps): 0.1 r²/d left
                                  4 of 5 pentagon features on 3 of 4 models (too weak to keep
                                  two latents from sharing a feature), 0.5 r²/d cut variance
                                  explained to 0.69-0.83; 0.3 r²/d recovered 5/5 on 4
                                  pentagons and 55-60 of 64 in a 64 → 16 dictionary
  k        the expected number of active features per row, rounded, at least 1
  l0       0.05 r² / d            the same balance for a count instead of a sum
  steps 5,000, lr 1e-3 (jumprelu 3e-3), batch 1,024, resampling on: a check every tenth of training
  (resample_every), resampling until half of it (resample_until), candidates from 65,536
  fresh rows (resample_pool)
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..analysis.metrics import REPRESENTED_NORM
from ..config import FIRING_KEYS, MAX_SIZE, MIN_PROBABILITY, ConfigError, Device, Engine, _one_line, finite_number, firing_profile, normalise_keys, plain
from ..data import GENERATORS, option_keys
from ..files import CONFIG, read_marker, to_json
from ..registry import declared_keys
from ..runs import load_run, package_version
from . import SAE_KINDS, SAEKind, saelens, setting_columns
from .sources import dictionary_data

if TYPE_CHECKING:
    from ..runs import Run

Source = Literal["run", "dictionary", "saelens"]


class SAEConfig(BaseModel):
    """A fully resolved SAE job: the source, the kind, and one SAE per (setting, source instance)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    kind: str = "relu"
    source: Source
    run: str | None = None  # the source run's (or SAELens model's) directory (absolute, or relative to the SAE's own)
    run_config_sha256: str | None = None  # of the source run's config.json (a SAELens model's weights)
    features: int = Field(gt=0, le=MAX_SIZE)  # true features per source instance
    dims: int = Field(gt=0, le=MAX_SIZE)  # d_in
    # dictionary only, where no firing profile is given: every feature's probability, or one per feature
    density: float | list[float] | None = None
    firing: dict[str, Any] = Field(default_factory=dict)  # dictionary only: a firing profile's keys (data/firing.py)
    generator: str = "paper"  # dictionary only: the data's generator
    orthogonal: bool = False  # dictionary only: orthonormal directions (features <= dims)
    # dictionary only: SAELens's orthogonalisation of an overcomplete dictionary, this many Adam steps
    orthogonalize: int = Field(0, ge=0, le=100_000)
    data_options: dict[str, Any] = Field(default_factory=dict)  # dictionary only: the generator's options
    source_instances: int = Field(1, gt=0, le=MAX_SIZE)
    latents: int = Field(gt=0, le=MAX_SIZE)
    kind_options: dict[str, Any] = Field(default_factory=dict)  # the kind's own keys (its Options), defaults filled in
    settings: list[int | float]  # the kind's setting, one value per group of source instances
    steps: int = Field(5000, gt=0, le=MAX_SIZE)
    lr: float = Field(1e-3, gt=0)
    batch_size: int = Field(1024, gt=0, le=MAX_SIZE)
    resample: bool = True
    resample_every: int = Field(gt=0, le=MAX_SIZE)  # steps between checks for dead latents; given: steps // 10
    resample_until: float = Field(0.5, gt=0, le=1)  # the share of training whose checks resample
    resample_pool: int = Field(65_536, gt=0, le=MAX_SIZE)  # fresh rows a check draws candidates from
    # the recipe; these defaults are plain Adam's and a saved SAE's from before they were keys
    beta1: float = Field(0.9, ge=0, lt=1)  # Adam's (β2 0.999, ε 1e-8 as everywhere)
    sparsity_warmup: float = Field(0.0, ge=0, le=1)  # the share of steps over which the penalty ramps from 0
    log_threshold: bool = False  # θ trained as log θ (a kind with a threshold)
    seed: int = Field(0, ge=0, lt=2**63)
    device: Device = "auto"
    engine: Engine = "auto"  # fused (compiled, CPU) or reference (autograd, any device)
    eval_batch_size: int = Field(10_000, gt=0, le=MAX_SIZE)

    @model_validator(mode="before")
    @classmethod
    def _every_tenth(cls, keys: Any) -> Any:
        """resample_every where none is given: a tenth of the steps (its value before it was a key)."""
        if isinstance(keys, dict) and keys.get("resample_every") is None:
            steps = keys.get("steps", 5000)
            keys = {**keys, "resample_every": max(1, steps // 10) if isinstance(steps, int) and steps > 0 else 1}
        return keys

    @model_validator(mode="after")
    def _check(self) -> SAEConfig:

        if self.kind not in SAE_KINDS:
            raise ValueError(f"kind: unknown SAE kind {self.kind!r}; kinds: {', '.join(SAE_KINDS)}")
        kind = SAE_KINDS[self.kind]
        if not self.settings:
            raise ValueError(f"{kind.setting}: the {self.kind} SAE needs at least one value")
        for v in self.settings:
            if kind.whole and not isinstance(v, int):
                raise ValueError(f"{kind.setting}: expected whole numbers, got {v!r}")
            if problem := kind.setting_problem(v, self.latents):
                raise ValueError(f"{kind.setting}: {v} {problem}")
        if self.sparsity_warmup > 0 and not kind.penalty:
            raise ValueError(f"sparsity_warmup: the {self.kind} SAE's {kind.setting} is not a penalty to warm up; drop it")
        if self.log_threshold and not kind.trains_threshold:
            raise ValueError(f"log_threshold: the {self.kind} SAE has no trained threshold; drop it")
        if kind.validate(self.kind_options, self.latents) != self.kind_options:
            raise ValueError(f"kind_options: give every option of the {self.kind} SAE (resolve_sae fills in defaults)")
        if (self.source == "dictionary") != (self.density is not None or bool(self.firing)):
            raise ValueError("density: give it (or a firing profile) for --data dictionary, and only there")
        if self.orthogonal and self.features > self.dims:
            raise ValueError(f"orthogonal: {self.features} features cannot be orthogonal in {self.dims} dims; give dims >= features or drop it")
        if self.orthogonal and self.orthogonalize:
            raise ValueError("orthogonalize: the directions are orthonormal already (orthogonal); give one of the two")
        if isinstance(self.density, list) and len(self.density) != self.features:
            raise ValueError(f"density: give one value, or one per feature ({self.features}), not {len(self.density)}")
        if self.density is not None and self.firing:
            raise ValueError("density: a firing profile gives every feature's probability; give density or firing, not both")
        if self.generator not in GENERATORS:
            raise ValueError(f"generator: unknown generator {self.generator!r}; registered: {', '.join(GENERATORS)}")
        if (self.data_options or self.firing or self.generator != "paper" or self.orthogonal or self.orthogonalize) and self.source != "dictionary":
            raise ValueError("data_options: a run source's data is the run's own; options belong to --data dictionary")
        return self

    def __init__(self, **keys: Any) -> None:
        try:
            super().__init__(**keys)
        except ValidationError as error:
            raise ConfigError(_one_line(error)) from None

    @property
    def instances(self) -> int:
        return len(self.settings) * self.source_instances

    @property
    def sae_kind(self) -> SAEKind:
        """The kind, with this config's options."""
        return SAE_KINDS[self.kind].bound(self.kind_options)


USER_KEYS = set(SAEConfig.model_fields) - {"source", "run_config_sha256", "source_instances", "settings", "data_options", "firing"} | {
    "data", "instances", "setting", *FIRING_KEYS
}  # fmt: skip


def dictionary_options() -> set[str]:
    """A dictionary's data options, given as keys of their own: every registered generator's."""
    return set(option_keys())


def kind_options() -> dict[str, list[str]]:
    """Every registered kind's own keys, with the kinds that declare them."""
    return declared_keys(SAE_KINDS)


def user_keys() -> set[str]:
    """Every key an SAE job may be given: USER_KEYS, the dictionary's data options and every
    registered kind's setting and options."""
    return USER_KEYS | dictionary_options() | set(setting_columns()) | set(kind_options())


RUN_ONLY = {"run"}
DICTIONARY_ONLY = {"features", "dims", "density", "instances", "generator", "orthogonal", "orthogonalize", *FIRING_KEYS}


def resolve_sae(raw: dict[str, Any], run: Run | None = None) -> SAEConfig:
    """User keys (and, for a run source, the Run itself when it is not on disk) as a SAEConfig."""
    if not isinstance(raw, dict):
        raise ConfigError(f"config: expected a table of keys, got {type(raw).__name__}")
    keys = normalise_keys(plain(raw), user_keys())
    data = keys.pop("data", "run" if (run is not None or "run" in keys) else None)
    model = None
    if saelens.is_model(data):
        if keys.pop("run", None) is not None or run is not None:
            raise ConfigError("run: give a source run or --data DIR of a SAELens model, not both")
        model, data = Path(data).resolve(), "saelens"
    if data not in ("run", "dictionary", "saelens"):
        raise ConfigError("data: give a source run (RUN), --data dictionary with --features and --dims, or --data DIR of a SAELens synthetic model")
    for key in (DICTIONARY_ONLY | dictionary_options()) if data != "dictionary" else RUN_ONLY:
        if key in keys:
            raise ConfigError(f"{key}: belongs to --data {'dictionary' if data != 'dictionary' else 'run'}, not to a {data} source")

    kind = keys.get("kind", "relu")
    if not isinstance(kind, str) or kind not in SAE_KINDS:
        raise ConfigError(f"kind: unknown SAE kind {kind!r}; kinds: {', '.join(SAE_KINDS)}")
    if data == "saelens":
        read = saelens.read(model)
        source = {"source": "saelens", "run": str(model), "run_config_sha256": saelens.weights_sha256(model),
                  "features": read.data.features, "dims": read.data.hidden}  # fmt: skip
        r2 = float((read.features.norm(dim=-1) ** 2).mean())
        active = sum(read.data.feature_probability[0])
    elif data == "run":
        run = _source_run(keys.pop("run", None), run)
        source = {
            "source": "run",
            "run": None if run.path is None else str(Path(run.path).resolve()),
            "run_config_sha256": config_sha256(run),
            "features": run.config.features,
            "dims": run.config.hidden,
            "source_instances": run.config.instances,
        }
        W = run.params["W"]
        kept = W.norm(dim=-1) > REPRESENTED_NORM
        r2 = float((W.norm(dim=-1)[kept] ** 2).mean()) if bool(kept.any()) else 1.0
        active = sum(map(sum, run.config.feature_probability)) / run.config.instances
    else:
        missing = [key for key in ("features", "dims") if key not in keys]
        if missing:
            raise ConfigError(f"{missing[0]}: --data dictionary needs --features N and --dims D")
        firing = {key: keys.pop(key) for key in FIRING_KEYS if key in keys}
        density = keys.get("density") if firing else keys.setdefault("density", 0.01)
        if isinstance(density, (list, tuple)):
            keys["density"] = density = [float(v) if finite_number(v) else v for v in density]
        for value in density if isinstance(density, list) and density else [density] if density is not None else []:
            if not finite_number(value) or not MIN_PROBABILITY <= value <= 1:
                raise ConfigError(
                    f"density: {value!r} is not a feature's probability; give a finite number from 2^-24 "
                    f"({MIN_PROBABILITY:.3g}, the rarest the data stream draws) to 1, or one per feature"
                )
        instances = keys.pop("instances", 1)
        if isinstance(instances, bool) or not isinstance(instances, int) or not 0 < instances <= MAX_SIZE:
            raise ConfigError(f"instances: must be a whole number from 1 to {MAX_SIZE}, got {instances!r}")
        options = {key: keys.pop(key) for key in dictionary_options() if key in keys}
        source = {"source": "dictionary", "source_instances": instances, "data_options": options}
        r2 = 1.0
        features = keys["features"]
        sized = isinstance(features, int) and 0 < features <= MAX_SIZE
        if firing and sized:
            source["firing"] = firing
            active = sum(firing_profile(firing, features))
        else:
            active = 1.0 if not sized or density is None else sum(density) if isinstance(density, list) else density * features
    keys = {**source, **SAE_KINDS[kind].recipe, **keys}
    chosen = SAE_KINDS[kind]
    own = {key: keys.pop(key) for key in kind_options() if key in keys}
    for key in own:
        if kind not in kind_options()[key]:
            raise ConfigError(f"{key}: an option of the {' and '.join(kind_options()[key])} SAE, not of {kind}; drop it or set kind")
    given = [key for key in keys if key in setting_columns() or key == "setting"]
    for key in given:
        if key not in (chosen.setting, "setting"):
            raise ConfigError(f"{key}: the {kind} SAE takes --{chosen.setting}, not --{key}")
    if len(given) > 1:
        raise ConfigError(f"setting: give the {kind} SAE's values as {chosen.setting} or as setting, not both")
    if given:
        keys["settings"] = _as_list(chosen.setting, keys.pop(given[0]), chosen.whole)
    d = keys.get("dims")
    if isinstance(d, int) and d > 0:
        features = keys.get("features")
        if "latents" not in keys and isinstance(features, int) and 0 < features <= MAX_SIZE < 2 * features:
            raise ConfigError(f"features: {features} would make the default latents, 2 x features, more than {MAX_SIZE}; give --latents")
        keys.setdefault("latents", 2 * features if isinstance(features, int) else 1)
        default = chosen.default_setting(r2, d, active)
        if "settings" not in keys and default is not None:
            keys["settings"] = [default]
    latents = keys.get("latents")
    if isinstance(latents, int) and not isinstance(latents, bool) and 0 < latents <= MAX_SIZE:
        try:
            keys["kind_options"] = chosen.validate(own, latents)
        except ValueError as error:
            raise ConfigError(str(error)) from None
    if "settings" not in keys:
        raise ConfigError(f"{chosen.setting}: the {kind} SAE needs at least one value (--{chosen.setting})")
    if data == "dictionary":
        # filled in; given ones checked against the dictionary's shape as the data's own config does it
        options, generator = keys["data_options"], keys.get("generator", "paper")
        if generator not in GENERATORS:
            raise ConfigError(f"generator: unknown generator {generator!r}; registered: {', '.join(GENERATORS)}")
        keys["data_options"] = GENERATORS[generator].Options().model_dump() if not options else (
            dictionary_data(instances, keys["features"], keys["dims"], keys.get("density"), options, generator, keys.get("firing")).data_options
            if isinstance(keys.get("dims"), int) and isinstance(keys.get("features"), int) else options
        )
    return SAEConfig(**keys)


def _source_run(path: Any, run: Run | None) -> Run:
    if run is not None:
        return run

    if not isinstance(path, (str, Path)):
        raise ConfigError(f"run: expected a run directory, got {path!r}")
    return load_run(Path(path))


def config_sha256(run: Run) -> str:
    """SHA-256 of the run's config.json, as the run directory seals it (or would)."""

    if run.path is not None and (marker := read_marker(Path(run.path))) is not None:
        return marker["sha256"][CONFIG]
    record = {**run.config.model_dump(), "package_version": package_version()}
    return hashlib.sha256(to_json(record).encode()).hexdigest()


def _as_list(key: str, value: Any, whole: bool) -> list[Any]:
    values = value if isinstance(value, list) else [value]
    if not values:
        raise ConfigError(f"{key}: give at least one value")
    for v in values:
        ok = isinstance(v, int) and not isinstance(v, bool) if whole else finite_number(v)
        if not ok:
            raise ConfigError(f"{key}: expected {'whole numbers' if whole else 'finite numbers'}, got {v!r}")
    return [v if whole else float(v) for v in values]
