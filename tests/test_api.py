"""The notebook API (issue 9): `import superposition as sp` and its contract."""

import json

import numpy as np
import pytest
import torch

import superposition as sp
from superposition.models import KINDS, Kind

SMALL = dict(features=5, hidden=2, sparsity=[0, 0.9], importance_decay=0.9, steps=300, batch_size=256, device="cpu")


@pytest.fixture(scope="module")
def run():
    return sp.train(sp.Config(**SMALL), progress=False)


def test_config_takes_the_command_lines_keys():
    config = sp.Config(features=5, hidden=2, sparsity=[0, 0.9], importance_decay=0.9, steps=2000)
    assert config.instances == 2 and config.feature_probability == [[1.0] * 5, [0.1] * 5]
    assert config.importance[0] == pytest.approx([0.9**i for i in range(5)])
    assert sp.Config(**{"batch-size": 64}).batch_size == 64
    assert sp.Config(model="mlp").activation == "linear"


@pytest.mark.parametrize(
    "keys, field",
    [
        ({"featurez": 5}, "featurez"),
        ({"sparsity": [1.0]}, "sparsity"),
        ({"features": 0}, "features"),
        ({"steps": True}, "steps"),
        ({"lr": float("inf")}, "lr"),
        ({"model": "transformer"}, "model"),
        ({"model": "mlp", "activation": "relu"}, "activation"),
        ({"importance": [1, 2]}, "importance"),
    ],
)
def test_bad_keys_are_one_line_config_errors(keys, field):
    with pytest.raises(sp.ConfigError) as error:
        sp.Config(**keys)
    message = str(error.value)
    assert field in message and "\n" not in message


def test_round_trip_train_save_load(run, tmp_path):
    assert isinstance(run, sp.Run) and run.history.shape == (300, 2)
    path = run.save(tmp_path / "x")
    back = sp.load_run(path)
    assert isinstance(back, sp.Run) and back.config == run.config and back.path == path
    for name, tensor in run.params.items():
        assert torch.equal(back.params[name], tensor)
    assert back.metrics == json.loads(json.dumps(run.metrics))
    assert back.history.equals(run.history)


def test_cli_and_api_train_identical_weights(cli, tmp_path):
    keys = {k: v for k, v in SMALL.items() if k not in ("sparsity",)}
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in keys.items()]
    assert cli("train", "--out", tmp_path / "cli", "--sparsity", "0,0.9", *flags, "--quiet")[0] == 0
    from_cli = sp.load_run(tmp_path / "cli")
    from_api = sp.train(sp.Config(**SMALL), progress=False)
    for name, tensor in from_api.params.items():
        assert torch.equal(from_cli.params[name], tensor), name
    assert from_cli.history.equals(from_api.history)


@pytest.mark.parametrize("engine", ["fused", "compiled", "reference"])
def test_sample_is_what_each_engine_trained_on(engine):
    """The loss at step s is taken on batch s before the update, so each engine's first
    losses must equal the loss of its weights on sp.sample's batches."""
    from superposition.models import forward, init_params, loss_per_instance

    config = sp.Config(**{**SMALL, "steps": 2, "engine": engine, "data": "seed"})
    batches = sp.sample(config, steps=range(2))
    assert batches.shape == (2, 2, 256, 5)
    importance = torch.tensor(config.importance)

    def loss(params, x):
        return loss_per_instance(forward(params, x, config), x, importance, config)

    start = init_params(config, torch.Generator().manual_seed(config.seed))
    two = sp.train(config, progress=False)
    one = sp.train(config.model_copy(update={"steps": 1}), progress=False)
    torch.testing.assert_close(torch.tensor(two.history.iloc[0].to_numpy()), loss(start, batches[0]), rtol=1e-5, atol=0)
    torch.testing.assert_close(torch.tensor(two.history.iloc[1].to_numpy()), loss(one.params, batches[1]), rtol=1e-5, atol=0)


def test_the_engines_agree_after_training():
    config = sp.Config(**{**SMALL, "steps": 2000})
    fused = sp.train(config.model_copy(update={"engine": "fused"}), progress=False)
    reference = sp.train(config.model_copy(update={"engine": "reference"}), progress=False)
    for name, tensor in fused.params.items():
        torch.testing.assert_close(reference.params[name], tensor, rtol=0, atol=1e-3)
    difference = max(float((reference.params[n] - t).abs().max()) for n, t in fused.params.items())
    assert difference < 1e-3, difference


def test_module_and_hooks(run):
    x = sp.sample(run.config, steps=[5])[0]
    module = run.module()
    assert isinstance(module, torch.nn.Module)
    seen = []
    module.hidden.register_forward_hook(lambda mod, inputs, output: seen.append(output.detach()))
    out = module(x).detach()
    torch.testing.assert_close(out, run.forward(x))
    torch.testing.assert_close(seen[0], run.encode(x))
    assert run.encode(x).shape == (2, 256, 2)


def test_indexing_gives_one_instance(run):
    x = sp.sample(run.config, steps=[3])[0]
    one = run[1]
    assert len(one) == 1 and one.config.feature_probability == [run.config.feature_probability[1]]
    torch.testing.assert_close(one.forward(x[1:2])[0], run.forward(x)[1])
    assert one.metrics["instances"][0] == run.metrics["instances"][1]
    assert one.history[0].equals(run.history[1].rename(0))
    with pytest.raises(IndexError):
        run[2]


def test_plot_returns_figures(run):
    from matplotlib.figure import Figure

    for name in ("gram", "norms", "weights", "polygon"):
        assert isinstance(run.plot(name), Figure)
    with pytest.raises(sp.ConfigError, match="unknown"):
        run.plot("nope")


class Scaled(Kind):
    """A kind defined outside the package: x' = ReLU(s · h Wᵀ + b), a learned scale per instance."""

    name, formula = "test-scaled", "s · x W Wᵀ"
    figures = ("norms",)

    def shapes(self, config):
        return {**super().shapes(config), "s": (config.instances, 1, 1)}

    def init(self, config, generator):
        params = super().init(config, generator)
        params["s"] = torch.ones(config.instances, 1, 1)
        return params

    def decoder(self, params):
        return params["W"].transpose(1, 2) * params["s"]


def test_a_kind_registered_in_a_test_file_trains_saves_and_loads(tmp_path):
    sp.register(Scaled)
    try:
        config = sp.Config(model="test-scaled", features=5, hidden=2, sparsity=[0.9], steps=200, batch_size=128)
        run = sp.train(config, progress=False)
        assert run.config.engine == ("compiled" if run.config.device == "cuda" else "reference")  # not the fused one
        assert not torch.equal(run.params["s"], torch.ones(1, 1, 1))  # the scale was trained
        run.save(tmp_path / "scaled")
        assert sorted(p.name for p in (tmp_path / "scaled").glob("*.png")) == ["test-scaled-relu-5x2-norms.png"]
        back = sp.load_run(tmp_path / "scaled")
        assert torch.equal(back.params["s"], run.params["s"])
        with pytest.raises(sp.ConfigError, match="fused engine does not run"):
            sp.train(config.model_copy(update={"engine": "fused"}), progress=False)
    finally:
        KINDS.pop("test-scaled")


def test_module_copies_are_independent_and_pickle(run, tmp_path):
    import copy

    module = run.module()
    twin = copy.deepcopy(module)
    with torch.no_grad():
        twin.weights["W"].zero_()
    x = sp.sample(run.config, steps=[1])[0]
    torch.testing.assert_close(module(x).detach(), run.forward(x))  # the original is untouched
    torch.save(module, tmp_path / "module.pt")
    back = torch.load(tmp_path / "module.pt", weights_only=False)
    torch.testing.assert_close(back(x).detach(), run.forward(x))


def test_indexing_takes_numpy_integers(run):
    assert run[np.int64(1)].config.feature_probability == run[1].config.feature_probability
