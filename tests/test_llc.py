"""The local learning coefficient through devinterp (tools/llc.py), against the theory of a
regular minimum, reproducible for a seed, and from the command line."""

import dataclasses
import json

import pytest
import torch

import superposition as sp
from superposition.tools.llc import llc

# a tied linear model of 3 features in 1 dimension with unequal importances: its minimum is
# weighted PCA, unique but for W's sign, so the loss is locally quadratic in all d = 6 parameters
REGULAR = dict(
    features=3, hidden=1, sparsity=[0.0], importance=[1.0, 0.5, 0.25], activation="linear",
    dataset_size=1000, batch_size=1000, steps=2000, lr=0.02, weight_decay=0, optimizer="adam", device="cpu",
)  # fmt: skip


@pytest.fixture(scope="module")
def regular():
    return sp.train(sp.Config(**REGULAR), progress=False)


def hessian(run) -> torch.Tensor:
    """The Hessian of the run's loss on its training set, at its weights."""
    module = run.plain_module()
    x = run.dataset.to_dense()[0]
    names = [name for name, _ in module.named_parameters()]
    shapes = [p.shape for p in module.parameters()]
    flat = torch.cat([p.detach().flatten() for p in module.parameters()])

    def loss(vector):
        parts = dict(zip(names, (piece.view(shape) for piece, shape in zip(vector.split([s.numel() for s in shapes]), shapes))))
        return module.loss(torch.func.functional_call(module, parts, (x,)), x)

    return torch.autograd.functional.hessian(loss, flat)


def test_the_llc_of_a_regular_minimum_is_half_its_parameters(regular):
    curvature = torch.linalg.eigvalsh(hessian(regular))
    assert len(curvature) == 6 and curvature.min() > 0.01  # regular: every direction curves
    nbeta, gamma = 1000.0, 1.0
    # SGLD samples exp(-nβ L - γ/2 |w - w*|²): for a quadratic L the estimate's expectation
    # is ½ Σ nβ h / (nβ h + γ) over the Hessian's eigenvalues h, near d/2 when nβ h >> γ
    theory = 0.5 * float((nbeta * curvature / (nbeta * curvature + gamma)).sum())
    assert theory == pytest.approx(3.0, rel=0.03)
    found = llc(regular, batch_size=1000, nbeta=nbeta, localization=gamma, lr=2e-4, burnin=500, draws=1000, chains=2)
    estimate = found["estimates"][0]
    assert estimate["llc_mean"] == pytest.approx(theory, rel=0.1)
    assert estimate["rows"] == 1000 and len(estimate["loss_trace"]) == 2 and len(estimate["loss_trace"][0]) == 1000
    assert estimate["init_loss"] == pytest.approx(regular.metrics["instances"][0]["train_loss"], rel=1e-4)


def test_the_estimate_is_reproducible_for_a_seed_and_differs_across_seeds(regular):
    short = dict(batch_size=100, draws=30, chains=2)
    first, again = (llc(regular, seed=4, **short)["estimates"][0] for _ in range(2))
    assert first["llc_per_chain"] == again["llc_per_chain"] and first["loss_trace"] == again["loss_trace"]
    assert llc(regular, seed=5, **short)["estimates"][0]["llc_per_chain"] != first["llc_per_chain"]


def test_llc_at_every_checkpoint_is_written_beside_the_run(cli, tmp_path):
    code, _, err = cli("train", "--out", tmp_path / "r", "--features", "6", "--hidden", "2", "--sparsity", "0.9,0.5", "--steps", "100", "--checkpoints", "3", "--device", "cpu", "--quiet")
    assert code == 0, err
    code, out, err = cli("llc", tmp_path / "r", "--checkpoints", "--instance", "1", "--draws", "20", "--chains", "2", "--rows", "2000")
    assert code == 0, err
    record = json.loads((tmp_path / "r" / "llc.json").read_text())
    assert [(e["instance"], e["step"]) for e in record["estimates"]] == [(1, 0), (1, 1), (1, 100)]
    assert record["settings"]["draws"] == 20 and all(e["rows"] == 2000 for e in record["estimates"])
    run = sp.load_run(tmp_path / "r")  # still a sealed, intact run
    assert record["estimates"][-1]["loss"] == run.metrics["instances"][1]["loss"]
    for args, message in (
        (["--draws", "0"], "draws: Input should be greater than 0"),
        (["--instance", "2"], "instance: 2 is not an instance of this run"),
        (["--lr", "-1"], "lr: Input should be greater than 0"),
    ):
        before = (tmp_path / "r" / "llc.json").read_bytes()
        code, _, err = cli("llc", tmp_path / "r", *args)
        assert code == 2 and err.count("\n") == 1 and message in err, err
        assert (tmp_path / "r" / "llc.json").read_bytes() == before
    code, _, err = cli("train", "--out", tmp_path / "plain", "--features", "4", "--hidden", "2", "--sparsity", "0.9", "--steps", "10", "--device", "cpu", "--quiet")
    assert code == 0, err
    code, _, err = cli("llc", tmp_path / "plain", "--checkpoints")
    assert code == 2 and "kept no checkpoints" in err and not (tmp_path / "plain" / "llc.json").exists()


def test_the_estimate_does_not_depend_on_the_order_its_weights_were_read_in(regular):
    # safetensors' loader returns a file's tensors in an order that varies from process to
    # process; SGLD draws its noise parameter by parameter in the module's order
    flipped = dataclasses.replace(regular, params=dict(reversed(list(regular.params.items()))))
    assert [name for name, _ in flipped.plain_module().named_parameters()] == ["W", "b"]
    short = dict(batch_size=100, draws=30, chains=2)
    assert llc(flipped, **short)["estimates"][0]["llc_per_chain"] == llc(regular, **short)["estimates"][0]["llc_per_chain"]


def test_without_devinterp_1_the_llc_is_one_clear_line(cli, tmp_path, monkeypatch):
    import importlib.metadata

    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "2.0.1" if name == "devinterp" else real(name))
    code, _, err = cli("train", "--out", tmp_path / "r", "--features", "4", "--hidden", "2", "--sparsity", "0.9", "--steps", "10", "--device", "cpu", "--quiet")
    assert code == 0, err
    code, _, err = cli("llc", tmp_path / "r")
    assert code == 2 and err.count("\n") == 1 and "needs devinterp 1.x, which is 2.0.1" in err and "pip install 'superposition[llc]'" in err
    code, _, err = cli("reproduce", "llc", "--quick", "--out", tmp_path / "x")
    assert code == 2 and "needs devinterp 1.x" in err and not (tmp_path / "x").exists()
