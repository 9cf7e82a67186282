"""Issue 8: one test per defect the hostile audit found, numbered as in the issue."""

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from superposition import load_run, load_sweep
from superposition.config import ConfigError
from superposition.files import MARKER, atomic_dir, seal
from superposition.runs import SEALED
from superposition.sweeps.sweep import plan, read_spec, sweep

SMALL = ["--features", "4", "--hidden", "2", "--sparsity", "0,0.9", "--steps", "30", "--quiet"]


def _one_line_error(code, err, status=2):
    assert code == status, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    assert "Traceback" not in err


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if any command gets as far as training."""
    import superposition.runs
    import superposition.training.loop

    def refuse(*args, **kwargs):
        raise AssertionError("training started although the input was bad")

    # the loop's own name and the one runs.py imports
    monkeypatch.setattr(superposition.training.loop, "train", refuse)
    monkeypatch.setattr(superposition.runs, "fit", refuse)


# 1 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("marker", ["config.json", "reproduction.json"])
@pytest.mark.parametrize("command", ["train", "reproduce"])
def test_1_out_never_replaces_a_directory_that_merely_holds_a_common_file_name(tmp_path, cli, no_training, marker, command):
    project = tmp_path / "proj"
    (project / "src").mkdir(parents=True)
    (project / marker).write_text('{"name": "app"}')
    (project / "src" / "main.py").write_text("code")
    before = _files(project)
    args = ["train", "--out", project, *SMALL] if command == "train" else ["reproduce", "seed", "--out", project, "--quiet"]
    code, _, err = cli(*args)
    _one_line_error(code, err)
    assert "not a superposition output" in err
    assert _files(project) == before and sorted(os.listdir(tmp_path)) == ["proj"]


# 2 ---------------------------------------------------------------------------------


def test_2_the_claims_report_never_replaces_a_users_figures_directory(tmp_path, cli, no_training):
    kept = tmp_path / "d" / "notes_figures"
    kept.mkdir(parents=True)
    (kept / "mine.png").write_bytes(b"precious")
    code, _, err = cli("reproduce", "all", "--quick", "--out", tmp_path / "all", "--report", tmp_path / "d" / "notes.md")
    _one_line_error(code, err)
    assert "notes_figures" in err
    assert (kept / "mine.png").read_bytes() == b"precious" and not (tmp_path / "all").exists()


# 3 ---------------------------------------------------------------------------------


def test_3_a_sweep_trains_every_instance_of_its_base(tmp_path, cli):
    base = "features = 4\nhidden = 2\nsteps = 40\nbatch_size = 64\nsparsity = [0.1, 0.5, 0.9]\n"
    spec = tmp_path / "spec.toml"
    spec.write_text(f"[base]\n{base}[axes]\nseed = [0, 1]\n")
    shards = plan(read_spec(spec))
    assert [s.config.instances for s in shards] == [3, 3]
    sweep(spec, tmp_path / "sweep")
    table = load_sweep(tmp_path / "sweep")
    assert len(table) == 6 and sorted(table["base_instance"]) == [0, 0, 1, 1, 2, 2]
    # each row is the model `train --config` trains from the same keys
    (tmp_path / "same.toml").write_text(base + "seed = 1\n")
    assert cli("train", "--config", tmp_path / "same.toml", "--out", tmp_path / "run", "--quiet")[0] == 0
    losses = [m["loss"] for m in load_run(tmp_path / "run").metrics["instances"]]
    rows = table[table["seed"] == 1].sort_values("base_instance")
    assert rows["loss"].tolist() == pytest.approx(losses, rel=1e-6)


def test_3_with_a_density_axis_the_base_importance_rows_make_the_instances(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(
        "[base]\nfeatures = 2\nhidden = 1\nsparsity = [0.1, 0.5, 0.9]\nimportance = [[1, 0.5], [1, 2]]\n"
        "[axes]\ndensity = [1.0, 0.1]\n"
    )
    (shard,) = plan(read_spec(spec))
    assert shard.config.feature_probability == [[1.0, 1.0], [1.0, 1.0], [0.1, 0.1], [0.1, 0.1]]
    assert shard.config.importance == [[1, 0.5], [1, 2]] * 2


# 4 ---------------------------------------------------------------------------------


def test_4_a_second_writer_of_the_same_run_is_refused(tmp_path, cli, no_training):
    out = tmp_path / "run"
    with atomic_dir(out, "run") as staging:  # a first writer, still training
        code, _, err = cli("train", "--out", out, *SMALL)
        _one_line_error(code, err)
        assert "being written by another process" in err
        seal(staging, "run")
    assert (out / MARKER).is_file()  # the first writer's result is whole
    assert sorted(os.listdir(tmp_path)) == ["run"]  # its lock file is gone too


# 5 ---------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table from /proc")
def test_5_killing_a_process_sweep_kills_its_workers(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text("[base]\nfeatures = 40\nhidden = 10\nsteps = 200000\nbatch_size = 1024\n[axes]\nseed = [0, 1, 2, 3]\n")
    main = subprocess.Popen(
        [sys.executable, "-m", "superposition", "sweep", str(spec), "--out", str(tmp_path / "out"),
         "--executor", "processes", "--workers", "2", "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while len(workers := [p for p in _children(main.pid) if _alive(p)]) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(workers) >= 2, "the sweep should have started its workers"
        time.sleep(2)  # let them import and start training
        main.send_signal(signal.SIGKILL)
        main.wait()
        deadline = time.monotonic() + 10
        while any(map(_alive, workers)) and time.monotonic() < deadline:
            time.sleep(0.1)
        survivors = [p for p in workers if _alive(p)]
    finally:
        for pid in _children(main.pid):
            os.kill(pid, signal.SIGKILL)
    assert survivors == [], "workers outlived their sweep"
    shards = tmp_path / "out" / "shards"
    assert not shards.exists() or [p.name for p in shards.iterdir() if not p.name.startswith(".")] == []


# 6 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["metrics", "plot", "report"])
def test_6_corrupted_weights_are_refused_by_every_reader(tmp_path, cli, command):
    assert cli("train", "--out", tmp_path / "run", *SMALL)[0] == 0
    weights = tmp_path / "run" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    for k in range(len(data) - 100, len(data)):  # inside the tensors, past the header
        data[k] ^= 0x5A
    weights.write_bytes(bytes(data))
    code, _, err = cli(command, tmp_path / "run")
    _one_line_error(code, err)
    assert "model.safetensors" in err and "checksum" in err


# 7 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--lr", "--weight-decay", "--early-stop"])
@pytest.mark.parametrize("value", ["inf", "nan", "-inf"])
def test_7_non_finite_hyperparameters_are_refused(tmp_path, cli, no_training, flag, value):
    code, _, err = cli("train", "--out", tmp_path / "run", *SMALL, flag, value)
    _one_line_error(code, err)
    assert flag.lstrip("-").replace("-", "_") in err and not (tmp_path / "run").exists()


def test_7_a_run_that_diverges_is_a_failure_and_writes_nothing(tmp_path, cli):
    code, _, err = cli("train", "--out", tmp_path / "run", *SMALL, "--lr", "1e30")
    _one_line_error(code, err, status=1)
    assert "diverged" in err and os.listdir(tmp_path) == []


@pytest.mark.parametrize("engine", ["fused", "reference"])
def test_7_a_shard_that_blows_up_on_its_last_update_is_failed(tmp_path, engine):
    # one step: the loss is taken before the update that blows up; the reference engine's
    # foreach Adam (torch's choice on CUDA) refuses that update instead of writing inf
    spec = tmp_path / "spec.toml"
    base = f"features = 2\nhidden = 1\nsteps = 1\nengine = '{engine}'\ndevice = 'cpu'\n"
    spec.write_text(f"[base]\n{base}[axes]\nlr = [1e38]\n")
    report = sweep(spec, tmp_path / "out")
    assert report["trained"] == 0 and len(report["failed"]) == 1
    assert load_sweep(tmp_path / "out")["status"].str.startswith("failed").all()


def test_7_every_json_file_we_write_is_strict(tmp_path, cli):
    assert cli("train", "--out", tmp_path / "run", *SMALL)[0] == 0

    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    for path in (tmp_path / "run").glob("*.json"):
        json.loads(path.read_text(), parse_constant=refuse)


# 8: tests/test_fused.py::test_weights_do_not_depend_on_the_compiled_cache


# 9 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("lost", ["config.json", MARKER])
def test_9_a_shard_that_lost_a_file_is_trained_again(tmp_path, lost):
    spec = tmp_path / "spec.toml"
    spec.write_text("[base]\nfeatures = 2\nhidden = 1\nsteps = 30\nbatch_size = 64\n[axes]\nseed = [0, 1]\n")
    sweep(spec, tmp_path / "out")
    whole = load_sweep(tmp_path / "out")
    shard = next((tmp_path / "out" / "shards").iterdir())
    (shard / lost).unlink()
    report = sweep(spec, tmp_path / "out")
    assert (report["trained"], report["skipped"], report["failed"]) == (1, 1, [])
    assert load_sweep(tmp_path / "out").equals(whole)


# 10 --------------------------------------------------------------------------------


def test_10_report_on_a_sweep_with_a_text_axis(tmp_path, cli):
    spec = tmp_path / "spec.toml"
    spec.write_text(
        "[base]\nfeatures = 2\nhidden = 1\nsteps = 30\nbatch_size = 64\n"
        '[axes]\ndensity = [1.0, 0.1]\noptimizer = ["adam", "adamw"]\n'
    )
    sweep(spec, tmp_path / "out")
    for extra in ([], ["--x", "optimizer", "--y", "density"]):
        code, out, err = cli("report", tmp_path / "out", *extra)
        assert code == 0, err
    assert "Phase diagram" in (tmp_path / "out" / "report.html").read_text()


# 11 --------------------------------------------------------------------------------


def test_11_replacing_a_run_is_one_atomic_step(tmp_path, cli, monkeypatch):
    from superposition import files

    assert cli("train", "--out", tmp_path / "run", *SMALL)[0] == 0

    replace = os.replace

    def files_only(source, target):  # the old way renamed the old run away, then the new one in
        assert not Path(source).is_dir(), "a replacement took more than one step"
        replace(source, target)

    monkeypatch.setattr(files.os, "replace", files_only)
    monkeypatch.setattr(files.os, "rename", files_only)
    code, _, err = cli("train", "--out", tmp_path / "run", *SMALL, "--seed", "7")
    assert code == 0, err
    assert load_run(tmp_path / "run").config.seed == 7
    assert sorted(os.listdir(tmp_path)) == ["run"]


# 12 --------------------------------------------------------------------------------


def test_12_output_problems_are_found_before_training(tmp_path, cli, no_training, monkeypatch):
    (tmp_path / "file").write_text("x")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    cases = {
        "is not a directory": ["--out", tmp_path / "file" / "run"],
        "symbolic link": ["--out", tmp_path / "dangling"],
        "exists and is not a directory": ["--out", tmp_path / "file"],
    }
    for expected, args in cases.items():
        code, _, err = cli("train", *args, *SMALL)
        _one_line_error(code, err)
        assert expected in err
    monkeypatch.chdir(tmp_path)
    for here in (".", "..", str(tmp_path)):
        code, _, err = cli("train", "--out", here, *SMALL)
        _one_line_error(code, err)
        assert "current directory" in err
    code, _, err = cli("train", "--out", tmp_path / "run", *SMALL, "--seed", str(2**64))
    _one_line_error(code, err)
    assert "seed" in err
    code, _, err = cli("train", "--out", tmp_path / "run", *SMALL, "--eval-batch-size", str(2**31 - 1))
    _one_line_error(code, err)
    assert "GiB of memory" in err
    assert sorted(os.listdir(tmp_path)) == ["dangling", "file"]


def test_12_a_full_disk_is_found_before_training(tmp_path, cli, no_training, monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    code, _, err = cli("train", "--out", tmp_path / "run", *SMALL)
    _one_line_error(code, err)
    assert "MiB free" in err and os.listdir(tmp_path) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_12_a_read_only_parent_is_found_before_training(tmp_path, cli, no_training):
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        code, _, err = cli("train", "--out", parent / "run", *SMALL)
    finally:
        parent.chmod(stat.S_IRWXU)
    _one_line_error(code, err)
    assert "cannot write" in err


# 13 --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, content, expected",
    [
        ("bad.toml", b"\xff\xfe\x00binary\x81", "not a text file"),
        ("list.json", b"[1, 2, 3]", "table of keys"),
        ("string.json", b'"hello"', "table of keys"),
        ("deep.json", b"[" * 100000, "not valid JSON"),
    ],
)
def test_13_malformed_config_files(tmp_path, cli, no_training, name, content, expected):
    (tmp_path / name).write_bytes(content)
    code, _, err = cli("train", "--config", tmp_path / name, "--out", tmp_path / "run")
    _one_line_error(code, err)
    assert expected in err and not (tmp_path / "run").exists()


def _reseal(run: Path) -> None:
    seal(run, "run", SEALED)


@pytest.mark.parametrize(
    "damage, expected",
    [
        ("float64", "torch.float64"),
        ("metrics", "wrong type"),
    ],
)
def test_13_run_files_of_the_wrong_kind(tmp_path, cli, damage, expected):
    from safetensors.torch import load, save

    run = tmp_path / "run"
    assert cli("train", "--out", run, *SMALL)[0] == 0
    if damage == "float64":
        params = load((run / "model.safetensors").read_bytes())
        (run / "model.safetensors").write_bytes(save({k: v.double() for k, v in params.items()}))
    else:
        metrics = json.loads((run / "metrics.json").read_text())
        metrics["instances"][1]["loss"] = "low"
        (run / "metrics.json").write_text(json.dumps(metrics))
    _reseal(run)
    for command in ("metrics", "plot", "report"):
        code, _, err = cli(command, run)
        _one_line_error(code, err)
        assert expected in err


def test_13_sweep_files_of_the_wrong_structure(tmp_path, cli):
    spec = tmp_path / "spec.toml"
    spec.write_text("[base]\nfeatures = 2\nhidden = 1\nsteps = 30\nbatch_size = 64\n[axes]\nseed = [0]\n")
    out = tmp_path / "out"
    sweep(spec, out)
    (out / "results.csv").write_text("a,b\n1,2\n")
    code, _, err = cli("report", out)
    _one_line_error(code, err)
    assert "results.csv" in err
    (out / "spec.json").write_text("[1, 2]")
    code, _, err = cli("sweep", spec, "--out", out, "--quiet")
    _one_line_error(code, err)
    assert "spec.json is corrupted" in err


@pytest.mark.parametrize(
    "axes, expected",
    [
        ('density = ["a", "b"]', "axes.density"),
        ("density = [true]", "axes.density"),
        ("seed = [0.5]", "seed"),
        ('hidden = ["x"]', "hidden"),
        ("seed = [0, 0]", "appears twice"),
    ],
)
def test_13_spec_axes_with_values_of_the_wrong_type(tmp_path, cli, no_training, axes, expected):
    spec = tmp_path / "spec.toml"
    spec.write_text(f"[base]\nfeatures = 2\n[axes]\n{axes}\n")
    code, _, err = cli("sweep", spec, "--out", tmp_path / "out")
    _one_line_error(code, err)
    assert expected in err and not (tmp_path / "out").exists()


def test_13_a_malformed_dask_address(tmp_path, cli, no_training):
    spec = tmp_path / "spec.toml"
    spec.write_text("[base]\nfeatures = 2\nsteps = 10\n[axes]\nseed = [0]\n")
    code, _, err = cli("sweep", spec, "--out", tmp_path / "out", "--executor", "dask", "--scheduler", "::not an address::")
    _one_line_error(code, err)
    assert "scheduler" in err


def test_13_plot_out_onto_an_existing_file(tmp_path, cli):
    assert cli("train", "--out", tmp_path / "run", *SMALL)[0] == 0
    (tmp_path / "taken").write_text("mine")
    code, _, err = cli("plot", tmp_path / "run", "--out", tmp_path / "taken")
    _one_line_error(code, err)
    assert (tmp_path / "taken").read_text() == "mine"


# 14 --------------------------------------------------------------------------------


def test_14_leftovers_of_killed_writers_are_cleaned(tmp_path, cli):
    for stale in (".run.partial-abc123", ".run.old-def456"):
        (tmp_path / stale / "old").mkdir(parents=True)
    assert cli("train", "--out", tmp_path / "run", *SMALL)[0] == 0
    assert sorted(os.listdir(tmp_path)) == ["run"]
    spec = tmp_path / "spec.toml"
    spec.write_text("[base]\nfeatures = 2\nhidden = 1\nsteps = 20\nbatch_size = 64\n[axes]\nseed = [0]\n")
    sweep(spec, tmp_path / "out")
    (tmp_path / "out" / ".results.csv.x1y2.tmp").write_text("half")
    sweep(spec, tmp_path / "out")
    assert not list((tmp_path / "out").glob(".*.tmp"))


@pytest.mark.parametrize(
    "toml, expected",
    [
        ("steps = true", "steps"),
        ('warm_start = "yes"', "warm_start"),
        ("features = 20.0", "features"),
        ('lr = "0.1"', "lr"),
        ("batch-size = 10\nbatch_size = 20", "given twice"),
    ],
)
def test_14_strict_types_and_one_spelling_per_key(tmp_path, cli, no_training, toml, expected):
    (tmp_path / "c.toml").write_text(toml + "\n")
    code, _, err = cli("train", "--config", tmp_path / "c.toml", "--out", tmp_path / "run")
    _one_line_error(code, err)
    assert expected in err


def test_14_sweep_axis_spellings_and_grid_size(tmp_path, cli, no_training):
    spec = tmp_path / "spec.toml"
    spec.write_text("[base]\nfeatures = 2\n[axes]\nimportance-last = [1]\nimportance_last = [2]\n")
    code, _, err = cli("sweep", spec, "--out", tmp_path / "out")
    _one_line_error(code, err)
    assert "given twice" in err
    spec.write_text("[base]\nfeatures = 2\n[axes]\ndensity = { log = [1, 0.01, 1000] }\nseed = { linear = [0, 999, 1000] }\n")
    code, _, err = cli("sweep", spec, "--out", tmp_path / "out")
    _one_line_error(code, err)
    assert "1,000,000 points" in err and not (tmp_path / "out").exists()


def test_14_too_many_instances_for_memory_are_refused_with_an_estimate(tmp_path, cli, no_training):
    sparsities = ",".join(["0.5"] * 2000)
    code, _, err = cli("train", "--out", tmp_path / "run", "--features", "1000", "--sparsity", sparsities, "--eval-batch-size", "100000")
    _one_line_error(code, err)
    assert "GiB of memory" in err and not (tmp_path / "run").exists()


def test_14_outputs_are_readable_by_the_group(tmp_path, cli):
    old = os.umask(0o022)
    try:
        assert cli("train", "--out", tmp_path / "run", *SMALL)[0] == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "run").stat().st_mode) == 0o755
    for path in (tmp_path / "run").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path.name


def test_14_a_sweep_killed_before_its_marker_landed_can_be_resumed(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text("[base]\nfeatures = 2\nhidden = 1\nsteps = 20\nbatch_size = 64\n[axes]\nseed = [0]\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / f".{MARKER}.a1b2.tmp").write_text("{")
    assert sweep(spec, out)["trained"] == 1
    with pytest.raises(ConfigError, match="not a sweep"):
        (tmp_path / "user").mkdir()
        (tmp_path / "user" / "notes.txt").write_text("keep")
        sweep(spec, tmp_path / "user")


# found in review ---------------------------------------------------------------------


def test_1_an_out_path_through_dotdot_never_replaces_what_it_names(tmp_path, cli, no_training):
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "data.txt").write_text("keep")
    (tmp_path / "link").symlink_to(tmp_path / "precious")
    for out in (tmp_path / "precious" / "missing" / "..", tmp_path / "link" / ".."):
        code, _, err = cli("train", "--out", str(out), *SMALL)
        _one_line_error(code, err)
    assert (tmp_path / "precious" / "data.txt").read_text() == "keep"


def test_4_cleaning_stale_staging_never_touches_another_names(tmp_path, cli):
    live = tmp_path / ".x1.partial-abc"  # x1's writer, still at work
    live.mkdir()
    assert cli("train", "--out", tmp_path / "x[1]", *SMALL)[0] == 0
    assert live.is_dir()


def test_7_restarts_never_keep_a_diverged_copy(monkeypatch):
    import torch

    import superposition.training.loop as loop
    from superposition.config import resolve

    config = resolve({"features": 4, "hidden": 2, "sparsity": [0.5], "steps": 20, "restarts": 2, "device": "cpu"})
    copies = loop.train(config.model_copy(update={"restarts": 1, "feature_probability": [[0.5] * 4] * 2, "importance": config.importance * 2}))
    kept = loop.train(config).params["W"][0]
    winner = next(c for c in range(2) if torch.equal(kept, copies.params["W"][c]))
    real = loop.train

    def winner_diverged(config, *args, **kwargs):
        result = real(config, *args, **kwargs)
        if config.instances == 2:  # the copies of the restarts run: the one that won went NaN
            result.history[:, winner] = float("nan")
        return result

    monkeypatch.setattr(loop, "train", winner_diverged)
    assert torch.equal(real(config).params["W"][0], copies.params["W"][1 - winner])


def test_14_the_size_cap_holds_for_the_default_sparsities(cli, tmp_path, no_training):
    code, _, err = cli("train", "--out", tmp_path / "run", "--features", "2000000000", "--quiet")
    _one_line_error(code, err)
    assert "values" in err


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("[base]\nfeatures = 2\n[axes]\ndensity = [0.5]\nsparsity = [0.5]\n", "not both"),
        ("[base]\nfeatures = 2\n[axes]\nlr = [1, 1.0]\n", "appears twice"),
        ("[base]\nfeatures = 2\n[axes]\nlr = { linear = [0.1, 0.1, 3] }\n", "appears twice"),
        ("[base]\nfeatures = 2\nsparsity = 1979-05-27\n[axes]\ndensity = [0.5]\n", "spec"),
        ("[base]\nfeatures = 2\n[axes]\nsparsity = [1" + "0" * 400 + "]\n", "sparsity"),
        ("[base]\nfeatures = 2\n[axes]\nlr = { log = [1" + "0" * 400 + ", 1, 3] }\n", "axes.lr"),
    ],
)
def test_13_more_bad_specs(tmp_path, cli, no_training, spec, expected):
    (tmp_path / "spec.toml").write_text(spec)
    code, _, err = cli("sweep", tmp_path / "spec.toml", "--out", tmp_path / "out")
    _one_line_error(code, err)
    assert expected in err and not (tmp_path / "out").exists()


def test_3_sweeps_of_anticorrelated_sets_and_integer_ranges(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(
        '[base]\nfeatures = 4\ncorrelation = "anticorrelated"\nset_size = 2\n'
        "[axes]\ndensity = [0.1, 0.2]\nhidden = { linear = [1, 3, 3] }\n"
    )
    shards = plan(read_spec(spec))
    assert [s.config.hidden for s in shards] == [1, 2, 3]
    assert shards[0].config.feature_probability == [[0.1] * 4, [0.2] * 4]


def test_13_a_huge_number_in_a_config(tmp_path, cli, no_training):
    (tmp_path / "c.toml").write_text("sparsity = 1" + "0" * 400 + "\n")
    code, _, err = cli("train", "--config", tmp_path / "c.toml", "--out", tmp_path / "run")
    _one_line_error(code, err)
    (tmp_path / "c.json").write_text('{"steps": 1' + "0" * 5000 + "}")
    code, _, err = cli("train", "--config", tmp_path / "c.json", "--out", tmp_path / "run")
    _one_line_error(code, err)


def test_10_report_with_one_axis_named(tmp_path, cli):
    spec = tmp_path / "spec.toml"
    spec.write_text("[base]\nfeatures = 2\nhidden = 1\nsteps = 20\nbatch_size = 64\n[axes]\ndensity = [1.0, 0.1]\nimportance_last = [0.5, 2]\n")
    sweep(spec, tmp_path / "out")
    for axis in ("density", "importance_last"):
        code, _, err = cli("report", tmp_path / "out", "--x", axis)
        assert code == 0, err
    code, _, err = cli("report", tmp_path / "out", "--x", "density", "--y", "density")
    _one_line_error(code, err)


@pytest.mark.parametrize("flag", [["--data", "seed"], ["--warm-start"], ["--steps", "0"]])
def test_12_reproduce_all_refuses_an_override_a_preset_cannot_take_before_training(tmp_path, cli, no_training, flag):
    code, _, err = cli("reproduce", "all", "--out", tmp_path / "all", *flag, "--quiet")
    _one_line_error(code, err)
    assert os.listdir(tmp_path) == []
