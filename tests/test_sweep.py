"""Sweeps: planning, resuming, corruption, kills, locks, failures, bad specs."""

import fcntl
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from superposition import load_sweep
from superposition.config import ConfigError
from superposition.sweeps.sweep import plan, read_spec, sweep

SPEC = """
[base]
features = {features}
hidden = {hidden}
steps = {steps}
batch_size = 256

[axes]
density = {{ log = [1, 0.01, 4] }}
importance_last = [0.5, 2.0]
seed = {seeds}
"""


def _spec(tmp_path, steps=200, seeds="[0, 1]", name="spec.toml", features=2, hidden=1):
    path = tmp_path / name
    path.write_text(SPEC.format(steps=steps, seeds=seeds, features=features, hidden=hidden))
    return path


def test_plan_packs_instance_axes_into_shards(tmp_path):
    shards = plan(read_spec(_spec(tmp_path)))
    assert len(shards) == 2  # one per seed
    first = shards[0]
    assert first.config.instances == 8 and first.config.seed == 0
    assert first.config.feature_probability[-1] == pytest.approx([0.01, 0.01])
    assert first.config.importance[1] == [1.0, 2.0]  # importance_last replaces the last feature's
    assert len({s.key for s in shards}) == 2


def test_sweep_runs_resumes_and_tabulates(tmp_path):
    spec, out = _spec(tmp_path), tmp_path / "out"
    assert sweep(spec, out) == {"shards": 2, "trained": 2, "skipped": 0, "failed": []}
    table = load_sweep(out)
    assert len(table) == 16 and (table["status"] == "ok").all()
    assert set(table.columns) >= {"density", "importance_last", "seed", "loss", "represented", "norm_0", "norm_1"}
    assert not table.duplicated(["density", "importance_last", "seed"]).any()
    before = {p: p.stat().st_mtime_ns for p in (out / "shards").iterdir()}
    assert sweep(spec, out)["skipped"] == 2
    assert {p: p.stat().st_mtime_ns for p in (out / "shards").iterdir()} == before
    assert load_sweep(out).equals(table)


def test_corrupted_shard_is_trained_again(tmp_path):
    spec, out = _spec(tmp_path), tmp_path / "out"
    sweep(spec, out)
    table = load_sweep(out)
    victim = sorted((out / "shards").iterdir())[0]
    weights = victim / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-16])
    assert sweep(spec, out) == {"shards": 2, "trained": 1, "skipped": 1, "failed": []}
    assert load_sweep(out).equals(table)  # training is deterministic: the same numbers come back


def test_kill_and_resume_equals_an_uninterrupted_sweep(tmp_path):
    # shards of 8 models of 20 features, ~0.4 s each: slow enough to kill one mid-sweep
    spec = _spec(tmp_path, steps=4000, seeds="[0, 1, 2, 3]", features=20, hidden=5)
    whole = tmp_path / "whole"
    sweep(spec, whole)
    killed = tmp_path / "killed"
    command = [sys.executable, "-m", "superposition", "sweep", str(spec), "--out", str(killed), "--quiet"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not any((killed / "shards").glob("[0-9a-f]*")):
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    finished = [p for p in (killed / "shards").iterdir() if not p.name.startswith(".")]
    assert 1 <= len(finished) < 4, "the kill should land mid-sweep"
    report = sweep(spec, killed)
    assert report["skipped"] == len(finished) and report["trained"] == 4 - len(finished)
    assert load_sweep(killed).equals(load_sweep(whole))


def test_a_second_sweep_on_the_same_directory_is_refused(tmp_path):
    spec, out = _spec(tmp_path), tmp_path / "out"
    with open(tmp_path / ".out.lock", "a+") as handle:  # as a running sweep holds it
        fcntl.flock(handle, fcntl.LOCK_EX)
        with pytest.raises(ConfigError, match="being written by another process"):
            sweep(spec, out)
    assert not out.exists()


def test_changed_spec_is_refused_unless_forced(tmp_path):
    out = tmp_path / "out"
    sweep(_spec(tmp_path), out)
    other = _spec(tmp_path, steps=150, name="other.toml")
    with pytest.raises(ConfigError, match=r"base\.steps"):
        sweep(other, out)
    assert sweep(other, out, force=True)["trained"] == 2


def test_diverging_shard_is_marked_failed_and_retried(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(
        "[base]\nfeatures = 2\nhidden = 1\nsteps = 50\nbatch_size = 64\n"
        "[axes]\ndensity = [1.0]\nlr = [1e-3, 1e38]\n"
    )
    out = tmp_path / "out"
    report = sweep(spec, out)
    assert report["trained"] == 1 and len(report["failed"]) == 1
    table = load_sweep(out)
    assert (table["status"] == "ok").sum() == 1
    assert table["status"].str.startswith("failed: non-finite weights or loss").sum() == 1
    assert sweep(spec, out)["failed"] == report["failed"]  # skipped, still reported
    record = out / "failed" / f"{report['failed'][0]}.json"
    first = json.loads(record.read_text())["at"]
    assert sweep(spec, out, retry_failed=True)["failed"] == report["failed"]
    assert json.loads(record.read_text())["at"] > first  # it was trained again


def test_process_executor_matches_local(tmp_path):
    spec = _spec(tmp_path)
    sweep(spec, tmp_path / "local")
    sweep(spec, tmp_path / "processes", executor="processes", workers=2)
    assert load_sweep(tmp_path / "processes").equals(load_sweep(tmp_path / "local"))


@pytest.mark.parametrize(
    "text, field",
    [
        ("[base]\nfeatures = 2\n[axes]\nbogus = [1]\n", "axes.bogus"),
        ("[base]\nfeatures = 2\n[axes]\ndensity = []\n", "empty axis"),
        ("[base]\nfeatures = 2\n[axes]\ndensity = { log = [1, 0.1] }\n", "start, stop, count"),
        ("[base]\nfeatures = 'two'\n[axes]\ndensity = [0.5]\n", "features"),
        ("[base]\nfeaturez = 2\n[axes]\ndensity = [0.5]\n", "base.featurez"),
        ("[base]\nfeatures = 2\n[axes]\ndensity = [0.5]\n[extra]\n", "extra"),
        ("[base]\nfeatures = 2\n[axes]\ndensity = [1.5]\n", "feature_probability"),
    ],
)
def test_bad_spec_one_line_exit_2_nothing_written(tmp_path, cli, text, field):
    spec = tmp_path / "spec.toml"
    spec.write_text(text)
    code, _, err = cli("sweep", spec, "--out", tmp_path / "out")
    assert code == 2 and len(err.strip().splitlines()) == 1 and field in err, err
    assert sorted(os.listdir(tmp_path)) == ["spec.toml"]


def test_dask_executor_on_a_local_cluster(tmp_path):
    import distributed  # in the dev extras, so make test always has it
    spec = _spec(tmp_path)
    sweep(spec, tmp_path / "local")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        report = sweep(spec, tmp_path / "dask", executor="dask", scheduler=cluster.scheduler_address)
    assert report["trained"] == 2
    assert load_sweep(tmp_path / "dask").equals(load_sweep(tmp_path / "local"))


def test_dask_needs_a_scheduler(tmp_path):
    with pytest.raises(ConfigError, match="--scheduler"):
        sweep(_spec(tmp_path), tmp_path / "out", executor="dask")


def test_the_thousand_model_phase_sweep_on_dask(tmp_path):
    """examples/phase-2x1.toml (20 densities x 25 importances x 2 seeds) on a LocalCluster."""
    import distributed
    from pathlib import Path

    spec = Path(__file__).parent.parent / "examples" / "phase-2x1.toml"
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        report = sweep(spec, tmp_path / "phase", executor="dask", scheduler=cluster.scheduler_address)
    assert report == {"shards": 2, "trained": 2, "skipped": 0, "failed": []}
    table = load_sweep(tmp_path / "phase")
    assert len(table) == 1000 and (table["status"] == "ok").all()
    # the three phases of the paper's diagram all appear: dense and unimportant -> not learned,
    # dense and important -> learned alone (first dropped), sparse -> both in superposition
    def cell(density, importance):
        row = table[(table["density"].sub(density).abs() < 1e-9) & (table["importance_last"].sub(importance).abs() < 1e-9)]
        return row.loc[row["loss"].idxmin()]

    assert cell(1.0, 0.1)["norm_1"] < 0.5 < cell(1.0, 0.1)["norm_0"]
    assert cell(1.0, 10.0)["norm_0"] < 0.5 < cell(1.0, 10.0)["norm_1"]
    assert min(cell(0.01, 1.0)["norm_0"], cell(0.01, 1.0)["norm_1"]) > 0.5
