"""Sweeps of SAEs: planning by kind, packing settings as instances, resuming, results, report."""

import json
import os

import pytest

import superposition as sp
from superposition.config import ConfigError
from superposition.report import write
from superposition.saes.config import SAEConfig
from superposition.sweeps.sweep import plan, read_spec, sweep

SPEC = """
[sae]
run = "{run}"
steps = 300
device = "cpu"

[axes]
kind = ["relu", "topk"]
l1 = [0.03, 0.3]
k = [1, 2, 3]
latents = [5, 10]
"""


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """Two 5 → 2 toy models (two sparsities), saved as a run."""
    config = sp.Config(features=5, hidden=2, sparsity=[0.9, 0.95], importance_decay=1.0, steps=1000, lr=3e-3, device="cpu")
    return sp.train(config, progress=False).save(tmp_path_factory.mktemp("runs") / "pentagons", figures=False)


def _spec(tmp_path, source, text=SPEC):
    path = tmp_path / "spec.toml"
    path.write_text(text.format(run=source))
    return path


def test_each_kind_takes_its_own_setting_axis_packed_as_instances(tmp_path, source):
    shards = plan(read_spec(_spec(tmp_path, source)))
    assert [(s.config.kind, s.config.latents) for s in shards] == [("relu", 5), ("relu", 10), ("topk", 5), ("topk", 10)]
    relu, topk = shards[0].config, shards[2].config
    assert relu.settings == [0.03, 0.3] and relu.instances == 4  # 2 settings x 2 source instances
    assert topk.settings == [1, 2, 3] and topk.instances == 6
    assert [p["l1_coefficient"] for p in shards[0].points] == [0.03, 0.03, 0.3, 0.3]
    assert [p["source_instance"] for p in shards[0].points] == [0, 1, 0, 1]
    assert len({s.key for s in shards}) == 4


def test_sae_sweep_trains_resumes_and_tabulates_the_same_scores_as_one_job(tmp_path, source):
    spec, out = _spec(tmp_path, source), tmp_path / "out"
    assert sweep(spec, out) == {"shards": 4, "trained": 4, "skipped": 0, "failed": []}
    table = sp.load_sweep(out)
    assert len(table) == 2 * (2 + 3) * 2 and (table["status"] == "ok").all()  # latents x settings x sources
    assert not table.duplicated(["kind", "latents", "l1_coefficient", "k", "source_instance"]).any()
    relu = table[(table["kind"] == "relu") & (table["latents"] == 10)]
    # a shard is exactly the SAE job `superposition sae` would train with the same keys
    direct = sp.train_sae(sp.load_run(source), kind="relu", latents=10, l1=[0.03, 0.3], steps=300, device="cpu", progress=False)
    assert relu["mmcs"].tolist() == pytest.approx([r["mmcs"] for r in direct.metrics["instances"]])
    assert relu["l0"].tolist() == pytest.approx([r["l0"] for r in direct.metrics["instances"]])
    assert (table[table["kind"] == "topk"].groupby("k")["l0"].max() <= table[table["kind"] == "topk"]["k"].unique()).all()
    before = {p: p.stat().st_mtime_ns for p in (out / "shards").iterdir()}
    assert sweep(spec, out)["skipped"] == 4
    assert {p: p.stat().st_mtime_ns for p in (out / "shards").iterdir()} == before
    shard = sp.load_sae(out / "shards" / relu["shard"].iloc[0])  # every shard is an SAE directory
    assert shard.config.settings == [0.03, 0.3]
    page = write(out).read_text()
    assert "MMCS and L0 against the penalty" in page and page.count("data:image/png;base64,") == 1


def test_a_missing_shard_is_trained_again_with_the_same_result(tmp_path, source):
    text = SPEC.replace('kind = ["relu", "topk"]\n', 'kind = ["jumprelu"]\nl0 = [0.01, 0.1]\n').replace("l1 = [0.03, 0.3]\nk = [1, 2, 3]\n", "")
    spec, out = _spec(tmp_path, source, text), tmp_path / "out"
    sweep(spec, out, executor="processes", workers=2)
    first = sp.load_sweep(out)
    assert list(first["l0_coefficient"]) == [0.01, 0.01, 0.1, 0.1] * 2
    gone = out / "shards" / first["shard"].iloc[0]
    for path in gone.iterdir():
        path.unlink()
    gone.rmdir()
    assert sweep(spec, out) == {"shards": 2, "trained": 1, "skipped": 1, "failed": []}
    assert sp.load_sweep(out).equals(first)  # same seed, same SAEs, in either executor


@pytest.mark.parametrize(
    ("axes", "field"),
    [
        ('kind = ["topk"]\nl1 = [0.1]', "axes.l1"),  # no topk SAE takes l1
        ('run = ["a", "b"]', "axes.run"),
        ('kind = ["gated"]', "kind"),
        ("k = [20]", "k: 20"),  # k > latents (10)
        ('kind = ["relu", "topk"]\nlatents = [5, 50000000000]', "latents"),
        ("latents = [5, 100000000]", "latents: these SAEs need about"),
        ('l1 = [-1.0]', "l1"),
        ('l1 = ["a"]', "axes.l1"),
        ("latentz = [5]", "axes.latentz"),
        ("seed = [1979-05-27]", "axes.seed"),
    ],
)
def test_bad_sae_spec_one_line_exit_2_nothing_written(tmp_path, source, cli, axes, field):
    spec = tmp_path / "spec.toml"
    kind = 'kind = "topk"\n' if axes.startswith("k =") else ""
    spec.write_text(f'[sae]\nrun = "{source}"\n{kind}\n[axes]\n{axes}\n')
    code, _, err = cli("sweep", spec, "--out", tmp_path / "out")
    assert code == 2 and len(err.strip().splitlines()) == 1 and field in err, err
    assert sorted(os.listdir(tmp_path)) == ["spec.toml"]


def test_the_grid_counts_each_kind_with_its_own_settings_and_base_penalties_must_be_used(tmp_path, source):
    spec = tmp_path / "spec.toml"
    axes = 'kind = ["relu", "topk", "jumprelu"]\nl1 = { log = [0.01, 1, 60] }\nk = [1, 2, 3, 4, 5]\nl0 = { log = [0.001, 1, 400] }'
    spec.write_text(f'[sae]\nrun = "{source}"\nsteps = 10\n\n[axes]\n{axes}\n')
    assert sum(len(s.points) for s in plan(read_spec(spec))) == 465 * 2  # not 60 x 5 x 400 x 3: 2 source instances
    spec.write_text(f'[sae]\nrun = "{source}"\nl0 = 0.5\n\n[axes]\nkind = ["relu", "topk"]\n')
    with pytest.raises(ConfigError, match="sae.l0: no SAE of this sweep takes l0"):
        plan(read_spec(spec))


def test_a_dictionary_source_sweeps_too(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text('[sae]\ndata = "dictionary"\nfeatures = 8\ndims = 4\ninstances = 2\nsteps = 100\ndevice = "cpu"\n\n[axes]\nseed = [0, 1]\n')
    sweep(spec, tmp_path / "out")
    table = sp.load_sweep(tmp_path / "out")
    assert list(table["seed"]) == [0, 0, 1, 1] and list(table["source_instance"]) == [0, 1, 0, 1]
    config = json.loads((tmp_path / "out" / "shards" / table["shard"].iloc[0] / "config.json").read_text())
    assert config["settings"] == [pytest.approx(0.3 / 4)] and SAEConfig(**{k: v for k, v in config.items() if k != "package_version"}).seed == 0
