"""Presets of `superposition reproduce NAME`: each trains the runs of one experiment
(saved as ordinary run directories), draws its figures and checks its claims.

A preset is a module with `run(directory, options) -> Outcome`; `reproduce` wraps it
so that its output appears at once, complete, with `claims.json` and
`reproduction.json` beside the runs.
"""

from __future__ import annotations

import importlib
import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ..config import ConfigError, resolve
from ..files import REPRODUCTION, atomic_dir, check_output_dir, seal, to_json

# name -> module; `all` runs them in this order
PRESETS = ("seed", "intro", "importance-sparsity", "geometry", "phase", "nonuniform", "correlated", "privileged-basis", "computation", "adversarial", "sae", "absorption", "hedging", "synthsaebench", "llc", "double-descent-arena", "double-descent")
# all but the paper-size double descent, which takes 23 minutes here (docs/performance.md)
IN_ALL = PRESETS[:-1]


@dataclass
class Options:
    quick: bool = False  # a small version, for tests: under a minute
    restarts: int | None = None  # --seeds K: best of K copies per setting; None: the preset's default
    overrides: dict[str, Any] = field(default_factory=dict)  # config keys from the command line
    progress: bool = False
    check: bool = False  # resolve the preset's first config and stop: see `check`


@dataclass
class Claim:
    claim: str
    paper: str
    ours: str
    holds: bool
    note: str = ""  # what the run shows about why, where it does not hold

    def __post_init__(self) -> None:
        self.holds = bool(self.holds)  # numpy's bool is not JSON


@dataclass
class Outcome:
    claims: list[Claim]
    table: list[dict[str, Any]] = field(default_factory=list)  # rows a preset wants printed
    legend: str = ""  # what the table's and claims' terms mean, printed once beneath them


def mean_se(values: list[float]) -> tuple[float, float]:
    """The mean of some models' values and its standard error (their spread over √count)."""
    mean = sum(values) / len(values)
    spread = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else float("nan")
    return mean, spread / math.sqrt(len(values))


def sae_overrides(name: str, options: Options) -> dict[str, Any]:
    """The command line's overrides an SAE-only preset takes (seed, device, engine); any other is refused."""
    common = {k: v for k, v in options.overrides.items() if k in ("seed", "device", "engine")}
    if other := sorted(set(options.overrides) - set(common)):
        raise ConfigError(f"{other[0]}: the {name} preset trains SAEs on data of its own; it takes --seed, --device and --engine only")
    return common


def still_falling(history, instance: int) -> float:
    """Relative fall of an instance's training loss between the last two tenths of its steps.

    A few percent or more says the run had not converged when it stopped.
    """
    tenth = max(1, history.shape[0] // 10)
    before = float(history[-2 * tenth : -tenth, instance].mean())
    last = float(history[-tenth:, instance].mean())
    return (before - last) / before if before > 0 else 0.0


def fit(directory: Path, keys: dict[str, Any], options: Options, restarts: int = 1, figures: bool = True):
    """Resolve, train and record one run of a preset into `directory`, with the run's own
    figures unless the preset draws its own; return (result, metrics)."""
    from ..runs import record
    from ..training.loop import train

    config = resolve({**keys, "restarts": options.restarts or restarts, **options.overrides})
    if options.check:
        from ..training.engines import settle
        from ..training.loop import check_memory

        check_memory(settle(config))
        raise _Checked
    result = train(config, progress=options.progress)
    directory.mkdir(parents=True)
    return result, record(directory, result, figures)


def fit_all(jobs: list[tuple[Path, dict[str, Any], int]], options: Options) -> None:
    """Train and record every (directory, keys, restarts) of a preset, in the order given
    (put the longest first). Where the cores outnumber a run's copies (one copy on 2 cores),
    runs train side by side in worker processes of one thread each, as a sweep's shards do:
    a run's weights do not depend on where it trains, since each copy is one instance on one
    thread. Called from a script, that needs the `if __name__ == "__main__":` guard that any
    program starting processes needs."""
    restarts = max(options.restarts or k for _, _, k in jobs)
    cores = _cores()
    if cores <= restarts or options.check:
        for directory, keys, k in jobs:
            fit(directory, keys, options, restarts=k, figures=False)
        return
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from rich.progress import Progress

    from ..sweeps.sweep import worker_setup

    quiet, workers = replace(options, progress=False), min(cores, len(jobs))
    spawn = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(workers, mp_context=spawn, initializer=worker_setup, initargs=(os.getpid(),))
    with pool, Progress(transient=True, disable=not options.progress) as bar:
        task = bar.add_task(f"{len(jobs)} runs, {workers} at a time", total=len(jobs))
        futures = [pool.submit(_record, directory, keys, quiet, k) for directory, keys, k in jobs]
        try:
            for future in as_completed(futures):
                future.result()
                bar.advance(task)
        except BaseException:  # a failed run stops the preset, as it would in one process
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _record(directory: Path, keys: dict[str, Any], options: Options, restarts: int) -> None:
    fit(directory, keys, options, restarts, figures=False)  # the run is on disk: nothing to send back


def _cores() -> int:
    import os

    import torch

    # several processes on one GPU would contend for it rather than share the CPU's cores
    if torch.cuda.is_available():
        return 1
    # the cores this process may use (Linux); elsewhere every core
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class _Checked(Exception):
    """A preset's first config resolved with the command line's overrides."""


def check(name: str, options: Options) -> None:
    """Refuse, before anything trains, overrides that a preset's configs cannot take
    (`--data seed` where it correlates features, `--warm-start` where it restarts):
    the preset runs until its first config is resolved, training nothing."""
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        try:
            module(name).run(Path(scratch), replace(options, check=True))
        except _Checked:
            return
    raise RuntimeError(f"preset {name} finished without resolving a config")


def module(name: str):
    if name not in PRESETS:
        raise ConfigError(f"name: unknown preset {name!r}; choose one of {', '.join(PRESETS)} or all")
    return importlib.import_module(f".{name.replace('-', '_')}", __name__)


def reproduce(name: str, out: Path, options: Options) -> dict[str, Any]:
    """Run one preset into `out`; return what reproduction.json holds."""
    preset = module(name)
    with atomic_dir(out, "reproduction") as staging:
        started = time.perf_counter()
        outcome = preset.run(staging, options)
        from ..runs import package_version

        summary = {
            "preset": name,
            "quick": options.quick,
            "restarts": options.restarts,
            "overrides": options.overrides,
            "package_version": package_version(),
            "wall_seconds": time.perf_counter() - started,
            "claims": [asdict(c) for c in outcome.claims],
            "table": outcome.table,
            "legend": outcome.legend,
        }
        (staging / "claims.json").write_text(to_json(summary["claims"]))
        (staging / REPRODUCTION).write_text(to_json(summary))
        seal(staging, "reproduction", ("claims.json", REPRODUCTION))
    return json.loads(to_json(summary))


def reproduce_all(out: Path, options: Options, report: Path | None = None) -> list[dict[str, Any]]:
    """Every preset into out/NAME, then a report (default out/replication.md) of every claim."""
    summaries = []
    with atomic_dir(out, "reproduction") as staging:
        for name in IN_ALL:
            summaries.append(reproduce(name, staging / name, options))
        (staging / REPRODUCTION).write_text(to_json({"preset": "all", "presets": list(IN_ALL)}))
        if report is None:
            write_report(staging / "replication.md", staging, summaries)
        seal(staging, "reproduction", (REPRODUCTION,))
    if report is not None:
        write_report(report, out, summaries)
    return summaries


def report_figures(path: Path) -> Path:
    """The directory of a report's figures, beside it: `notes.md` has `notes_figures/`."""
    return Path(path).parent / f"{Path(path).stem}_figures"


def check_report_path(path: Path) -> None:
    """Refuse a report path (before any training) that would overwrite what is not ours."""
    path = Path(path)
    if path.is_dir() or path.is_symlink():
        raise ConfigError(f"report: {path} is a directory or a link; give a file name such as notes.md")
    check_output_dir(report_figures(path), "figures")


# a report's text from this line on is kept when `reproduce all` rewrites it: the sections of
# presets that are run apart (the paper-size double descent takes 23 minutes)
KEPT = "<!-- kept: the sections below are not written by `superposition reproduce all` -->"


def report_section(summary: dict[str, Any], preset: Path, figures: Path, path: Path) -> list[str]:
    """A preset's section of the report at `path`: claim | paper | ours | holds, the notes of
    claims that do not hold, and its figures, copied from its directory `preset` into
    `figures/NAME` (the report's figures directory)."""
    import shutil

    name = summary["preset"]
    mode = "quick" if summary["quick"] else "full"
    lines = [f"## {name}", "", f"{mode} run, {summary['wall_seconds']:.0f} s, package {summary['package_version']}.", ""]
    lines += ["| claim | paper | ours | holds |", "|---|---|---|---|"]
    for claim in summary["claims"]:
        cells = [claim["claim"], claim["paper"], claim["ours"], "yes" if claim["holds"] else "**no**"]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    lines.append("")
    for claim in summary["claims"]:
        if not claim["holds"] and claim.get("note"):
            lines.append(f"- *{claim['claim']}*: {claim['note']}")
    lines.append("")
    for png in sorted(Path(preset).glob("*.png")):
        target = Path(figures) / name / png.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, target)
        link = report_figures(path).relative_to(Path(path).parent) / name / png.name
        lines += [f"![{name}: {png.stem}]({link.as_posix()})", ""]
    return lines


def write_report(path: Path, out: Path, summaries: list[dict[str, Any]]) -> None:
    """claim | paper | ours | holds, per preset, with its figures (copied beside the report)."""
    from ..files import write_atomic

    path = Path(path)
    before = path.read_text() if path.is_file() else ""
    kept = before[before.index(KEPT) :] if KEPT in before else ""
    lines = [
        "# Toy Models of Superposition, replicated",
        "",
        "Written by `superposition reproduce all`; every number below was measured by the preset run its section names.",
        "",
    ]
    with atomic_dir(report_figures(path), "figures") as figures:  # the report's own: rebuilt every time
        for summary in summaries:
            lines += report_section(summary, Path(out) / summary["preset"], figures, path)
        seal(figures, "figures")
    claims = [claim for summary in summaries for claim in summary["claims"]]
    held, total = sum(claim["holds"] for claim in claims), len(claims)
    lines[2] += f" {held} of {total} claims hold."
    write_atomic(path, "\n".join(lines) + "\n" + kept)
