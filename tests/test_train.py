import math

import pytest
import torch

from superposition.config import ConfigError, resolve
from superposition.analysis.metrics import dimensions_per_feature, feature_norms
from superposition.models import forward, init_params
from superposition.training.steps import lr_factor
from superposition.training.engines import settle
from superposition.training.loop import train


def _config(**keys):
    base = {"features": 6, "hidden": 2, "sparsity": [0.0], "steps": 200, "batch_size": 256}
    return resolve({**base, **keys})


@pytest.mark.parametrize("model", ["tied", "untied", "mlp"])
def test_same_seed_gives_identical_weights(model):
    config = _config(model=model, sparsity=[0.0, 0.9], steps=50)
    a, b = train(config), train(config)
    assert a.params.keys() == b.params.keys()
    for name in a.params:
        assert torch.equal(a.params[name], b.params[name])
    assert torch.equal(a.history, b.history)
    c = train(config.model_copy(update={"seed": 1}))
    assert not torch.equal(a.params["W"], c.params["W"])


def test_init_scale_does_not_depend_on_number_of_instances():
    few = init_params(_config(sparsity=[0.0] * 2), torch.Generator().manual_seed(0))
    many = init_params(_config(sparsity=[0.0] * 400), torch.Generator().manual_seed(0))
    expected = math.sqrt(2 / (6 + 2))  # xavier-normal std of one 6x2 matrix
    assert many["W"].std().item() == pytest.approx(expected, rel=0.05)
    assert torch.equal(few["W"][0], many["W"][0])
    assert torch.count_nonzero(many["b"]) == 0


def test_models_compute_what_they_say():
    config = _config(model="untied", sparsity=[0.5])
    params = init_params(config, torch.Generator().manual_seed(0))
    x = torch.rand(1, 8, 6, generator=torch.Generator().manual_seed(1))
    W, W_out, b = params["W"][0], params["W_out"][0], params["b"][0]

    def run(**keys):
        return forward(params, x, _config(sparsity=[0.5], **keys))[0]

    # bmm and @ may round differently: an output near 0 is compared absolutely
    assert torch.allclose(run(model="untied"), torch.relu(x[0] @ W @ W_out + b), atol=1e-6)
    assert torch.allclose(run(model="untied", activation="linear"), x[0] @ W @ W_out + b, atol=1e-6)
    assert torch.allclose(run(model="tied"), torch.relu(x[0] @ W @ W.T + b), atol=1e-6)
    assert torch.allclose(run(model="mlp"), torch.relu(x[0] @ W) @ W_out + b, atol=1e-6)
    privileged = run(model="tied", hidden_activation="relu")
    assert torch.allclose(privileged, torch.relu(torch.relu(x[0] @ W) @ W.T + b), atol=1e-6)


def test_dense_relu_model_learns_exactly_the_top_m_features():
    config = _config(features=8, hidden=3, importance_decay=0.7, lr=0.01, steps=2000, data="paper")
    norms = feature_norms(train(config).params["W"])[0]
    assert (norms > 0.5).tolist() == [True] * 3 + [False] * 5, norms


def test_sparse_relu_model_represents_more_features_than_dimensions():
    # The paper's intro setup: 5 features, 2 dims, density 0.05 -> a pentagon.
    config = _config(features=5, hidden=2, importance_decay=1.0, sparsity=[0.95], lr=0.01, steps=4000)
    W = train(config).params["W"]
    assert (feature_norms(W)[0] > 0.5).sum().item() > 2
    assert dimensions_per_feature(W).item() < 0.75
    # the linear model, same budget, learns a rank-2 projection: ||W||_F² = m, so D* = 1
    linear = train(config.model_copy(update={"activation": "linear"})).params["W"]
    assert dimensions_per_feature(linear).item() == pytest.approx(1.0, abs=0.05)


def test_warm_start_chains_instances():
    config = _config(sparsity=[0.0, 0.0], steps=200, lr=0.01, warm_start=True)
    result = train(config)
    # instance 0 trains alone first: exactly a one-instance run
    alone = train(_config(sparsity=[0.0], steps=200, lr=0.01))
    assert torch.equal(result.params["W"][0], alone.params["W"][0])
    # instance 1 starts where instance 0 ended, not from a fresh init
    first, last = result.history[0], result.history[-1]
    assert first[1] < 0.5 * first[0]
    assert first[1].item() == pytest.approx(last[0].item(), rel=0.3)


def test_replicates_are_copies_and_warm_start_chains_each_copy():
    config = _config(sparsity=[0.0, 0.9], replicates=2, steps=50, lr=1e-9, weight_decay=0.0, warm_start=True)
    assert [row[0] for row in config.feature_probability] == [1.0, 1.0, 0.1, 0.1]  # setting-major
    W = train(config).params["W"]
    # lr ~ 0: every instance ends where it started, so a chain carries its copy's init along
    assert torch.allclose(W[2], W[0], atol=1e-6) and torch.allclose(W[3], W[1], atol=1e-6)
    assert not torch.allclose(W[0], W[1], atol=1e-2)  # the copies are independent


def test_early_stop_stops_a_converged_run():
    config = _config(steps=5000, early_stop=0.05, lr=0.01)
    result = train(config)
    assert 1000 <= result.steps_run < 5000
    assert result.steps_run % 500 == 0
    assert result.history.shape == (result.steps_run, 1)


@pytest.mark.parametrize(
    "schedule, warmup, expected",
    [
        ("constant", 0, [1.0, 1.0, 1.0]),
        ("linear", 0, [1.0, 0.5, 0.0]),
        ("cosine", 0, [1.0, 0.5, 0.0]),
        ("constant", 10, [0.1, 1.0, 1.0]),
    ],
)
def test_lr_schedules(schedule, warmup, expected):
    config = _config(steps=110, warmup=warmup, schedule=schedule)
    steps = [0, warmup + (110 - warmup) // 2, 110]
    assert [lr_factor(s, config) for s in steps] == pytest.approx(expected, abs=1e-9)


def test_adam_and_adamw_differ_only_through_weight_decay():
    adam = train(_config(optimizer="adam", weight_decay=0.0, steps=30))
    adamw = train(_config(optimizer="adamw", weight_decay=0.0, steps=30))
    assert torch.allclose(adam.params["W"], adamw.params["W"])
    decayed = train(_config(optimizer="adamw", weight_decay=0.5, steps=30))
    assert not torch.allclose(adamw.params["W"], decayed.params["W"])


def test_restarts_keep_each_instances_best_copy():
    config = _config(features=5, hidden=2, importance_decay=1.0, sparsity=[0.0, 0.9, 0.95], steps=300, lr=0.01)
    best = train(config.model_copy(update={"restarts": 3}))
    assert best.params["W"].shape == (3, 5, 2)
    assert best.config.restarts == 3
    # the kept copy of each instance is the one whose training loss over the last 10% of
    # steps (30 of 300) was lowest, of the copies trained alone
    copies = config.model_copy(
        update={
            "feature_probability": [row for row in config.feature_probability for _ in range(3)],
            "importance": [row for row in config.importance for _ in range(3)],
        }
    )
    every = train(copies)
    chosen = every.history[-30:].mean(0).view(3, 3).argmin(1) + 3 * torch.arange(3)
    for name, tensor in every.params.items():
        assert torch.equal(best.params[name], tensor[chosen]), name
    assert torch.equal(best.history, every.history[:, chosen])


def test_settle_where_a_gpu_is_present(monkeypatch):
    """What `auto` means on a CUDA machine, checked here by pretending one is present."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    config = resolve({"steps": 10})
    assert (settle(config).device, settle(config).engine) == ("cuda", "compiled")
    assert settle(config.model_copy(update={"device": "cpu"})).engine == "fused"
    fused = settle(config.model_copy(update={"engine": "fused"}))
    assert (fused.device, fused.engine) == ("cpu", "fused")  # the fused engine is the CPU's
    with pytest.raises(ConfigError, match="runs on the CPU; use --engine compiled with --device cuda"):
        settle(config.model_copy(update={"engine": "fused", "device": "cuda"}))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert (settle(config).device, settle(config).engine) == ("cpu", "fused")
    compiled = settle(config.model_copy(update={"engine": "compiled"}))
    assert (compiled.device, compiled.engine) == ("cpu", "compiled")


def test_warm_start_on_the_reference_engine():
    config = _config(sparsity=[0.0, 0.9], warm_start=True, engine="reference", device="cpu", steps=50)
    result = train(config)
    assert result.params["W"].shape == (2, 6, 2) and torch.isfinite(result.history).all()


@pytest.mark.parametrize("engine", ["fused", "reference"])
def test_an_unseen_feature_keeps_its_init_shrunk_only_by_adamw_decay(engine):
    """Why the computation preset trains its sparsest densities 1/(lr · wd) steps: the encoder
    row of a feature that is (almost) never present gets no gradient (x_i = 0), so its
    initial weights fade only as (1 - lr · wd) ** steps, e^-1 after 1/(lr · wd) steps."""
    lr, wd, steps = 1e-2, 0.05, 2000
    config = resolve(
        {"model": "untied", "features": 4, "hidden": 2, "feature_probability": [[0.5, 0.5, 0.5, 2**-24]], "steps": steps, "lr": lr,
         "weight_decay": wd, "batch_size": 256, "engine": engine, "device": "cpu"}
    )  # fmt: skip
    start = init_params(config, torch.Generator().manual_seed(config.seed))["W"][0, 3]
    end = train(config).params["W"][0, 3]
    torch.testing.assert_close(end, start * (1 - lr * wd) ** steps, rtol=1e-4, atol=1e-7)
