"""Sweeps of SAEs: the [sae] table of a sweep spec (sweep.py holds the machinery).

    [sae]
    run = "runs/pentagon"          # or data = "dictionary", features = 512, dims = 256
    steps = 2000

    [axes]
    kind = ["relu", "topk", "jumprelu"]
    l1 = { log = [0.01, 1, 7] }     # the relu points' setting
    k = [1, 2, 4]                   # the topk points'
    latents = [10, 20]
    seed = [0, 1]

Every SAE key but the source (run, data) may be an axis. The settings l1, k and l0
belong to one kind each: a point of kind K takes the values of K's own setting axis
(or K's default, derived from the source, when that axis is absent), and they pack as
the instances of one batched job, a shard, together with every source instance. So
the grid is (the other axes) x (the point's own setting), not the product with the
settings of other kinds. Every shard is a sealed SAE directory (no figures).

results.csv has one row per SAE: the axes, its kind, its setting under the name
metrics.json gives it (l1_coefficient, k or l0_coefficient), its latents and
source_instance, the shard, and the scores of sae_runs.py (mmcs, recovered, l0, ...).
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

from ..config import ConfigError, normalise_keys
from ..labels import sae_source
from ..runs import load_run
from ..saes import SAE_KINDS, setting_columns
from ..saes.config import SAEConfig, resolve_sae, user_keys
from .grid import Shard, axis_values

WHOLE = {name for name, field in SAEConfig.model_fields.items() if field.annotation in (int, "int")} | {"instances"}
SCORES = (
    "loss", "mmcs", "mmcs_all", "recovered", "represented", "latents_matched", "latents_duplicate",
    "latents_unmatched", "dead_fraction", "l0", "mse", "variance_explained", "resampled",
)  # fmt: skip


def read_tables(base: dict[str, Any], axes: dict[str, Any]) -> dict[str, Any]:
    """The spec of an SAE sweep, checked: its [sae] keys and its axes."""
    base = normalise_keys(base, user_keys(), "sae.")
    for name in axes:
        if isinstance(name, str) and name.replace("-", "_") in ("run", "data"):
            raise ConfigError(f"axes.{name}: not an axis; a sweep trains its SAEs on the one source its [sae] table names")
    axes = normalise_keys(axes, user_keys() - {"run", "data", "setting"}, "axes.")
    settings = setting_columns()
    whole = WHOLE | {kind.setting for kind in SAE_KINDS.values() if kind.whole}
    return {"sae": base, "axes": {n: axis_values(n, v, n in settings, n in whole) for n, v in axes.items()}}


def count_points(axes: dict[str, list[Any]]) -> int:
    """SAEs per source instance: the other axes times the setting values (each kind takes its own)."""
    keys = setting_columns()
    settings = sum(len(values) for name, values in axes.items() if name in keys)
    return math.prod(len(values) for name, values in axes.items() if name not in keys) * max(1, settings)


def plan(spec: dict[str, Any]) -> list[Shard]:
    """One shard per point of the axes other than the settings; each holds the point's own
    setting values times the source's instances. Every shard's config is resolved here, so
    a bad value is refused before anything trains."""
    base, axes = spec["sae"], spec["axes"]
    run = _source_run(base)
    settings = setting_columns()
    outer_names = [name for name in axes if name not in settings]
    shards = []
    for values in itertools.product(*(axes[name] for name in outer_names)):
        outer = dict(zip(outer_names, values, strict=True))
        keys = {**base, **outer}
        kind = keys.get("kind", "relu")
        if not isinstance(kind, str) or kind not in SAE_KINDS:
            raise ConfigError(f"kind: unknown SAE kind {kind!r}; kinds: {', '.join(SAE_KINDS)}")
        setting = SAE_KINDS[kind].setting
        if "kind" in axes:  # a base penalty belongs to the kind that takes it
            keys = {k: v for k, v in keys.items() if k not in settings or k == setting}
        if setting in axes:
            keys[setting] = axes[setting]
        config = resolve_sae(keys, run)
        column = SAE_KINDS[kind].column
        points = [
            {**outer, "kind": kind, column: value, "source_instance": i}
            for value in config.settings
            for i in range(config.source_instances)
        ]
        shards.append(Shard(config, points))
    swept = {SAE_KINDS[shard.config.kind].setting for shard in shards}
    for table, names in (("axes", set(axes)), ("sae", set(base))):
        for name in sorted(set(settings) & names - swept):
            owner = next(k for k, cls in SAE_KINDS.items() if cls.setting == name)
            raise ConfigError(f"{table}.{name}: no SAE of this sweep takes {name}; it is the {owner} kind's setting (add kind = \"{owner}\")")
    return shards


def _source_run(base: dict[str, Any]):
    """The source run, read once for every shard (None for a dictionary: resolve_sae checks)."""
    path = base.get("run")
    if not isinstance(path, str) or base.get("data", "run") != "run":
        return None

    return load_run(Path(path))


def rows(shard: Shard, axes: list[str], metrics: list[dict[str, Any]] | None, status: str) -> list[dict[str, Any]]:
    """One SAE per row: its grid point, kind, setting, latents and source instance, where it was
    trained, and its scores (NaN where missing)."""
    out = []
    for k, point in enumerate(shard.points):
        row = {name: point[name] for name in axes if name in point and name not in setting_columns()}
        row.update({key: value for key, value in point.items() if key not in row})
        row.update(latents=shard.config.latents, shard=shard.key, instance=k, status=status)
        m = metrics[k] if metrics else {}
        row.update({score: m.get(score, math.nan) for score in SCORES})
        out.append(row)
    return out


def source(directory: Path, table) -> str:
    """What the sweep's SAEs were trained on, from one finished shard's config, for figure titles."""


    finished = table.loc[table["status"] == "ok", "shard"]
    if finished.empty:
        return "no finished shard"
    raw = json.loads((Path(directory) / "shards" / finished.iloc[0] / "config.json").read_text())
    raw.pop("package_version", None)
    return sae_source(SAEConfig(**raw))
