"""The second hostile audit's defects (issue 25): each test failed before its fix."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import superposition as sp
from superposition.files import seal
from superposition.models import KINDS, Kind, Tied

TINY = ["--features", "5", "--hidden", "2", "--sparsity", "0.9", "--steps", "50", "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A small saved run: the input the commands below are pointed at."""
    config = sp.Config(features=5, hidden=2, sparsity=[0.9], importance_decay=1.0, steps=500, lr=3e-3, device="cpu")
    return sp.train(config, progress=False).save(tmp_path_factory.mktemp("runs") / "run", figures=False)


def _fingerprint(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def _fake(directory, kind):
    """A finished directory of ours of `kind` (its marker and one file)."""
    directory.mkdir(parents=True)
    (directory / "note.txt").write_text(kind)
    seal(directory, kind, ("note.txt",))
    return directory


# 1. --out replaces only a directory of the command's own kind, never its input


@pytest.mark.parametrize("kind", ["sweep", "reproduction", "sae"])
def test_train_never_replaces_another_kind_of_directory(cli, tmp_path, kind):
    other = _fake(tmp_path / kind, kind)
    before = _fingerprint(other)
    code, _, err = cli("train", "--out", other, *TINY)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "only a run is replaced here" in err
    assert _fingerprint(other) == before


def test_sae_refuses_its_own_source_run_as_out(cli, run_dir):
    before = _fingerprint(run_dir)
    code, _, err = cli("sae", run_dir, "--out", run_dir, "--steps", "10", "--device", "cpu", "--quiet")
    assert code == 2 and "holds this command's own input" in err and len(err.strip().splitlines()) == 1
    assert _fingerprint(run_dir) == before


def test_reproduce_refuses_a_run_before_training(cli, run_dir):
    before = _fingerprint(run_dir)
    code, _, err = cli("reproduce", "phase", "--quick", "--out", run_dir, "--quiet")
    assert code == 2 and "is a run, and only a `superposition reproduce` output is replaced" in err
    assert _fingerprint(run_dir) == before


def test_train_may_replace_a_run_but_not_the_one_its_config_is_read_from(cli, tmp_path, run_dir):
    out = tmp_path / "x"
    assert cli("train", "--out", out, *TINY)[0] == 0
    assert cli("train", "--out", out, *TINY, "--seed", "1")[0] == 0  # a run replaced by a run
    assert json.loads((out / "config.json").read_text())["seed"] == 1
    before = _fingerprint(out)
    code, _, err = cli("train", "--config", out / "config.json", "--out", out, "--quiet")
    assert code == 2 and "holds this command's own input" in err
    assert _fingerprint(out) == before


def test_the_api_refuses_to_save_over_another_kind(tmp_path, run_dir):
    sweep = _fake(tmp_path / "sweep", "sweep")
    with pytest.raises(sp.ConfigError, match="is a sweep"):
        sp.load_run(run_dir).save(sweep)
    assert (sweep / "note.txt").read_text() == "sweep"


def test_a_sweep_refuses_a_run_directory(tmp_path, run_dir):
    from superposition.sweeps.sweep import sweep

    spec = tmp_path / "spec.toml"
    spec.write_text("[base]\nfeatures = 3\nhidden = 2\nsteps = 10\ndevice = 'cpu'\n[axes]\nseed = [0]\n")
    before = _fingerprint(run_dir)
    with pytest.raises(sp.ConfigError, match="is a run, not a sweep"):
        sweep(spec, run_dir)
    assert _fingerprint(run_dir) == before


# 2. every SAE engine draws what the source run draws


@pytest.mark.parametrize(
    "data",
    [
        {"normalize": True},
        {"data": "signed"},
        {"data": "seed"},
        {"correlation": "correlated", "set_size": 2},
        {"correlation": "anticorrelated", "set_size": 2},
        {"data": "signed", "normalize": True, "correlation": "correlated", "set_size": 3},
    ],
)
def test_both_sae_engines_draw_what_the_source_run_draws(data):
    config = sp.Config(features=6, hidden=3, sparsity=[0.7, 0.8], steps=200, device="cpu", **data)
    run = sp.train(config, progress=False)
    keys = {"steps": 100, "device": "cpu", "batch_size": 64, "resample": False}
    fused = sp.train_sae(run, engine="fused", progress=False, **keys)
    reference = sp.train_sae(run, engine="reference", progress=False, **keys)
    assert fused.metrics["engine"] == "fused" and reference.metrics["engine"] == "reference"
    for name, value in reference.params.items():
        assert torch.allclose(fused.params[name], value, atol=1e-4), name


# 3. `sae --engine compiled` runs the compiled engine (on the CPU too) and records it


@pytest.mark.parametrize("kind", ["relu", "topk", "jumprelu"])
def test_sae_engine_compiled_runs_it_and_agrees_with_the_reference(cli, run_dir, tmp_path, kind, monkeypatch):
    from superposition.saes import training as sae_training

    traced = []
    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda f, **kw: traced.append(f.__name__) or real(f, **kw))
    sae_training._COMPILED_LOSSES.clear()  # traced again here, where torch.compile is watched
    keys = ["--kind", kind, "--steps", "150", "--batch-size", "128", "--device", "cpu", "--quiet"]
    code, _, err = cli("sae", run_dir, "--out", tmp_path / "c", "--engine", "compiled", *keys)
    assert code == 0, err
    compiled = sp.load_sae(tmp_path / "c")
    assert compiled.metrics["engine"] == "compiled" and traced and traced[0].startswith("loss_of")
    assert cli("sae", run_dir, "--out", tmp_path / "r", "--engine", "reference", *keys)[0] == 0
    reference = sp.load_sae(tmp_path / "r")
    for name, tensor in reference.params.items():  # the toy engines' tolerance (test_compiled.py)
        torch.testing.assert_close(compiled.params[name], tensor, rtol=1e-4, atol=2e-5, msg=name)


# 4. a kind runs on the fused engine only where it says so itself


class Doubled(Tied):
    """A tied model whose decoder is twice Wᵀ: not what the fused kernel computes."""

    name = "test-doubled"

    def decoder(self, params):
        return 2 * params["W"].transpose(1, 2)


def test_a_subclass_that_overrides_the_model_never_runs_on_the_fused_engine():
    sp.register(Doubled)
    try:
        config = sp.Config(model="test-doubled", features=5, hidden=2, sparsity=[0.9], steps=300, device="cpu")
        run = sp.train(config, progress=False)
        assert run.config.engine == "reference"
        reference = sp.train(config.model_copy(update={"engine": "reference"}), progress=False)
        assert torch.equal(run.params["W"], reference.params["W"])
        with pytest.raises(sp.ConfigError, match="fused engine does not run the test-doubled model"):
            sp.train(config.model_copy(update={"engine": "fused"}), progress=False)
    finally:
        KINDS.pop("test-doubled")
    assert KINDS["tied"].fused == "tied" and KINDS["mlp"].fused == "untied"  # the built-ins say so themselves


def test_register_refuses_a_taken_name_and_what_is_not_a_kind():
    class Shadow(Tied):
        name = "tied"

    with pytest.raises(sp.ConfigError, match="'tied' is already registered"):
        sp.register(Shadow)
    assert type(KINDS["tied"]) is Tied
    for thing in (Tied(), "tied", int):
        with pytest.raises(sp.ConfigError, match="expected a subclass of superposition.models.Kind"):
            sp.register(thing)

    class Nameless(Kind):
        pass

    with pytest.raises(sp.ConfigError, match="needs a `name` of its own"):
        sp.register(Nameless)
    # a notebook cell run twice defines the class again: registering it again is no conflict
    sp.register(Doubled)
    try:
        again = type("Doubled", (Tied,), {"name": "test-doubled", "__module__": Doubled.__module__, "__qualname__": "Doubled"})
        assert sp.register(again) is again and type(KINDS["test-doubled"]) is again
    finally:
        KINDS.pop("test-doubled")


# 5. and 15. a density that is not a probability the stream can draw


@pytest.mark.parametrize("density", ["nan", "inf", "-inf", "1e-300", "0", "1.5"])
def test_a_bad_density_is_one_line_naming_density(cli, tmp_path, density):
    code, _, err = cli("sae", "--data", "dictionary", "--features", "8", "--dims", "3", "--density", density, "--out", tmp_path / "s")
    assert code == 2 and err.startswith("error: density:") and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("where", ["sae", "axes"])
def test_a_nan_density_in_an_sae_spec_is_refused(tmp_path, where):
    from superposition.sweeps.sweep import sweep

    spec = tmp_path / "spec.toml"
    table = "[sae]\ndata = 'dictionary'\nfeatures = 8\ndims = 3\nsteps = 10\n"
    spec.write_text(table + ("density = nan\n[axes]\nseed = [0, 1]\n" if where == "sae" else "[axes]\ndensity = [0.1, nan]\n"))
    with pytest.raises(sp.ConfigError, match="^density: nan is not a feature's probability"):
        sweep(spec, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_feature_rarer_than_the_stream_draws_is_refused():
    with pytest.raises(sp.ConfigError, match="below 2\\^-24"):
        sp.Config(features=3, feature_probability=[1e-9, 0.5, 0.5])


# 6. report verifies a sweep's shards


SWEEP = "[base]\nfeatures = 3\nhidden = 2\nsparsity = 0.5\nsteps = 20\ndevice = 'cpu'\n[axes]\nseed = [0, 1]\n"


def test_report_names_the_shards_that_are_corrupted_or_gone(cli, tmp_path):
    from superposition.sweeps.sweep import sweep

    spec, out = tmp_path / "spec.toml", tmp_path / "sweep"
    spec.write_text(SWEEP)
    sweep(spec, out)
    first, second = sorted((out / "shards").iterdir())
    (first / "config.json").write_text("{ garbage")
    code, _, err = cli("report", out)
    assert code == 0, err
    page = (out / "report.html").read_text()
    assert "2 grid points, 1 ok, 0 failed, 0 missing, 1 corrupted" in page and f"shards/{first.name}: corrupted: config.json" in page
    table = sp.load_sweep(out)
    assert sorted(table["status"]) == ["corrupted: config.json", "ok"]
    import shutil

    shutil.rmtree(first)
    shutil.rmtree(second)
    assert cli("report", out)[0] == 0
    page = (out / "report.html").read_text()
    assert "2 grid points, 0 ok, 0 failed, 2 missing, 0 corrupted" in page and f"shards/{second.name}: missing" in page
    assert (sp.load_sweep(out)["status"] == "missing").all()


# 7. a refused `sae` creates nothing


def test_a_refused_sae_creates_no_parent_directories(cli, run_dir, tmp_path):
    code, _, err = cli("sae", run_dir, "--out", tmp_path / "np" / "deep" / "s", "--latents", "100000000", "--quiet")
    assert code == 2 and "latents: these SAEs need about" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_an_sae_on_a_missing_gpu_creates_nothing(cli, run_dir, tmp_path):
    code, _, err = cli("sae", run_dir, "--out", tmp_path / "np" / "deep" / "s", "--device", "cuda", "--quiet")
    assert code == 2 and "device: cuda was asked for" in err
    assert list(tmp_path.iterdir()) == []


# 8. and 9. sp.sample checks its steps and its memory; the API takes a notebook's types


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([], "steps: give at least one step number"),
        ([-1], "steps: -1 is outside the run's steps, 0 to 99"),
        ([100], "steps: 100 is outside the run's steps, 0 to 99"),
        ([1.0], "steps: 1.0 is not a whole step number"),
        ([True], "steps: True is not a whole step number"),
        (3, "steps: expected a list of step numbers"),
        ("0", "steps: expected a list of step numbers"),
        ({0: 1}, "steps: expected a list of step numbers"),
    ],
)
def test_sample_checks_its_steps(steps, message):
    config = sp.Config(features=4, hidden=2, sparsity=[0.5], steps=100)
    with pytest.raises(sp.ConfigError, match=f"^{message}"):
        sp.sample(config, steps=steps)


def test_sample_refuses_a_dict_and_more_memory_than_there_is():
    with pytest.raises(sp.ConfigError, match="^config: expected an sp.Config, got dict"):
        sp.sample({"features": 4}, steps=[0])
    config = sp.Config(features=1000, sparsity=[0.9], batch_size=100_000, steps=10**6)
    with pytest.raises(sp.ConfigError, match="^steps: these batches need about"):
        sp.sample(config, steps=range(10**5))


def test_sample_takes_numpy_steps():
    config = sp.Config(features=4, hidden=2, sparsity=[0.5], steps=100, batch_size=8)
    assert torch.equal(sp.sample(config, steps=np.array([3, 5])), sp.sample(config, steps=[3, 5]))


def test_the_api_takes_numpy_values_and_tuples():
    given = sp.Config(
        features=np.int64(5), hidden=np.int32(2), sparsity=np.array([0.0, 0.9]), lr=np.float64(1e-3),
        steps=np.int64(100), importance=(1.0, 0.5, 0.25, 0.125, 0.0625),
    )  # fmt: skip
    plain = sp.Config(features=5, hidden=2, sparsity=[0.0, 0.9], lr=1e-3, steps=100, importance=[1.0, 0.5, 0.25, 0.125, 0.0625])
    assert given == plain
    huge = np.broadcast_to(np.float32(0.5), (10**8,))  # 10^8 values, no memory: refused before it is listed
    with pytest.raises(sp.ConfigError, match="^config: an array of 100,000,000 values is more than"):
        sp.Config(features=5, sparsity=huge)
    from superposition.saes.config import resolve_sae

    keys = {"data": "dictionary", "features": np.int64(8), "dims": np.int64(3), "density": np.float32(0.25)}
    assert resolve_sae({**keys, "l1": np.array([0.1, 0.2]), "instances": np.int64(2)}) == resolve_sae(
        {"data": "dictionary", "features": 8, "dims": 3, "density": float(np.float32(0.25)), "l1": [0.1, 0.2], "instances": 2}
    )


# 10. messages name the key the user gave


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--instances", "0"], "error: instances: must be a whole number from 1"),
        (["--features", "2000000000"], "error: features: 2000000000 would make the default latents"),
        (["--features", "100000000", "--dims", "2"], "error: features: these SAEs need about"),
        (["--l1", "inf"], "error: l1: expected finite numbers, got inf"),
    ],
)
def test_sae_messages_name_the_key_given(cli, tmp_path, args, message):
    base = {"--features": "8", "--dims": "3"}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    flat = [part for pair in base.items() for part in pair]
    code, _, err = cli("sae", "--data", "dictionary", *flat, "--out", tmp_path / "s", "--quiet")
    assert code == 2 and err.startswith(message), err
    assert list(tmp_path.iterdir()) == []


def test_a_missing_run_is_said_not_to_exist(cli, tmp_path):
    code, _, err = cli("metrics", tmp_path / "nowhere")
    assert code == 2 and err.strip() == f"error: run: {tmp_path / 'nowhere'} does not exist"


def test_a_run_of_a_python_registered_kind_says_why_the_command_line_cannot_read_it(cli, tmp_path):
    sp.register(Doubled)
    try:
        config = sp.Config(model="test-doubled", features=3, hidden=2, sparsity=[0.9], steps=10, device="cpu")
        sp.train(config, progress=False).save(tmp_path / "run", figures=False)
    finally:
        KINDS.pop("test-doubled")
    code, _, err = cli("metrics", tmp_path / "run")
    assert code == 2 and "unknown kind 'test-doubled'" in err and "exists only in the Python process" in err


# 13. a finite-data run's report and tables show its losses; many features draw legibly


def test_a_finite_data_run_shows_its_losses_and_draws_many_features_legibly(cli, tmp_path):
    from superposition.plots import figure

    out = tmp_path / "finite"
    code, stdout, err = cli(
        "train", "--out", out, "--features", "400", "--hidden", "2", "--sparsity", "0.99", "--dataset-size", "50",
        "--steps", "50", "--device", "cpu", "--quiet", "--eval-batch-size", "100",
    )  # fmt: skip
    assert code == 0, err
    header = next(line for line in stdout.splitlines() if "inst" in line).split()
    assert header == ["inst", "1-S", "repr", "diag", "D*", "superpos", "T", "train", "test"]
    assert max(map(len, stdout.splitlines()[:-1])) <= 80 and "T: examples in the training set" in stdout  # but the path
    assert cli("report", out)[0] == 0
    page = (out / "report.html").read_text()
    assert "<th>train</th>" in page and "<th>test</th>" in page and "<th>T</th>" in page
    run = sp.load_run(out)
    for name in ("norms", "weights"):
        height = figure(name, run.config, run.params).get_size_inches()[1]
        assert height < 16, (name, height)  # 400 rows of 0.2 inch would be 80 inches


# 14. an SAE that diverges is "training diverged", and a sweep records it and goes on


@pytest.mark.parametrize("lr", ["1e6", "1e8"])  # finite but blown up; and errors whose squares overflowed resampling
def test_a_diverging_sae_is_training_diverged_with_resampling_on(cli, run_dir, tmp_path, lr):
    code, _, err = cli("sae", run_dir, "--out", tmp_path / "np" / "deep" / "s", "--lr", lr, "--steps", "400", "--device", "cpu", "--quiet")
    assert code == 1 and err.startswith("error: training diverged:"), err
    assert list(tmp_path.iterdir()) == []


def test_an_sae_sweep_records_a_diverged_point_and_goes_on(tmp_path, run_dir):
    from superposition.sweeps.sweep import sweep

    spec = tmp_path / "spec.toml"
    spec.write_text(f"[sae]\nrun = '{run_dir}'\nsteps = 200\ndevice = 'cpu'\n[axes]\nlr = [1e-3, 1e6]\n")
    report = sweep(spec, tmp_path / "out")
    assert report["trained"] == 1 and len(report["failed"]) == 1
    table = sp.load_sweep(tmp_path / "out")
    assert sorted(table["status"].str[:6]) == ["failed", "ok"]
    assert (tmp_path / "out" / "failed" / f"{report['failed'][0]}.json").is_file()


# 15. refusals leave nothing behind


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_an_sae_sweep_on_a_missing_gpu_leaves_no_directory(tmp_path, run_dir):
    from superposition.sweeps.sweep import sweep

    spec = tmp_path / "spec.toml"
    spec.write_text(f"[sae]\nrun = '{run_dir}'\nsteps = 10\ndevice = 'cuda'\n[axes]\nseed = [0, 1]\n")
    with pytest.raises(sp.ConfigError, match="device: cuda"):
        sweep(spec, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.toml"]


def test_an_unreachable_dask_scheduler_leaves_no_directory(cli, tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    from superposition.sweeps import sweep

    monkeypatch.setattr(sweep, "CONNECT_SECONDS", 1)
    spec = tmp_path / "spec.toml"
    spec.write_text(SWEEP)
    code, _, err = cli("sweep", spec, "--out", tmp_path / "out", "--executor", "dask", "--scheduler", "tcp://127.0.0.1:9", "--quiet")
    assert code == 2 and "scheduler: cannot reach" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.toml"]



# 11. a one-time compile is announced, not sat through in silence


def test_a_slow_first_call_says_it_is_compiling(capsys, monkeypatch):
    import time

    from superposition.training import loop as training

    monkeypatch.setattr(training, "COMPILE_NOTICE_AFTER", 0.05)
    with training.LossBar("sae", 10, True) as bar:
        with bar.compiling("sae-fused"):
            time.sleep(0.5)  # as a compile would
        with bar.compiling("fused"):
            pass  # loaded from the cache: nothing to say
        with bar.compiling("reference"):
            time.sleep(0.2)  # autograd compiles nothing
    said = "".join(capsys.readouterr())
    assert said.count("compiling") == 1 and "compiling the SAE training kernel (first run on this machine only" in said


# 12. threads go only to the cores no other process is running on


def test_free_cores_counts_what_other_processes_ran(monkeypatch):
    from superposition.kernels import fused

    monkeypatch.setattr(fused, "_allowed_cpus", lambda: {0, 1, 2, 3})
    readings = iter([1000, 1015])  # the CPUs' busy ticks, before and after the 50 ms watch
    own = iter([500, 505])  # this process's own: 5 of those 15
    monkeypatch.setattr(fused, "_busy_ticks", lambda cpus: next(readings))
    monkeypatch.setattr(fused, "_own_ticks", lambda: next(own))
    monkeypatch.setattr(fused.os, "sysconf", lambda name: 100)
    monkeypatch.setattr(fused, "_seen", [])
    assert fused.free_cores(4) == 2  # 10 ticks of others in 50 ms at 100 a second: two cores
    assert fused.free_cores(3) == 2  # trusted for a while: no second look
    assert fused.free_cores(1) == 1  # one thread needs no look


@pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="reads /proc/stat (Linux)")
def test_a_core_busy_with_another_process_gets_no_thread(monkeypatch):
    import subprocess
    import sys
    import time

    from superposition.kernels import fused

    cores = len(fused._allowed_cpus())
    if cores < 2:
        pytest.skip("needs two cores")
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        monkeypatch.setattr(fused, "_seen", [])
        assert fused.free_cores(cores) <= cores - 1
    finally:
        busy.kill()
        busy.wait()


# 16. what `make demo` prints explains its terms, reads at 80 columns, and its figures have a key


def test_the_demo_explains_its_terms_and_reads_at_80_columns(cli, tmp_path):
    code, out, err = cli("reproduce", "seed", "--out", tmp_path / "seed", "--steps", "30", "--quiet")
    assert code == 0, err
    text = " ".join(out.split())
    assert "The seed is the earlier project this toolkit reproduces first" in text
    assert "Seeds 0-4 are random seeds" in text and "diagonal count: the features whose entry" in text
    assert "A claim holds where it holds for most random seeds of the seed's own procedure" in text
    lines = [line for line in out.splitlines() if not line.startswith("figure: ")]
    assert max(map(len, lines)) <= 80
    # a claim's prose wraps in its own column, never into columns of single words
    claim = next(line for line in lines if "most important features learned" in line)
    assert len(claim.split()) > 6


def test_the_gram_figure_has_a_colour_key(run_dir):
    from superposition.plots import gram_figure

    run = sp.load_run(run_dir)
    labels = [ax.get_ylabel() for ax in gram_figure(run.config, run.params).axes]
    assert any("blue +, red −" in label for label in labels)
