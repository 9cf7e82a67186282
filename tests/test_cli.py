import json
import os
import subprocess
import sys

import pytest

SMALL = ["--features", "6", "--hidden", "2", "--sparsity", "0,0.9", "--steps", "40", "--batch-size", "64", "--quiet"]


def test_train_metrics_plot_end_to_end(tmp_path):
    """Through the installed entry point, as a user runs it."""
    run = tmp_path / "run"
    exe = [sys.executable, "-m", "superposition"]
    done = subprocess.run([*exe, "train", "--out", run, "--model", "tied", *SMALL], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "run written to" in done.stdout
    shown = subprocess.run([*exe, "metrics", run, "--json"], capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    metrics = json.loads(shown.stdout)
    assert [row["feature_probability"][0] for row in metrics["instances"]] == [1.0, 0.1]
    figures = tmp_path / "figures"
    drawn = subprocess.run([*exe, "plot", run, "--out", figures], capture_output=True, text=True)
    assert drawn.returncode == 0, drawn.stderr
    assert sorted(os.listdir(figures)) == ["tied-relu-6x2-gram.png", "tied-relu-6x2-norms.png", "tied-relu-6x2-weights.png"]


ENTRY = "import atexit; from superposition.cli import script; atexit.register(print, 'atexit ran'); script()"


def test_the_quick_exit_flushes_output_runs_atexit_and_keeps_the_status(tmp_path):
    """script() ends with os._exit: piped (block-buffered) output must still arrive whole."""
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    done = subprocess.run([sys.executable, "-c", ENTRY, "kinds"], capture_output=True, text=True, env=buffered)
    assert done.returncode == 0, done.stderr
    assert "tied" in done.stdout and done.stdout.rstrip().endswith("atexit ran")
    bad = subprocess.run([sys.executable, "-c", ENTRY, "train", "--out", tmp_path / "run", "--features", "0"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("error: features") and len(bad.stderr.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_config_file_with_flag_override(tmp_path, cli):
    spec = tmp_path / "spec.toml"
    spec.write_text('model = "untied"\nfeatures = 6\nhidden = 2\nsparsity = [0.0, 0.5, 0.99]\nsteps = 20\nbatch-size = 32\n')
    code, out, err = cli("train", "--config", spec, "--hidden", "3", "--out", tmp_path / "run", "--quiet")
    assert code == 0, err
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["model"] == "untied" and saved["hidden"] == 3 and len(saved["feature_probability"]) == 3
    # a run's config.json trains the same config again
    code, _, err = cli("train", "--config", tmp_path / "run" / "config.json", "--out", tmp_path / "again", "--quiet")
    assert code == 0, err
    again = json.loads((tmp_path / "again" / "config.json").read_text())
    assert again == saved


def test_metrics_table(tmp_path, cli):
    cli("train", "--out", tmp_path / "run", *SMALL)
    code, out, _ = cli("metrics", tmp_path / "run")
    assert code == 0
    assert "represented" in out and "6 features → 2 hidden" in out


def test_reproduce_seed_quick(tmp_path, cli):
    code, out, err = cli("reproduce", "seed", "--out", tmp_path / "seed", "--steps", "30", "--quiet")
    assert code == 0, err
    names = sorted(os.listdir(tmp_path / "seed"))
    nets = ["one_weight", "one_weight-fresh", "one_weight-fresh.png", "one_weight.png"]
    assert names == ["claims.json", *nets, "reproduction.json", "superposition.json", *(n.replace("one", "two") for n in nets)]
    summary = json.loads((tmp_path / "seed" / "reproduction.json").read_text())
    assert [row["sparsity"] for row in summary["table"]] == [0, 0.7, 0.9, 0.99, 0.999] * 4
    claims = json.loads((tmp_path / "seed" / "claims.json").read_text())
    assert {"claim", "paper", "ours", "holds", "note"} == set(claims[0]) and len(claims) == 6
    assert "one_weight (tied)" in out and "two_weight (untied)" in out
    config = json.loads((tmp_path / "seed" / "one_weight" / "config.json").read_text())
    assert config["data"] == "seed" and config["features"] == 20 and config["hidden"] == 5
    assert config["warm_start"] and config["replicates"] == 5 and len(config["feature_probability"]) == 25
    assert not json.loads((tmp_path / "seed" / "one_weight-fresh" / "config.json").read_text())["warm_start"]


@pytest.mark.parametrize(
    "args, field",
    [
        (["train", "--sparsity", "0,1.2"], "sparsity"),
        (["train", "--sparsity", "0,abc"], "sparsity"),
        (["train", "--features", "0"], "features"),
        (["train", "--hidden", "-1"], "hidden"),
        (["train", "--steps", "0"], "steps"),
        (["train", "--model", "transformer"], "model"),
        (["train", "--activation", "tanh"], "activation"),
        (["train", "--optimizer", "rmsprop"], "optimizer"),
        (["train", "--schedule", "step"], "schedule"),
        (["train", "--data", "imagenet"], "data"),
        (["train", "--device", "tpu"], "device"),
        (["train", "--no-such-flag", "1"], "--no-such-flag"),
        (["train", "--steps", "ten"], "--steps"),
        (["reproduce", "paper-everything"], "preset"),
        (["frobnicate"], "frobnicate"),
    ],
)
def test_bad_flags_one_line_exit_2_nothing_written(tmp_path, cli, args, field):
    out = tmp_path / "out"
    code, stdout, err = cli(*args, "--out", out)
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert field in err and "Traceback" not in err
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "text, field",
    [
        ("stpes = 10\n", "stpes"),
        ("steps = \n", "TOML"),
        ('steps = "ten"\n', "steps"),
        ("sparsity = [0.5, 2]\n", "sparsity"),
        ('model = "big"\n', "model"),
    ],
)
def test_bad_config_file(tmp_path, cli, text, field):
    spec = tmp_path / "spec.toml"
    spec.write_text(text)
    code, _, err = cli("train", "--config", spec, "--out", tmp_path / "out")
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and field in err, err
    assert sorted(os.listdir(tmp_path)) == ["spec.toml"]


def test_missing_config_file(tmp_path, cli):
    code, _, err = cli("train", "--config", tmp_path / "nope.toml", "--out", tmp_path / "out")
    assert code == 2 and "no such file" in err


def test_refuses_foreign_output_directory(tmp_path, cli):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    code, _, err = cli("train", "--out", tmp_path / "mine", *SMALL)
    assert code == 2 and "not a superposition output" in err
    assert os.listdir(tmp_path / "mine") == ["notes.txt"]
    code, _, err = cli("reproduce", "seed", "--out", tmp_path / "mine", "--steps", "5", "--quiet")
    assert code == 2 and "not a superposition output" in err


@pytest.mark.parametrize("command", ["metrics", "plot"])
def test_missing_or_corrupted_run(tmp_path, cli, command):
    code, _, err = cli(command, tmp_path / "nothing")
    assert code == 2 and "does not exist" in err and len(err.strip().splitlines()) == 1
    cli("train", "--out", tmp_path / "run", *SMALL)
    (tmp_path / "run" / "model.safetensors").write_bytes(b"not a tensor file")
    code, _, err = cli(command, tmp_path / "run")
    assert code == 2 and "corrupted" in err and len(err.strip().splitlines()) == 1


def test_cuda_request_without_gpu(tmp_path, cli):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, _, err = cli("train", "--device", "cuda", "--out", tmp_path / "run", *SMALL)
    assert code == 2 and "no CUDA GPU" in err
    assert os.listdir(tmp_path) == []


def test_help_does_not_import_torch():
    probe = "import sys; from superposition import cli; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.stdout.strip() == "False"


def test_restarts_flag_is_recorded(tmp_path, cli):
    code, _, err = cli("train", "--out", tmp_path / "run", "--restarts", "2", "--eval-batch-size", "500", *SMALL)
    assert code == 0, err
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["restarts"] == 2 and saved["eval_batch_size"] == 500
    assert len(saved["feature_probability"]) == 2  # copies are not saved, only each instance's best


def test_train_draws_figures_only_when_asked(tmp_path):
    """Figures cost a second of a two-second command: without --figures, matplotlib never loads."""
    probe = (
        "import sys; from superposition.cli import main\n"
        "try: main(sys.argv[1:])\n"
        "except SystemExit: pass\n"
        "print('matplotlib' in sys.modules)"
    )
    small = ["--features", "6", "--hidden", "2", "--sparsity", "0,0.9", "--steps", "40", "--quiet"]
    for flag, drawn in (([], False), (["--figures"], True)):
        out = tmp_path / f"run{len(flag)}"
        done = subprocess.run([sys.executable, "-c", probe, "train", "--out", out, *small, *flag], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip().endswith(str(drawn))
        assert bool(list(out.glob("*.png"))) == drawn
