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

A spec with an [sae] table instead of [base] sweeps SAEs: sae_sweep.py plans its
shards (each an SAE directory) and its rows; everything below holds for both.

The sweep directory:
  superposition.json     the marker: this directory is a sweep (files.py)
  spec.json              the spec it was started with (a different spec is refused, unless --force)
  shards/HASH/           one finished shard: a sealed run (or SAE) directory, no figures; HASH is
                         the shard's config
  failed/HASH.json       a shard whose weights or loss went NaN or inf, and why
  results.csv            one row per model, rebuilt from the shards after every sweep
A shard is written in a hidden staging directory and published in one step, and is
trusted only when its run's checksums match: a killed, truncated or corrupted shard
is trained again. CSV, not Parquet: pandas reads it with nothing else installed, and
the table is small (one row per model).

A base with several instances (`sparsity = [0.1, 0.5, 0.9]`, or several rows of
`feature_probability`) trains all of them at every grid point: results.csv says which
in its `base_instance` column. The sweep holds `.NAME.lock` beside its directory
while it runs; worker processes end with it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from ..config import Config, ConfigError, normalise_keys, read_config_file, resolve, user_keys, whole_number_keys
from ..files import (
    KIND_NAMES,
    MARKER,
    atomic_dir,
    check_output_dir,
    corrupted,
    kind_of,
    lock,
    remove_stale_temporaries,
    seal,
    to_json,
    write_atomic,
)
from .grid import MAX_POINTS, Shard, axis_values

SPEC, RESULTS = "spec.json", "results.csv"
INSTANCE_AXES = ("density", "sparsity", "importance_last")
# keys an axis may not set: they are per-instance lists, set by the instance axes
NOT_AXES = {"feature_probability", "importance", "warm_start", "replicates"}


def read_spec(path: Path) -> dict[str, Any]:
    """The spec as plain data, checked: one line naming the problem otherwise."""
    raw = read_config_file(path)
    table = "sae" if "sae" in raw else "base"
    unknown = set(raw) - {table, "axes"}
    if unknown:
        raise ConfigError(
            f"spec: unknown table {sorted(unknown)[0]!r}; a spec has [base] (toy models) or [sae] (sparse autoencoders), and [axes]"
        )
    base, axes = raw.get(table, {}), raw.get("axes", {})
    if not isinstance(base, dict) or not isinstance(axes, dict) or not axes:
        raise ConfigError(f"spec: needs a [{table}] table of config keys and a non-empty [axes] table")
    if table == "sae":
        from .sae_sweep import read_tables

        spec = read_tables(base, axes)
    else:
        base = normalise_keys(base, user_keys(), "base.")
        axes = normalise_keys(axes, user_keys() | set(INSTANCE_AXES), "axes.")
        if "density" in axes and "sparsity" in axes:
            raise ConfigError("axes.sparsity: give a density axis or a sparsity axis, not both")
        for name in axes:
            if name in NOT_AXES:
                raise ConfigError(f"axes.{name}: not an axis; use density, sparsity, importance_last or a config key")
        whole = whole_number_keys()
        spec = {"base": base, "axes": {n: axis_values(n, v, n in INSTANCE_AXES, n in whole) for n, v in axes.items()}}
    try:
        to_json(spec)  # spec.json must hold it: TOML dates and times are not config values
    except (TypeError, ValueError) as error:
        raise ConfigError(f"spec: holds a value that is not a number, string, list or table ({error})") from None
    if table == "sae":
        from .sae_sweep import count_points

        points = count_points(spec["axes"])
    else:
        points = math.prod(len(values) for values in spec["axes"].values())
    if points > MAX_POINTS:
        raise ConfigError(f"axes: the grid has {points:,} points, more than {MAX_POINTS:,}; check the counts of its ranges")
    return spec


def is_sae(spec: dict[str, Any]) -> bool:
    """A sweep of SAEs ([sae] table) rather than of toy models ([base])."""
    return "sae" in spec


def plan(spec: dict[str, Any]) -> list[Shard]:
    """Every grid point, packed into shards (points differing only in instance axes share one)."""
    if is_sae(spec):
        from .sae_sweep import plan as plan_saes

        return plan_saes(spec)
    names = list(spec["axes"])
    groups: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
    for values in itertools.product(*(spec["axes"][n] for n in names)):
        point = dict(zip(names, values, strict=True))
        outer = {k: v for k, v in point.items() if k not in INSTANCE_AXES}
        groups.setdefault(json.dumps(outer, sort_keys=True), (outer, []))[1].append(point)
    return [_shard(spec["base"], outer, points) for outer, points in groups.values()]


def _shard(base: dict[str, Any], outer: dict[str, Any], points: list[dict[str, Any]]) -> Shard:
    """Every point, times every instance of the base, as the instances of one config.

    With a density or sparsity axis, the base's probabilities are replaced, so only
    its rows of importance (if it gives several) make base instances.
    """
    keys = {**base, **outer}
    if "density" in points[0] or "sparsity" in points[0]:
        keys = {k: v for k, v in keys.items() if k not in ("sparsity", "feature_probability")}
        rows = keys.get("importance")
        nested = isinstance(rows, list) and rows and all(isinstance(r, list) for r in rows)
        first = 1 - points[0]["density"] if "density" in points[0] else points[0]["sparsity"]
        first = first if 0 <= first < 1 else 0.0  # a stand-in; every point is checked below
        keys["sparsity"] = [first] * (len(rows) if nested else 1)
    template = resolve(keys)
    probs, importance, instances = [], [], []
    for point in points:
        for k in range(template.instances):
            if "density" in point:
                probs.append([float(point["density"])] * template.features)
            elif "sparsity" in point:
                probs.append([round(1 - float(point["sparsity"]), 12)] * template.features)
            else:
                probs.append(list(template.feature_probability[k]))
            row = list(template.importance[k])
            if "importance_last" in point:
                row[-1] = float(point["importance_last"])
            importance.append(row)
            instances.append({**point, "base_instance": k})
    keys = {k: v for k, v in keys.items() if k not in ("sparsity", "importance_decay")}
    return Shard(resolve({**keys, "feature_probability": probs, "importance": importance}), instances)


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold the sweep's lock (`.NAME.lock` beside it): a second sweep on DIR is refused at once.

    Under the lock, a directory that is empty (a sweep killed before its marker
    landed) becomes a sweep; one that is neither empty nor a sweep is refused.
    """
    absolute = Path(os.path.abspath(directory))
    try:
        absolute.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"out: cannot create {absolute.parent} ({error.strerror})") from None
    with lock(absolute.parent / f".{absolute.name}.lock", f"{directory} (a sweep)"):
        if directory.is_dir() and kind_of(directory) != "sweep":
            for tmp in directory.glob(f".{MARKER}.*.tmp"):  # a sweep killed while writing its marker
                tmp.unlink()
            if any(directory.iterdir()):
                found = kind_of(directory)
                what = KIND_NAMES[found] if found else f"not a superposition output (no {MARKER})"
                raise ConfigError(f"out: {directory} is {what}, not a sweep; choose another --out")
        try:
            directory.mkdir(exist_ok=True)
            if kind_of(directory) != "sweep":
                seal(directory, "sweep")
        except OSError as error:
            raise ConfigError(f"out: cannot write in {directory} ({error.strerror})") from None
        for place in (directory, directory / "failed"):
            remove_stale_temporaries(place)
        yield


def is_complete(directory: Path) -> bool:
    """A shard counts only if it is a run (or SAE) whose files still match the checksums written with it."""
    return kind_of(directory) in ("run", "sae") and not corrupted(directory)


def run_shard(out: str, config_json: str, sae: bool = False) -> dict[str, Any]:
    """Train one shard and write it; returns its status. Top level, so worker processes can run it."""
    from ..runs import record
    from ..saes.config import SAEConfig
    from ..saes.runs import train_sae
    from ..training.loop import Diverged, train

    config = (SAEConfig if sae else Config).model_validate_json(config_json)
    key = Shard(config, []).key
    started = time.perf_counter()
    try:
        with atomic_dir(Path(out) / "shards" / key, "sae" if sae else "run", owned=True) as staging:
            if sae:
                train_sae(config).write(staging, figures=False)
            else:
                record(staging, train(config), figures=False)
    except Diverged as error:
        failed = Path(out) / "failed"
        failed.mkdir(exist_ok=True)
        write_atomic(failed / f"{key}.json", to_json({"reason": str(error), "at": time.time()}))
        return {"key": key, "status": "failed", "reason": str(error)}
    with contextlib.suppress(FileNotFoundError):
        (Path(out) / "failed" / f"{key}.json").unlink()
    return {"key": key, "status": "done", "seconds": time.perf_counter() - started}


def worker_setup(parent: int) -> None:
    """A worker process (a sweep's, or a preset's: experiments.fit_all): one thread (the
    processes share the cores), and it dies with the process that started it.

    The kernel kills it when the process that started it dies (Linux); a watchdog
    thread covers other systems and the moment between the two.
    """
    import ctypes
    import signal
    import threading

    import numba
    import torch

    torch.set_num_threads(1)
    numba.set_num_threads(1)
    with contextlib.suppress(OSError, AttributeError):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


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
    from ..saes.training import check as check_saes
    from ..training.engines import settle
    from ..training.loop import check_memory

    spec = read_spec(spec_path)
    shards = plan(spec)
    for shard in shards:
        check_saes(shard.config) if is_sae(spec) else check_memory(settle(shard.config))
    if executor not in ("local", "processes", "dask"):
        raise ConfigError(f"executor: unknown {executor!r}; use local, processes or dask")
    if executor == "dask" and not scheduler:
        raise ConfigError("scheduler: --executor dask needs --scheduler ADDRESS (e.g. tcp://host:8786)")
    if workers < 1:
        raise ConfigError(f"workers: must be at least 1, got {workers}")
    check_output_dir(out, "sweep", owned=True)
    # a cluster that cannot be reached is refused before the sweep's directory is made
    with _connect(scheduler) if executor == "dask" else contextlib.nullcontext() as client, locked(out):
        _check_spec(out, spec, force)
        todo, skipped, failed_before = [], 0, []
        for shard in shards:
            if is_complete(out / "shards" / shard.key):
                skipped += 1
            elif (out / "failed" / f"{shard.key}.json").is_file() and not retry_failed:
                failed_before.append(shard.key)
            else:
                todo.append(shard)
        statuses = _execute(out, todo, is_sae(spec), executor, workers, progress, client)
        write_results(out, spec, shards)
    trained = sum(s["status"] == "done" for s in statuses)
    failed = [s["key"] for s in statuses if s["status"] == "failed"] + failed_before
    return {"shards": len(shards), "trained": trained, "skipped": skipped, "failed": failed}


def _check_spec(out: Path, spec: dict[str, Any], force: bool) -> None:
    current = json.loads(to_json(spec))  # as spec.json will hold it (tuples become lists)
    saved_path = out / SPEC
    if saved_path.is_file() and not force:
        try:
            saved = json.loads(saved_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            saved = None
        if not (
            isinstance(saved, dict)
            and isinstance(saved.get("axes"), dict)
            and sum(isinstance(saved.get(t), dict) for t in ("base", "sae")) == 1
        ):
            raise ConfigError(f"spec: {saved_path} is corrupted; use --force to replace it with this spec")
        if saved != current:
            changed = sorted(
                f"{table}.{key}"
                for table in ("base", "sae", "axes")
                for key in set(saved.get(table, {})) | set(current.get(table, {}))
                if saved.get(table, {}).get(key) != current.get(table, {}).get(key)
            )
            raise ConfigError(
                f"spec: differs from the one {out} was started with ({', '.join(changed)}); "
                "use another --out, or --force to continue with the new spec"
            )
    write_atomic(saved_path, to_json(current))


def _execute(
    out: Path, todo: list[Shard], sae: bool, executor: str, workers: int, progress: bool, client: Any
) -> list[dict[str, Any]]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("[bold]sweep"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), disable=not progress)
    statuses = []
    with bar:
        task = bar.add_task("shards", total=len(todo))
        if executor == "local":
            for shard in todo:
                statuses.append(run_shard(str(out), shard.config.model_dump_json(), sae))
                bar.advance(task)
        elif executor == "processes":
            import multiprocessing

            context = multiprocessing.get_context("spawn")
            pool = ProcessPoolExecutor(
                max_workers=workers, mp_context=context, initializer=worker_setup, initargs=(os.getpid(),)
            )
            with pool:
                futures = [pool.submit(run_shard, str(out), shard.config.model_dump_json(), sae) for shard in todo]
                for future in as_completed(futures):
                    statuses.append(future.result())
                    bar.advance(task)
        else:
            statuses = _dask(out, todo, sae, client, lambda: bar.advance(task))
    return statuses


CONNECT_SECONDS = 10  # how long a Dask scheduler is waited for


def _connect(scheduler: str):
    """A client of an existing Dask cluster (a context manager), or one line saying why not."""
    try:
        from distributed import Client
    except ImportError:
        raise ConfigError("executor: dask needs the distributed package: pip install 'dask[distributed]'") from None
    try:
        return Client(scheduler, timeout=CONNECT_SECONDS)
    except (OSError, ValueError, TypeError) as error:
        raise ConfigError(f"scheduler: cannot reach {scheduler!r} ({error})") from None


def _dask(out: Path, todo: list[Shard], sae: bool, client, advance) -> list[dict[str, Any]]:
    """Shards on an existing Dask cluster. Workers write the shards themselves, so OUT must be
    storage that every worker sees at the same path (a shared filesystem); the client only
    collects their statuses."""
    from distributed import as_completed as completed

    futures = [client.submit(run_shard, str(out.resolve()), shard.config.model_dump_json(), sae, pure=False) for shard in todo]
    statuses = []
    for future in completed(futures):
        statuses.append(future.result())
        advance()
    return statuses


def write_results(out: Path, spec: dict[str, Any], shards: list[Shard]) -> None:
    """results.csv from the shards on disk: one row per grid point, failed or missing ones marked."""
    import csv
    import io

    from .sae_sweep import rows as sae_rows

    rows = []
    for shard in shards:
        directory = out / "shards" / shard.key
        metrics = json.loads((directory / "metrics.json").read_text())["instances"] if is_complete(directory) else None
        failed = out / "failed" / f"{shard.key}.json"
        status = "ok" if metrics else ("failed: " + json.loads(failed.read_text())["reason"]) if failed.is_file() else "missing"
        rows += (sae_rows if is_sae(spec) else _rows)(shard, list(spec["axes"]), metrics, status)
    columns = list(dict.fromkeys(c for row in rows for c in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(out / RESULTS, buffer.getvalue())


def _rows(shard: Shard, axes: list[str], metrics: list[dict[str, Any]] | None, status: str) -> list[dict[str, Any]]:
    """One toy model per row: its grid point, where it was trained, and its metrics (NaN where missing)."""
    rows = []
    for k, point in enumerate(shard.points):
        row = {name: point[name] for name in axes}
        row.update(base_instance=point["base_instance"], shard=shard.key, instance=k, status=status)
        m = metrics[k] if metrics else {}
        norms = m.get("feature_norms", [math.nan] * shard.config.features)
        row.update(
            loss=m.get("loss", math.nan),
            represented=m.get("represented", math.nan),
            dimensions_per_feature=m.get("dimensions_per_feature", math.nan),
            # a finite training set: a dataset_size axis is the double-descent sweep
            **({k: m.get(k, math.nan) for k in ("train_loss", "test_loss")} if shard.config.dataset_size else {}),
            **{f"norm_{i}": v for i, v in enumerate(norms)},
        )
        rows.append(row)
    return rows


def load_sweep(path: str | os.PathLike[str]):
    """The results table of a sweep directory, as a pandas DataFrame: a row per model (per SAE).

    Each row's shard is checked against the checksums written with it: a row whose shard
    was deleted or changed since results.csv was written has the status `missing` or
    `corrupted: FILE`, never `ok`."""
    import pandas
    from pandas.api.types import is_numeric_dtype

    path = Path(path)
    if not (path / RESULTS).is_file():
        raise ConfigError(f"sweep: {path} has no {RESULTS}; run `superposition sweep SPEC --out {path}`")
    try:
        table = pandas.read_csv(path / RESULTS, dtype={"shard": str})  # a key may look like a number
    except (ValueError, UnicodeDecodeError, pandas.errors.ParserError, pandas.errors.EmptyDataError) as error:
        raise ConfigError(f"sweep: {path}/{RESULTS} is not a readable CSV ({str(error).splitlines()[0]})") from None
    scores = ("mmcs", "l0") if "mmcs" in table.columns else ("represented", "dimensions_per_feature")
    needed = ("shard", "instance", "status", "loss", *scores)
    if missing := [c for c in needed if c not in table.columns]:
        raise ConfigError(f"sweep: {path}/{RESULTS} lacks the column {missing[0]!r}; run the sweep again to rebuild it")
    if not all(is_numeric_dtype(table[c]) for c in needed if c not in ("shard", "status")):
        raise ConfigError(f"sweep: {path}/{RESULTS} holds text where numbers belong; run the sweep again to rebuild it")
    for key in table.loc[table["status"] == "ok", "shard"].unique():
        shard = path / "shards" / str(key)
        if not shard.is_dir():
            table.loc[table["shard"] == key, "status"] = "missing"
        elif not is_complete(shard):
            table.loc[table["shard"] == key, "status"] = f"corrupted: {(corrupted(shard) or [MARKER])[0]}"
    return table
