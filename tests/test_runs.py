import json
import os

import pytest
import torch

from superposition import load_run
from superposition.config import ConfigError, resolve
from superposition.files import atomic_dir, seal
from superposition.runs import SEALED, record
from superposition.training.engines import settle
from superposition.training.loop import train


@pytest.fixture(scope="module")
def trained():
    config = resolve({"model": "untied", "features": 6, "hidden": 2, "sparsity": [0, 0.9], "steps": 30})
    return config, train(config)


def _write(path, trained):
    config, result = trained
    with atomic_dir(path, "run") as staging:
        record(staging, result)


def test_round_trip(tmp_path, trained):
    config, result = trained
    _write(tmp_path / "run", trained)
    run = load_run(tmp_path / "run")
    assert run.config == result.config == settle(config)
    assert set(run.params) == {"W", "W_out", "b"}
    assert run.params["W"].shape == (2, 6, 2) and run.params["W_out"].shape == (2, 2, 6)
    for name in run.params:
        assert torch.equal(run.params[name], result.params[name])
    assert len(run.metrics["instances"]) == 2
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["package_version"]
    assert saved["feature_probability"] == [[1.0] * 6, [0.1] * 6]
    assert saved["importance"][0][:2] == [1.0, 0.7]
    assert run.history.shape == (30, 2) and run.history.index.name == "step"
    assert (run.history.to_numpy() == result.history.numpy()).all()
    # 4 bytes per instance-step, and a header
    assert (tmp_path / "run" / "history.safetensors").stat().st_size <= 4 * 30 * 2 + 200
    pngs = sorted(p.name for p in (tmp_path / "run").glob("*.png"))
    assert pngs == ["untied-relu-6x2-gram.png", "untied-relu-6x2-norms.png", "untied-relu-6x2-weights.png"]


def test_crash_leaves_no_complete_directory(tmp_path, trained):
    config, result = trained
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "run", "run") as staging:
            record(staging, result)
            raise RuntimeError("killed")
    assert os.listdir(tmp_path) == []


def test_rewriting_a_run_replaces_it(tmp_path, trained):
    _write(tmp_path / "run", trained)
    _write(tmp_path / "run", trained)
    assert sorted(os.listdir(tmp_path)) == ["run"]
    load_run(tmp_path / "run")


def test_refuses_a_directory_that_is_not_ours(tmp_path, trained):
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "thesis.tex").write_text("do not delete")
    with pytest.raises(ConfigError, match="not a superposition output"):
        _write(tmp_path / "precious", trained)
    assert os.listdir(tmp_path / "precious") == ["thesis.tex"]
    assert sorted(os.listdir(tmp_path)) == ["precious"]


def _edit_and_reseal(directory, name, text):
    """A hand edit by someone who also rewrote the checksums: the content checks still hold."""
    (directory / name).write_text(text)
    seal(directory, "run", SEALED)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / "model.safetensors").unlink(), "model.safetensors is missing"),
        (lambda d: (d / "model.safetensors").write_bytes(b"\x00garbage"), "corrupted"),
        (lambda d: (d / "metrics.json").write_text("{"), "corrupted"),
        (lambda d: (d / "metrics.json").unlink(), "metrics.json is missing"),
        (lambda d: (d / "config.json").unlink(), "config.json is missing"),
        (lambda d: (d / "config.json").write_text('{"model": "tied"}'), "does not match the checksum"),
        (lambda d: (d / "superposition.json").unlink(), "not a run directory"),
        (lambda d: _edit_and_reseal(d, "config.json", '{"model": "tied", "features": 0}'), "invalid config"),
        (lambda d: _edit_and_reseal(d, "config.json", "[1, 2]"), "does not hold a config"),
        (lambda d: _edit_and_reseal(d, "metrics.json", '{"instances": 3}'), "one metrics object per instance"),
    ],
)
def test_broken_runs_are_reported(tmp_path, trained, damage, message):
    _write(tmp_path / "run", trained)
    damage(tmp_path / "run")
    with pytest.raises(ConfigError, match=message):
        load_run(tmp_path / "run")


def test_truncated_weights_are_reported(tmp_path, trained):
    _write(tmp_path / "run", trained)
    path = tmp_path / "run" / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(ConfigError, match="model.safetensors"):
        load_run(tmp_path / "run")
