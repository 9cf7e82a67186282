"""engines.py: one place says which engine runs a job, each engine giving its own reason
where it does not; the same for toy models, finite sets and SAEs."""

import re

import pytest

import superposition as sp
from superposition.training.engines import ENGINES, PREFERENCE, device_of, engine_of, settle
from superposition.saes.config import resolve_sae

TIED = sp.Config(features=5, hidden=2, sparsity=[0.9])
SAE = resolve_sae({"data": "dictionary", "features": 8, "dims": 2})


@pytest.mark.parametrize(
    ("job", "cpu", "cuda"),
    [
        (TIED, "fused", "compiled"),
        (sp.Config(model="mlp", features=5, hidden=2), "fused", "compiled"),
        (TIED.model_copy(update={"dataset_size": 100}), "fused", "compiled"),
        (TIED.model_copy(update={"dataset_size": 100, "activation": "linear"}), "reference", "compiled"),
        (SAE, "fused", "compiled"),
    ],
)
def test_auto_takes_the_first_engine_of_the_device_that_supports_the_job(job, cpu, cuda):
    assert engine_of(job, "cpu") == cpu and engine_of(job, "cuda") == cuda
    for device, chosen in (("cpu", cpu), ("cuda", cuda)):
        skipped = PREFERENCE[device][: PREFERENCE[device].index(chosen)]
        assert all(ENGINES[name].supports(job, device) for name in skipped)  # each said why not


@pytest.mark.parametrize(
    ("job", "engine", "device", "reason"),
    [
        (SAE, "fused", "cuda", "the fused engine runs on the CPU; use --engine compiled with --device cuda"),
        (TIED, "fused", "cuda", "the fused engine runs on the CPU; use --engine compiled with --device cuda"),
        (TIED.model_copy(update={"dataset_size": 10, "hidden_activation": "relu"}), "fused", "cpu", "the fused engine trains a finite dataset with a ReLU output"),
    ],
)
def test_an_engine_named_that_cannot_run_the_job_gives_its_own_reason(job, engine, device, reason):
    with pytest.raises(sp.ConfigError, match=f"^engine: .*{re.escape(reason)}"):
        engine_of(job.model_copy(update={"engine": engine}), device)


def test_an_engine_that_runs_on_the_cpu_only_settles_device_auto_there(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # as on a machine with a GPU
    assert device_of(SAE) == "cuda" and device_of(TIED) == "cuda"
    # asking for the fused engine is asking for the CPU
    assert device_of(SAE.model_copy(update={"engine": "fused"})) == "cpu"
    assert settle(TIED.model_copy(update={"engine": "fused"})).device == "cpu"
    assert settle(TIED.model_copy(update={"engine": "reference", "device": "cpu"})).engine == "reference"
    assert settle(TIED).engine == "compiled" and settle(SAE).engine == "compiled"


def test_the_sae_command_records_the_engine_that_ran(cli, tmp_path):
    code, out, err = cli("sae", "--data", "dictionary", "--features", "8", "--dims", "2", "--steps", "20", "--device", "cpu", "--out", tmp_path / "s", "--quiet")
    assert code == 0, err
    assert sp.load_sae(tmp_path / "s").metrics["engine"] == "fused"


def test_every_engine_builds_the_stepper_of_every_workload():
    """Each workload's loop registers its builders with the engines (`@ENGINES[name].builds`),
    and asks the engine of the job for its stepper: a builder missing is a KeyError, not
    another engine quietly training the job."""
    from superposition.saes import training as sae_training
    from superposition.training import compiled, loop
    from superposition.training.engines import WORKLOADS

    for name, engine in ENGINES.items():
        assert set(engine.builders) == set(WORKLOADS), name
    assert ENGINES["fused"].builders["fresh"] is loop._fused_stepper
    assert ENGINES["compiled"].builders["finite"] is compiled.dataset_stepper
    assert ENGINES["compiled"].builders["sae"] is sae_training._Compiled
