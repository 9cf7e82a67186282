"""`superposition report DIR`: one self-contained report.html for a run, a sweep or a
`reproduce` output. Every figure is embedded as a PNG data URI, so the page opens
offline and can be mailed as one file.

The page records its own health for automated checks: a tiny inline script notes
script errors and, once loaded, whether every image decoded (naturalWidth > 0), in
the `data-check` attribute of <body>.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from .config import ConfigError
from .files import CONFIG, REPRODUCTION, kind_of, verify, write_atomic

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; max-width: 1400px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
td, th { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; } td.text { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
pre { background: #f7f7f7; padding: 1em; overflow-x: auto; font-size: 0.85em; }
.no { color: #b00; font-weight: bold; }
"""
CHECK = """
<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || e.type)));
const oldError = console.error;
console.error = (...args) => { window.__errors.push(args.join(' ')); oldError(...args); };
window.addEventListener('load', () => {
  const images = Array.from(document.images).map(i => i.naturalWidth);
  document.body.dataset.check = JSON.stringify({errors: window.__errors, images: images});
});
</script>
"""


def write(directory: Path, x: str | None = None, y: str | None = None) -> Path:
    """Write DIR/report.html for whatever DIR holds; return its path."""
    directory = Path(directory)
    kind = kind_of(directory)
    if kind == "sweep":
        title, body = f"Sweep {directory.name}", _sweep(directory, x, y)
    elif kind == "reproduction":
        title, body = f"Reproduction {directory.name}", _reproduction(directory)
    elif kind == "run":
        title, body = f"Run {directory.name}", _run(directory)
    elif kind == "sae":
        title, body = f"SAEs {directory.name}", _sae(directory)
    else:
        raise ConfigError(f"report: {directory} is not a run, an SAE, a sweep or a reproduce output")
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style>{CHECK}</head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    path = directory / "report.html"
    write_atomic(path, page)
    return path


def _tick(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, (int, float, np.number)) else str(value)


def _image(png: bytes, alt: str) -> str:
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"


def _figure(fig, alt: str) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return _image(buffer.getvalue(), alt)


def _table(rows: list[dict[str, Any]], limit: int | None = None) -> str:
    if not rows:
        return "<p>(no rows)</p>"
    columns = list(dict.fromkeys(c for row in rows for c in row))
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = []
    for row in rows[:limit]:
        cells = []
        for c in columns:
            value = row.get(c, "")
            if isinstance(value, float):
                text, cls = f"{value:.4g}", ""
            else:
                text, cls = str(value), " class='text'"
            if value is False:
                cls = " class='no'"
            cells.append(f"<td{cls}>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    more = f"<p>… {len(rows) - limit} more rows in the CSV</p>" if limit and len(rows) > limit else ""
    return f"<table><tr>{head}</tr>{''.join(body)}</table>{more}"


def _run(directory: Path) -> str:
    from .labels import describe, metric_legend, metric_rows
    from .models import KINDS
    from .plots import figure
    from .runs import load_run

    run = load_run(directory)
    rows = metric_rows(run.config, run.metrics)
    legend = metric_legend(run.config)
    names = KINDS[run.config.model].figures + (("polygon",) if run.config.hidden == 2 else ())
    figures = "".join(_figure(figure(name, run.config, run.params), name) for name in names)
    return (
        f"<p>{html.escape(describe(run.config))}</p><h2>Metrics</h2>{_table(rows)}<p>{html.escape(legend)}</p>"
        f"<h2>Figures</h2>{figures}"
        f"<h2>Config</h2><pre>{html.escape((directory / CONFIG).read_text())}</pre>"
    )


def _sae(directory: Path) -> str:
    from .labels import describe_sae
    from .saes.plots import FIGURES, applies, figure
    from .saes.runs import load_sae

    sae = load_sae(directory)
    figures = "".join(_figure(figure(name, sae), name) for name in FIGURES if applies(name, sae.config))
    return (
        f"<p>{html.escape(describe_sae(sae.config))}</p><h2>Scores</h2>{_table(sae.metrics['instances'])}"
        f"<h2>Figures</h2>{figures or '<p>(none apply: d_in is not 2 and there is one setting)</p>'}"
        f"<h2>Config</h2><pre>{html.escape((directory / CONFIG).read_text())}</pre>"
    )


def _summary(directory: Path) -> dict[str, Any]:
    """reproduction.json, checked against its checksum and for the structure read below."""
    verify(directory, "reproduction", "report")
    try:
        summary = json.loads((directory / REPRODUCTION).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"report: {directory}/{REPRODUCTION} is unreadable ({error})") from None
    keys = ("claim", "paper", "ours", "holds")
    ok = isinstance(summary, dict) and (
        (summary.get("preset") == "all" and isinstance(summary.get("presets"), list)
         and all(isinstance(name, str) and "/" not in name for name in summary["presets"]))
        or (isinstance(summary.get("claims"), list) and isinstance(summary.get("table", []), list)
            and all(isinstance(c, dict) and all(k in c for k in keys) for c in summary["claims"]))
    )  # fmt: skip
    if not ok:
        raise ConfigError(f"report: {directory}/{REPRODUCTION} does not have the structure of a reproduce summary")
    return summary


def _reproduction(directory: Path) -> str:
    summary = _summary(directory)
    if summary.get("preset") == "all":
        return "".join(
            f"<h2>{html.escape(name)}</h2>{_reproduction(directory / name)}" for name in summary["presets"]
        )
    claims = [
        {"claim": c["claim"], "paper": c["paper"], "ours": c["ours"], "holds": c["holds"]} for c in summary["claims"]
    ]
    images = "".join(_image(p.read_bytes(), p.stem) for p in sorted(directory.glob("*.png")))
    options = {k: summary.get(k) for k in ("preset", "quick", "restarts", "overrides", "package_version", "wall_seconds")}
    legend = f"<p>{html.escape(summary['legend'])}</p>" if summary.get("legend") else ""
    return (
        f"<h3>Claims</h3>{_table(claims)}{legend}<h3>Figures</h3>{images}<h3>Table</h3>{_table(summary.get('table', []))}"
        f"<h3>Options</h3><pre>{html.escape(json.dumps(options, indent=2))}</pre>"
    )


def _sae_sweep(directory: Path, table, spec: dict[str, Any]) -> str:
    from .saes.plots import sweep_figure
    from .sweeps.sae_sweep import source

    ok = table[table["status"] == "ok"]
    parts = [_counts(table)]
    if len(ok):
        fig = sweep_figure(table, source(directory, table))
        parts.append(f"<h2>MMCS and L0 against the penalty, per kind</h2>{_figure(fig, 'MMCS and L0 against the penalty')}")
    parts.append(f"<h2>Results</h2>{_table(table.to_dict('records'), limit=200)}")
    parts.append(f"<h2>Spec</h2><pre>{html.escape(json.dumps(spec, indent=2))}</pre>")
    return "".join(parts)


def _counts(table) -> str:
    """How many rows are ok, failed, missing or corrupted, and which shards are not there or not intact."""
    status = table["status"]
    text = (
        f"<p>{len(table)} grid points, {int((status == 'ok').sum())} ok, "
        f"{int(status.str.startswith('failed').sum())} failed, "
        f"{int((status == 'missing').sum())} missing, "
        f"{int(status.str.startswith('corrupted').sum())} corrupted.</p>"
    )
    lost = table[(status == "missing") | status.str.startswith("corrupted")].drop_duplicates("shard")
    if len(lost):
        items = "".join(f"<li>shards/{html.escape(str(r.shard))}: {html.escape(r.status)}</li>" for r in lost.itertuples())
        text += (
            "<p class='no'>These shards are not on disk as the sweep wrote them (deleted, or changed since); "
            "their rows are not reported. Run the sweep again to train them anew:</p>"
            f"<ul>{items}</ul>"
        )
    return text


def _sweep(directory: Path, x: str | None, y: str | None) -> str:
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    from .sweeps.sweep import load_sweep
    from .analysis.theory import PHASE_COLOURS, observed_phase

    from pandas.api.types import is_numeric_dtype

    table = load_sweep(directory)
    try:
        spec = json.loads((directory / "spec.json").read_text())
        axes = [str(a) for a in spec["axes"]]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        raise ConfigError(f"report: {directory}/spec.json is missing or corrupted") from None
    if "sae" in spec:
        if x or y:
            raise ConfigError("report: --x and --y draw a toy-model sweep's phase diagram; an SAE sweep has none")
        return _sae_sweep(directory, table, spec)
    if missing := [a for a in axes if a not in table.columns]:
        raise ConfigError(f"report: {directory}/results.csv has no column for the axis {missing[0]!r}")
    numeric = [a for a in axes if is_numeric_dtype(table[a]) and table[a].nunique() > 1 and a != "seed"]
    x = x or next((a for a in numeric[1:] + numeric[:1] if a != y), None)
    y = y or next((a for a in numeric if a != x), None)
    if x is not None and x == y:
        raise ConfigError(f"report: --x and --y are both {x!r}; give two different axes")
    for name in (x, y):
        if name is not None and name not in axes:
            raise ConfigError(f"report: {name!r} is not an axis of this sweep; choose from {', '.join(axes)}")
    ok = table[table["status"] == "ok"]
    parts = [_counts(table)]
    if x and y and len(ok):
        # best of the seeds in each cell, as the paper keeps the lowest-loss run
        best = ok.loc[ok.groupby([y, x])["loss"].idxmin()]
        norms = best[[c for c in best.columns if c.startswith("norm_")]].to_numpy()
        phase = observed_phase(norms)
        grid = best.assign(phase=phase).pivot(index=y, columns=x, values="phase").sort_index(ascending=False)
        fig = Figure(figsize=(6, 4.8))
        ax = fig.subplots()
        ax.imshow(grid.to_numpy(), cmap=ListedColormap(PHASE_COLOURS), vmin=0, vmax=2, aspect="auto")
        ax.set_xticks(range(len(grid.columns)), [_tick(v) for v in grid.columns], rotation=90, fontsize=7)
        ax.set_yticks(range(len(grid.index)), [_tick(v) for v in grid.index], fontsize=7)
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.set_title("last feature: grey not learned, blue learned alone, red all in superposition", fontsize=8)
        parts.append(f"<h2>Phase diagram over {html.escape(y)} × {html.escape(x)}</h2>{_figure(fig, 'phase diagram')}")
    density = "density" if "density" in axes else "sparsity" if "sparsity" in axes else None
    if density and len(ok):
        fig = Figure(figsize=(11, 4))
        left, right = fig.subplots(1, 2)
        means = ok.groupby(density)[["dimensions_per_feature", "represented"]].mean()
        for ax, column, label in ((left, "dimensions_per_feature", "D*"), (right, "represented", "represented features")):
            ax.plot(means.index, means[column], "o-", ms=3)
            ax.set_xscale("log")
            ax.set_xlabel(density)
            ax.set_ylabel(f"{label} (mean over the other axes)")
        parts.append(f"<h2>D* and represented features against {density}</h2>{_figure(fig, 'D* and represented')}")
    parts.append(f"<h2>Results</h2>{_table(table.to_dict('records'), limit=200)}")
    parts.append(f"<h2>Spec</h2><pre>{html.escape(json.dumps(spec, indent=2))}</pre>")
    return "".join(parts)
