"""One config object, validated once at the edge (CLI flags, TOML file, saved run).

Users speak in convenient keys (`sparsity = [0, 0.9]`, `importance_decay = 0.7`);
`Config(**keys)` (or `resolve(dict)`) turns those into the config that is trained and
saved, where `feature_probability` and `importance` are full [instance][feature]
lists. Everything after it trusts the config.
"""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from .errors import ConfigError
from .limits import MAX_SIZE, MAX_VALUES, MIN_PROBABILITY

Activation = Literal["relu", "linear"]
Target = Literal["identity", "abs"]
LossReduction = Literal["mean", "sum"]
Optimizer = Literal["adam", "adamw", "sgd"]
Schedule = Literal["constant", "linear", "cosine"]
Device = Literal["auto", "cpu", "cuda"]
Engine = Literal["auto", "fused", "compiled", "reference"]

# The seed's sweep: also the default instances of `superposition train`.
SEED_SPARSITIES = (0.0, 0.7, 0.9, 0.99, 0.999)


def generators() -> Any:
    """The data package, whose GENERATORS a config's `data` names. Loaded when a config is
    first validated, not with this module: the command line's --help reads this module and
    must not wait for torch."""
    from . import data

    return data


def plain(value: Any, depth: int = 0) -> Any:
    """A notebook's values as the plain Python a TOML file gives: numpy arrays and scalars,
    torch tensors, tuples and ranges become lists, ints, floats and bools. Below the depth
    of [instance][feature] lists values are left as they are, for validation to refuse."""
    if depth > 3:
        return value
    if isinstance(value, dict):
        return {k: plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list) and all(type(v) in (int, float, str) for v in value):
        return value  # the common case, and the long lists of feature_probability
    if isinstance(value, (range, tuple)) and len(value) > MAX_VALUES:
        raise ConfigError(f"config: a sequence of {len(value):,} values is more than {MAX_VALUES:,}; split the work into several runs")
    if isinstance(value, (list, tuple, range)):
        return [plain(v, depth + 1) for v in value]
    if type(value).__module__.split(".")[0] in ("numpy", "torch") and callable(getattr(value, "tolist", None)):
        size = math.prod(getattr(value, "shape", ()))
        if size > MAX_VALUES:
            raise ConfigError(f"config: an array of {size:,} values is more than {MAX_VALUES:,}; split the work into several runs")
        return plain(value.tolist(), depth)
    return value


def finite_number(value: Any) -> bool:
    """An int or float (not a bool) that is finite."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer of hundreds of digits
        return False


class Config(BaseModel):
    """A fully resolved training config: one instance per row of `feature_probability`."""

    # strict: `steps = true` or `warm_start = "yes"` is an error, not 1 or True
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    model: str = "tied"  # a kind registered in models.KINDS
    activation: Activation = "relu"  # of the output
    hidden_activation: Activation = "linear"
    features: int = Field(20, gt=0, le=MAX_SIZE)
    hidden: int = Field(5, gt=0, le=MAX_SIZE)
    feature_probability: list[list[float]]  # [instance][feature], each in (0, 1]
    importance: list[list[float]]  # [instance][feature], each >= 0
    data: str = "paper"  # a generator registered in data.GENERATORS
    # the generator's own keys (its Options), every default filled in
    data_options: dict[str, Any] = Field(default_factory=dict, validate_default=True)
    target: Target = "identity"  # what x' should reproduce: x itself, or |x| (computation)
    # over features (examples are always averaged): the mean, as the toy-model paper and
    # ARENA; or the sum, as the double-descent note. With Adam the sum is the mean with eps / n.
    loss_reduction: LossReduction = "mean"
    optimizer: Optimizer = "adamw"
    momentum: float = Field(0.0, ge=0, lt=1)  # SGD's (Adam's betas are fixed: steps.BETAS)
    weight_decay: float = Field(0.01, ge=0)
    lr: float = Field(1e-3, gt=0)
    schedule: Schedule = "constant"
    warmup: int = Field(0, ge=0, le=MAX_SIZE)
    steps: int = Field(10_000, gt=0, le=MAX_SIZE)
    batch_size: int = Field(1024, gt=0, le=MAX_SIZE)
    seed: int = Field(0, ge=0, lt=2**63)  # every engine hashes it as a 64-bit integer
    device: Device = "auto"
    engine: Engine = "auto"
    warm_start: bool = False
    # the instances come in consecutive groups of this many copies of one setting (each
    # copy its own init and data); warm start trains the groups in order, each copy from
    # its predecessor in the previous group
    replicates: int = Field(1, gt=0, le=MAX_SIZE)
    early_stop: float | None = Field(None, gt=0)
    # train this many independent copies of every instance and keep the one with the
    # lowest training loss over its last steps (the paper's "best of several seeds")
    restarts: int = Field(1, gt=0, le=MAX_SIZE)
    eval_batch_size: int = Field(10_000, gt=0, le=MAX_SIZE)
    # a finite training set of this many examples per instance, drawn once (dataset.py);
    # None: a fresh batch every step
    dataset_size: int | None = Field(None, gt=0, le=MAX_SIZE)
    normalize: bool = False  # scale every example to unit norm (Henighan et al., 2023)
    # the steps after which the run keeps its weights (0: the initial ones), in increasing
    # order; a user's `checkpoints = N` is N log-spaced steps (`checkpoint_steps`)
    checkpoints: list[int] | None = None

    @field_validator("data")
    @classmethod
    def _registered(cls, data: str) -> str:
        if data not in generators().GENERATORS:
            raise ValueError(
                f"unknown generator {data!r}; registered: {', '.join(generators().GENERATORS)} (a generator registered with "
                "sp.register_data exists only in the Python process that registered it, never on the command line)"
            )
        return data

    @field_validator("data_options")
    @classmethod
    def _options(cls, given: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        generator = generators().GENERATORS.get(info.data.get("data", ""))
        return generator.validate(given) if generator else given

    @model_validator(mode="after")
    def _check_shapes(self) -> Config:
        for name in ("feature_probability", "importance"):
            rows = getattr(self, name)
            if not rows:
                raise ValueError(f"{name}: needs at least one instance")
            for row in rows:
                if len(row) != self.features:
                    raise ValueError(
                        f"{name}: every instance needs {self.features} values "
                        f"(one per feature), got {len(row)}"
                    )
        if len(self.feature_probability) != len(self.importance):
            raise ValueError(
                f"importance: has {len(self.importance)} instances but feature_probability "
                f"has {len(self.feature_probability)}"
            )
        for p in (p for row in self.feature_probability for p in row):
            if not (0 < p <= 1) or math.isnan(p):
                raise ValueError(
                    f"feature_probability: {p} is outside (0, 1] (sparsity must be in [0, 1))"
                )
            if p < MIN_PROBABILITY:
                raise ValueError(
                    f"feature_probability: {p:.3g} is below 2^-24 = {MIN_PROBABILITY:.3g}, the rarest the data "
                    f"stream draws a feature (sparsity at most 1 - 2^-24)"
                )
        for v in (v for row in self.importance for v in row):
            if not (v >= 0) or math.isinf(v):
                raise ValueError(f"importance: {v} is not a finite value >= 0")
        from .models import KINDS

        if self.model not in KINDS:
            raise ValueError(
                f"model: unknown kind {self.model!r}; registered kinds: {', '.join(KINDS)} (a kind registered "
                "with sp.register exists only in the Python process that registered it, never on the command line)"
            )
        KINDS[self.model].check(self)
        generators().GENERATORS[self.data].check(self)
        if len(self.feature_probability) % self.replicates:
            raise ValueError(
                f"replicates: {self.replicates} does not divide the {len(self.feature_probability)} instances into groups"
            )
        if self.restarts > 1 and self.warm_start:
            raise ValueError("restarts: warm start trains one chain of instances; use restarts = 1 with it")
        if self.warmup >= self.steps:
            raise ValueError(f"warmup: {self.warmup} must be smaller than steps ({self.steps})")
        if self.momentum and self.optimizer != "sgd":
            raise ValueError(f"momentum: SGD's; {self.optimizer} has its own (beta1 = 0.9); drop momentum or use optimizer = \"sgd\"")
        if self.checkpoints is not None:
            if not self.checkpoints or self.checkpoints != sorted(set(self.checkpoints)):
                raise ValueError("checkpoints: give a number of log-spaced steps, or distinct steps in increasing order")
            if not 0 <= self.checkpoints[0] <= self.checkpoints[-1] <= self.steps:
                raise ValueError(f"checkpoints: steps run from 0 (the initial weights) to steps ({self.steps}), got {self.checkpoints[0]} … {self.checkpoints[-1]}")
        return self

    def __init__(self, **keys: Any) -> None:
        """Every key of the command line and TOML files, with the same names and checks:
        `sparsity` or `feature_probability`, `importance_decay` or `importance`, flat or
        per instance. Bad input raises ConfigError, one line naming the field."""
        try:
            super().__init__(**_expand(plain(keys)))
        except ValidationError as error:
            raise ConfigError(_one_line(error)) from None

    @property
    def instances(self) -> int:
        return len(self.feature_probability)

    def subset(self, instances: list[int]) -> Config:
        """The config of these instances alone, in this order, each its own group."""
        return self.model_copy(
            update={
                "feature_probability": [self.feature_probability[i] for i in instances],
                "importance": [self.importance[i] for i in instances],
                "replicates": 1,
            }
        )


# Keys a user may give besides Config's own fields and the generators' options: a
# firing profile's keys (data/firing.py) give feature_probability as sparsity does.
FIRING_KEYS = {"firing", "firing_max", "firing_min", "zipf_exponent"}
CONVENIENCE_KEYS = {"sparsity", "importance_decay"} | FIRING_KEYS
USER_KEYS = set(Config.model_fields) | CONVENIENCE_KEYS


def user_keys() -> set[str]:
    """Every key a config may hold: its fields, the convenience keys, and the options of
    every generator registered so far."""
    return USER_KEYS | set(generators().option_keys())


def whole_number_keys() -> set[str]:
    """The keys whose values are whole numbers (a sweep's axis of them stays integer)."""
    options = {k: f for g in generators().GENERATORS.values() for k, f in g.Options.model_fields.items()}
    fields = {**Config.model_fields, **options}
    return {name for name, field in fields.items() if field.annotation in (int, "int")}


def normalise_key(key: Any, known: set[str], where: str = "") -> str:
    """`batch-size` and `batch_size` are one key; anything else unknown is refused."""
    name = key.replace("-", "_") if isinstance(key, str) else None
    if name not in known:
        raise ConfigError(f"{where}{key}: unknown key; valid keys are: {', '.join(sorted(known))}")
    return name


def normalise_keys(raw: dict[str, Any], known: set[str] | None = None, where: str = "") -> dict[str, Any]:
    known = user_keys() if known is None else known
    out: dict[str, Any] = {}
    for key, value in raw.items():
        name = normalise_key(key, known, where)
        if name in out:
            raise ConfigError(f"{where}{name}: given twice (as '-' and '_' spellings); keep one")
        out[name] = value
    return out


def _as_number_list(name: str, value: Any) -> list[float]:
    values = value if isinstance(value, list) and value else [value]
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        try:
            return [float(v) for v in values]
        except OverflowError:
            raise ConfigError(f"{name}: a number is too large for a float") from None
    raise ConfigError(f"{name}: expected a number or a non-empty list of numbers, got {value!r}")


def _per_instance(name: str, value: Any, instances: int) -> list[list[float]]:
    """A flat list applies to every instance; a nested list gives one row per instance."""
    if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
        return [_as_number_list(name, row) for row in value]
    row = _as_number_list(name, value)
    return [list(row) for _ in range(instances)]


def resolve(raw: dict[str, Any]) -> Config:
    """Turn user keys (from flags and/or a config file) into a validated Config."""
    if not isinstance(raw, dict):
        raise ConfigError(f"config: expected a table of keys, got {type(raw).__name__}")
    if bad := [key for key in raw if not isinstance(key, str)]:
        raise ConfigError(f"{bad[0]!r}: unknown key; keys are names such as features or sparsity")
    return Config(**raw)


def _expand(raw: dict[str, Any]) -> dict[str, Any]:
    """User keys as Config's fields: `sparsity` and `importance_decay` become full
    [instance][feature] lists, a flat list applies to every instance, and the model
    kind fills in the keys it implies."""
    keys = _gather_options(normalise_keys(raw))
    features = keys.get("features", Config.model_fields["features"].default)
    if not isinstance(features, int) or isinstance(features, bool) or not 0 < features <= MAX_SIZE:
        raise ConfigError(f"features: must be a whole number from 1 to {MAX_SIZE}, got {features!r}")

    given = keys.get("sparsity", keys.get("feature_probability", SEED_SPARSITIES))
    replicates = keys.get("replicates", 1)
    # `sparsity` lists settings, each repeated `replicates` times; feature_probability lists instances
    copies = replicates if isinstance(replicates, int) and not isinstance(replicates, bool) and 0 < replicates <= MAX_SIZE else 1
    count = (len(given) if isinstance(given, (list, tuple)) else 1) * (copies if "feature_probability" not in keys else 1)
    if count * features > MAX_VALUES:  # checked before any [instance][feature] list is built
        raise ConfigError(
            f"features: {count} instances x {features} features is more than {MAX_VALUES:,} values; "
            "split the work into several runs"
        )
    if "sparsity" in keys and "feature_probability" in keys:
        raise ConfigError("sparsity: give either sparsity or feature_probability, not both")
    if profile := {key: keys.pop(key) for key in FIRING_KEYS if key in keys}:
        if given := [key for key in ("sparsity", "feature_probability") if key in keys]:
            raise ConfigError(f"{given[0]}: a firing profile gives every feature's probability; give either {given[0]} or firing")
        row = firing_profile(profile, features)
        probs = [list(row) for _ in range(copies)]
    elif "feature_probability" in keys:
        probs = _per_instance("feature_probability", keys.pop("feature_probability"), 1)
        if len(probs) == 1 and len(probs[0]) != features:
            raise ConfigError(
                f"feature_probability: give {features} values per instance, got {len(probs[0])}"
            )
    else:
        sparsity = _as_number_list("sparsity", keys.pop("sparsity", list(SEED_SPARSITIES)))
        for s in sparsity:
            if not (0 <= s < 1):
                raise ConfigError(
                    f"sparsity: {s} is outside [0, 1); use values such as 0,0.9,0.99"
                )
        # Rounded so that 1 - 0.999 is stored as 0.001, not 0.0010000000000000009.
        probs = [[round(1 - s, 12)] * features for s in sparsity for _ in range(copies)]

    if "importance_decay" in keys and "importance" in keys:
        raise ConfigError("importance_decay: give either importance_decay or importance, not both")
    if "importance" in keys:
        importance = _per_instance("importance", keys.pop("importance"), len(probs))
    else:
        decay = _as_number_list("importance_decay", keys.pop("importance_decay", 0.7))
        if len(decay) != 1 or not (decay[0] > 0):
            raise ConfigError(f"importance_decay: must be one number > 0, got {decay}")
        try:
            importance = [[decay[0] ** i for i in range(features)] for _ in probs]
        except OverflowError:
            raise ConfigError(f"importance_decay: {decay[0]} ** {features - 1} overflows; use a value nearer 1") from None

    if isinstance(keys.get("checkpoints"), int) and not isinstance(keys["checkpoints"], bool):
        keys["checkpoints"] = checkpoint_steps(keys["checkpoints"], keys.get("steps", Config.model_fields["steps"].default))

    from .models import KINDS

    model = KINDS.get(keys.get("model", "tied")) if isinstance(keys.get("model", "tied"), str) else None
    for key, value in (model.defaults if model else {}).items():
        keys.setdefault(key, value)
    return {**keys, "feature_probability": probs, "importance": importance}


def checkpoint_steps(count: int, steps: Any) -> list[int]:
    """`count` steps log-spaced from 0 (the initial weights) to `steps` (the last), both
    included: devinterp's and Chen et al.'s snapshots. Early steps that round to the same
    whole number are kept once, so there may be fewer."""
    if not 0 < count <= MAX_SIZE:
        raise ConfigError(f"checkpoints: a number of steps from 1 up, or a list of steps; got {count}")
    if not isinstance(steps, int) or isinstance(steps, bool) or not 0 < steps <= MAX_SIZE:
        return [count]  # validation refuses the steps themselves
    if count > steps:
        return list(range(steps + 1))
    if count <= 2:
        return [0, steps][-count:]
    return sorted({0, *(round(steps ** (i / (count - 2))) for i in range(count - 1))})


def firing_profile(keys: dict[str, Any], features: int) -> list[float]:
    """The row of feature probabilities of a firing profile's keys (data/firing.py)."""
    if "firing" not in keys:
        raise ConfigError(f"{next(iter(keys))}: belongs to a firing profile; give firing = \"zipf\" or \"linear\" with it")
    try:
        return generators().Firing(**keys).probabilities(features)
    except ValidationError as error:
        raise ConfigError(_one_line(error)) from None


def _gather_options(keys: dict[str, Any]) -> dict[str, Any]:
    """The generator's options given as top-level keys (`correlation = "correlated"`), moved
    into `data_options`; an option of another generator is refused."""
    declared = generators().option_keys()
    given = {key: keys.pop(key) for key in list(keys) if key in declared and key not in Config.model_fields}
    if not given:
        return keys
    if "data_options" in keys:
        raise ConfigError(f"{next(iter(given))}: give the data's options either as keys of their own or in data_options, not both")
    data = keys.get("data", Config.model_fields["data"].default)
    for key in given:
        if data not in declared[key]:
            raise ConfigError(f"{key}: an option of {' and '.join(declared[key])} data, not of {data!r}; drop it or set data")
    return {**keys, "data_options": given}


def _one_line(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"] if not isinstance(part, int))
    message = first["msg"].removeprefix("Value error, ")
    if not where or where == "data_options":  # a generator's option names itself
        return message
    value = first.get("input")
    shown = "" if isinstance(value, (dict, list)) else f" (got {value!r})"
    return f"{where}: {message}{shown}"


def read_config_file(path: Path) -> dict[str, Any]:
    """User keys from a TOML file (or a run's config.json, to train it again)."""
    try:
        if not path.is_file():
            raise ConfigError(f"config: no such file {path}")
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"config: {path} is not a text file (not UTF-8)") from None
    except OSError as error:
        raise ConfigError(f"config: cannot read {path} ({error.strerror})") from None
    kind = "JSON" if path.suffix == ".json" else "TOML"
    try:
        data = json.loads(text) if kind == "JSON" else tomllib.loads(text)
    except (ValueError, RecursionError) as error:  # also numbers of thousands of digits
        detail = (str(error).splitlines() or [type(error).__name__])[0]
        raise ConfigError(f"config: {path} is not valid {kind}: {detail}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config: {path} must hold a table of keys, not a {type(data).__name__}")
    data.pop("package_version", None)
    return data


def validate_saved(data: dict[str, Any], source: Path) -> Config:
    """A Config read back from a run directory."""
    data = dict(data)
    data.pop("package_version", None)
    try:
        return Config(**data)
    except (ConfigError, TypeError) as error:
        raise ConfigError(f"run: {source} holds an invalid config ({error})") from None
