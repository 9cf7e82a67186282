"""Sweeps: a grid over config keys, trained in shards, resumable after any crash.

A spec (TOML) names a base config and axes:

    [base]
    features = 2
    hidden = 1
    steps = 5000

    [axes]
    density = { log = [1, 0.01, 20] }        # start, stop, count
    importance_last = { log = [0.1, 10, 25] }
    seed = [0, 1]

Axes `density` (every feature's probability), `sparsity` and `importance_last`
(the last feature's importance, the others as the base gives them) vary within a
model: grid points that differ only in them are packed as instances of one batched
training job, a shard. Any other config key (seed, hidden, model, lr, ...) varies
between shards.

The sweep directory:
  spec.json              the spec it was started with (a different spec is refused, unless --force)
  shards/HASH/           one finished shard: a run directory (no figures) plus complete.json,
                         the SHA-256 of its files, written last; HASH is the shard's config
  failed/HASH.json       a shard whose loss went NaN or inf, and why
  results.csv            one row per grid point, rebuilt from the shards after every sweep
A shard is written in a hidden staging directory and renamed into place, and is
trusted only when its checksums match: a killed, truncated or corrupted shard is
trained again. CSV, not Parquet: pandas reads it with nothing else installed, and
the table is small (one row per model).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import json
import math
import os
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import USER_KEYS, Config, ConfigError, read_config_file, resolve
from .files import atomic_dir, write_atomic

SPEC, RESULTS, LOCK, COMPLETE = "spec.json", "results.csv", ".lock", "complete.json"
INSTANCE_AXES = ("density", "sparsity", "importance_last")
# keys an axis may not set: they are per-instance lists, set by the instance axes
NOT_AXES = {"feature_probability", "importance", "warm_start"}


@dataclass
class Shard:
    config: Config
    points: list[dict[str, Any]]  # the grid point of each instance, in order

    @property
    def key(self) -> str:
        text = json.dumps(self.config.model_dump(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_spec(path: Path) -> dict[str, Any]:
    """The spec as plain data, checked: one line naming the problem otherwise."""
    raw = read_config_file(path)
    unknown = set(raw) - {"base", "axes"}
    if unknown:
        raise ConfigError(f"spec: unknown table {sorted(unknown)[0]!r}; a spec has [base] and [axes]")
    base, axes = raw.get("base", {}), raw.get("axes", {})
    if not isinstance(base, dict) or not isinstance(axes, dict) or not axes:
        raise ConfigError("spec: needs a [base] table of config keys and a non-empty [axes] table")
    for key in base:
        if key.replace("-", "_") not in USER_KEYS:
            raise ConfigError(f"base.{key}: unknown config key")
    return {"base": base, "axes": {name: axis_values(name, spec) for name, spec in axes.items()}}


def axis_values(name: str, spec: Any) -> list[Any]:
    key = name.replace("-", "_")
    if key not in INSTANCE_AXES and (key not in USER_KEYS or key in NOT_AXES):
        raise ConfigError(f"axes.{name}: not an axis; use density, sparsity, importance_last or a config key")
    if isinstance(spec, list):
        if not spec:
            raise ConfigError(f"axes.{name}: empty axis; give at least one value")
        return spec
    if isinstance(spec, dict) and len(spec) == 1 and next(iter(spec)) in ("log", "linear"):
        kind, args = next(iter(spec.items()))
        if not (isinstance(args, list) and len(args) == 3 and all(isinstance(a, (int, float)) for a in args)):
            raise ConfigError(f"axes.{name}.{kind}: expected [start, stop, count]")
        start, stop, count = args
        if int(count) != count or count < 1:
            raise ConfigError(f"axes.{name}.{kind}: count must be a whole number >= 1, got {count}")
        if kind == "log":
            if start <= 0 or stop <= 0:
                raise ConfigError(f"axes.{name}.log: start and stop must be > 0")
            return [float(v) for v in np.geomspace(start, stop, int(count))]
        return [float(v) for v in np.linspace(start, stop, int(count))]
    raise ConfigError(f"axes.{name}: expected a list of values or {{log|linear = [start, stop, count]}}, got {spec!r}")


def plan(spec: dict[str, Any]) -> list[Shard]:
    """Every grid point, packed into shards (points differing only in instance axes share one)."""
    names = list(spec["axes"])
    groups: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
    for values in itertools.product(*(spec["axes"][n] for n in names)):
        point = dict(zip(names, values, strict=True))
        outer = {k.replace("-", "_"): v for k, v in point.items() if k.replace("-", "_") not in INSTANCE_AXES}
        groups.setdefault(json.dumps(outer, sort_keys=True), (outer, []))[1].append(point)
    return [_shard(spec["base"], outer, points) for outer, points in groups.values()]


def _shard(base: dict[str, Any], outer: dict[str, Any], points: list[dict[str, Any]]) -> Shard:
    template = resolve({**base, **outer})
    probs, importance = [], []
    for point in points:
        given = {k.replace("-", "_"): v for k, v in point.items()}
        if "density" in given:
            probs.append([float(given["density"])] * template.features)
        elif "sparsity" in given:
            probs.append([round(1 - float(given["sparsity"]), 12)] * template.features)
        else:
            probs.append(list(template.feature_probability[0]))
        row = list(template.importance[0])
        if "importance_last" in given:
            row[-1] = float(given["importance_last"])
        importance.append(row)
    keys = {k: v for k, v in {**base, **outer}.items() if k.replace("-", "_") not in ("sparsity", "importance_decay")}
    return Shard(resolve({**keys, "feature_probability": probs, "importance": importance}), points)


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold DIR/.lock for the whole sweep: a second sweep on DIR is refused at once."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / LOCK, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"out: {directory} is in use by another sweep; wait for it or choose another --out") from None
        yield


def _checksums(directory: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.iterdir())
        if p.is_file() and p.name != COMPLETE
    }


def is_complete(directory: Path) -> bool:
    """A shard counts only if its files still match the checksums written when it finished."""
    try:
        expected = json.loads((directory / COMPLETE).read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return expected == _checksums(directory)


def run_shard(out: str, config_json: str) -> dict[str, Any]:
    """Train one shard and write it; returns its status. Top level, so worker processes can run it."""
    from .runs import record
    from .train import train

    config = Config.model_validate_json(config_json)
    key = Shard(config, []).key
    started = time.perf_counter()
    result = train(config)
    final = result.history[-1]
    if not bool(np.isfinite(final.numpy()).all()):
        bad = [i for i, v in enumerate(final.tolist()) if not math.isfinite(v)]
        reason = f"training loss not finite for instances {bad[:10]} (first of {len(bad)})"
        failed = Path(out) / "failed"
        failed.mkdir(exist_ok=True)
        write_atomic(failed / f"{key}.json", json.dumps({"reason": reason, "at": time.time()}))
        return {"key": key, "status": "failed", "reason": reason}
    with atomic_dir(Path(out) / "shards" / key) as staging:
        record(staging, result, figures=False)
        (staging / COMPLETE).write_text(json.dumps(_checksums(staging)))
    with contextlib.suppress(FileNotFoundError):
        (Path(out) / "failed" / f"{key}.json").unlink()
    return {"key": key, "status": "done", "seconds": time.perf_counter() - started}


def _quiet_worker() -> None:
    """One thread per worker process: the processes share the cores."""
    import numba
    import torch

    torch.set_num_threads(1)
    numba.set_num_threads(1)


def sweep(
    spec_path: Path,
    out: Path,
    executor: str = "local",
    workers: int = 2,
    force: bool = False,
    retry_failed: bool = False,
    progress: bool = False,
    scheduler: str | None = None,
) -> dict[str, Any]:
    """Run (or resume) a sweep; return counts of shards trained, skipped and failed."""
    spec = read_spec(spec_path)
    shards = plan(spec)
    if executor not in ("local", "processes", "dask"):
        raise ConfigError(f"executor: unknown {executor!r}; use local, processes or dask")
    if executor == "dask" and not scheduler:
        raise ConfigError("scheduler: --executor dask needs --scheduler ADDRESS (e.g. tcp://host:8786)")
    if workers < 1:
        raise ConfigError(f"workers: must be at least 1, got {workers}")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out: {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / SPEC).is_file():
        raise ConfigError(f"out: {out} exists and is not a sweep; choose another --out")
    with locked(out):
        _check_spec(out, spec, force)
        todo, skipped, failed_before = [], 0, []
        for shard in shards:
            if is_complete(out / "shards" / shard.key):
                skipped += 1
            elif (out / "failed" / f"{shard.key}.json").is_file() and not retry_failed:
                failed_before.append(shard.key)
            else:
                todo.append(shard)
        statuses = _execute(out, todo, executor, workers, progress, scheduler)
        write_results(out, spec, shards)
    trained = sum(s["status"] == "done" for s in statuses)
    failed = [s["key"] for s in statuses if s["status"] == "failed"] + failed_before
    return {"shards": len(shards), "trained": trained, "skipped": skipped, "failed": failed}


def _check_spec(out: Path, spec: dict[str, Any], force: bool) -> None:
    current = json.loads(json.dumps(spec))  # as spec.json will hold it (tuples become lists)
    saved_path = out / SPEC
    if saved_path.is_file() and not force:
        saved = json.loads(saved_path.read_text())
        if saved != current:
            changed = sorted(
                f"{table}.{key}"
                for table in ("base", "axes")
                for key in set(saved.get(table, {})) | set(current[table])
                if saved.get(table, {}).get(key) != current[table].get(key)
            )
            raise ConfigError(
                f"spec: differs from the one {out} was started with ({', '.join(changed)}); "
                "use another --out, or --force to continue with the new spec"
            )
    write_atomic(saved_path, json.dumps(current, indent=2))


def _execute(
    out: Path, todo: list[Shard], executor: str, workers: int, progress: bool, scheduler: str | None
) -> list[dict[str, Any]]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("[bold]sweep"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), disable=not progress)
    statuses = []
    with bar:
        task = bar.add_task("shards", total=len(todo))
        if executor == "local":
            for shard in todo:
                statuses.append(run_shard(str(out), shard.config.model_dump_json()))
                bar.advance(task)
        elif executor == "processes":
            import multiprocessing

            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_quiet_worker) as pool:
                futures = [pool.submit(run_shard, str(out), shard.config.model_dump_json()) for shard in todo]
                for future in as_completed(futures):
                    statuses.append(future.result())
                    bar.advance(task)
        else:
            statuses = _dask(out, todo, scheduler, lambda: bar.advance(task))
    return statuses


def _dask(out: Path, todo: list[Shard], scheduler: str, advance) -> list[dict[str, Any]]:
    """Shards on an existing Dask cluster. Workers write the shards themselves, so OUT must be
    storage that every worker sees at the same path (a shared filesystem); the client only
    collects their statuses."""
    try:
        from distributed import Client
        from distributed import as_completed as completed
    except ImportError:
        raise ConfigError("executor: dask needs the distributed package: pip install 'dask[distributed]'") from None
    try:
        client = Client(scheduler, timeout=10)
    except OSError as error:
        raise ConfigError(f"scheduler: cannot reach {scheduler} ({error})") from None
    statuses = []
    with client:
        futures = [
            client.submit(run_shard, str(out.resolve()), shard.config.model_dump_json(), pure=False) for shard in todo
        ]
        for future in completed(futures):
            statuses.append(future.result())
            advance()
    return statuses


def write_results(out: Path, spec: dict[str, Any], shards: list[Shard]) -> None:
    """results.csv from the shards on disk: one row per grid point, failed or missing ones marked."""
    import csv
    import io

    axes = list(spec["axes"])
    rows = []
    for shard in shards:
        directory = out / "shards" / shard.key
        metrics = json.loads((directory / "metrics.json").read_text())["instances"] if is_complete(directory) else None
        failed = out / "failed" / f"{shard.key}.json"
        status = "ok" if metrics else ("failed: " + json.loads(failed.read_text())["reason"]) if failed.is_file() else "missing"
        for k, point in enumerate(shard.points):
            row = {name: point[name] for name in axes}
            row.update(shard=shard.key, instance=k, status=status)
            m = metrics[k] if metrics else {}
            norms = m.get("feature_norms", [math.nan] * shard.config.features)
            row.update(
                loss=m.get("loss", math.nan),
                represented=m.get("represented", math.nan),
                dimensions_per_feature=m.get("dimensions_per_feature", math.nan),
                **{f"norm_{i}": v for i, v in enumerate(norms)},
            )
            rows.append(row)
    columns = list(dict.fromkeys(c for row in rows for c in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(out / RESULTS, buffer.getvalue())


def load_sweep(path: str | os.PathLike[str]):
    """The results table of a sweep directory, as a pandas DataFrame."""
    import pandas

    path = Path(path)
    if not (path / RESULTS).is_file():
        raise ConfigError(f"sweep: {path} has no {RESULTS}; run `superposition sweep SPEC --out {path}`")
    return pandas.read_csv(path / RESULTS)
