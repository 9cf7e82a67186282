"""A data generator is one class: a two-level hierarchy, registered from this file alone,
trains on the reference and compiled engines with `sp.sample` returning what training
drew, from a notebook and a finite set; the fused engine declines it and `auto` falls
back."""

import pytest
import torch
from jaxtyping import Float
from pydantic import Field
from torch import Tensor

import superposition as sp
from superposition import data
from superposition.data import GENERATORS, Generator, NoOptions, Stream
from superposition.models import forward, init_params, loss_per_instance
from superposition.training.loop import train


class Hierarchy(Generator):
    """Features in families of a parent and `children` children: a child can be present only
    when its parent is, then with its own probability; a present value is ~ U[0, 1)."""

    name = "test-hierarchy"

    class Options(NoOptions):
        children: int = Field(1, gt=0, description="Children after each parent feature.")

    def check(self, config) -> None:
        family = self.options(config).children + 1
        if config.features % family:
            raise ValueError(f"children: families of {family} do not divide features ({config.features})")

    def draw(self, options, p: Float[Tensor, "inst feat 1"], stream: Stream) -> Float[Tensor, "inst feat batch"]:
        family = options.children + 1
        present = stream.uniform(block=0) < p
        inst, feat, rows = present.shape
        parents = present.view(inst, feat // family, family, rows)[:, :, :1]
        present = (present.view(inst, feat // family, family, rows) & parents).view(inst, feat, rows)
        return torch.where(present, stream.uniform(block=1), 0.0)


@pytest.fixture
def hierarchy():
    sp.register_data(Hierarchy)
    yield
    GENERATORS.pop("test-hierarchy")


KEYS = {"features": 6, "hidden": 3, "sparsity": [0.0, 0.5], "data": "test-hierarchy", "children": 2, "steps": 40, "batch_size": 64}


def test_its_options_are_config_keys_checked_at_the_edge(hierarchy):
    config = sp.Config(**KEYS)
    assert config.data_options == {"children": 2}
    assert sp.Config(**{**KEYS, "children": 1}).data_options == {"children": 1}
    assert sp.Config(**{k: v for k, v in KEYS.items() if k != "children"}).data_options == {"children": 1}  # the default
    with pytest.raises(sp.ConfigError, match=r"^children: families of 4 do not divide features \(6\)$"):
        sp.Config(**{**KEYS, "children": 3})
    with pytest.raises(sp.ConfigError, match="^children: Input should be greater than 0"):
        sp.Config(**{**KEYS, "children": 0})
    with pytest.raises(sp.ConfigError, match="^children: an option of test-hierarchy data, not of 'paper'"):
        sp.Config(**{**KEYS, "data": "paper"})
    with pytest.raises(sp.ConfigError, match="^correlation: an option of paper and signed data, not of 'test-hierarchy'"):
        sp.Config(**{**KEYS, "correlation": "correlated"})
    with pytest.raises(sp.ConfigError, match="^data: unknown generator 'test-hierarchy'"):
        GENERATORS.pop("test-hierarchy")
        try:
            sp.Config(**{k: v for k, v in KEYS.items() if k != "children"})
        finally:
            sp.register_data(Hierarchy)


def test_a_child_is_present_only_with_its_parent(hierarchy):
    x = sp.sample(sp.Config(**{**KEYS, "sparsity": [0.5], "batch_size": 4000}), steps=[0, 1])
    present = (x > 0).view(2, 1, 4000, 2, 3)
    parent, children = present[..., :1], present[..., 1:]
    assert not (children & ~parent).any()
    assert (children.float().mean() - 0.25).abs() < 0.02  # 1/2 of its parent's 1/2
    assert (parent.float().mean() - 0.5).abs() < 0.02


@pytest.mark.parametrize("engine", ["reference", "compiled"])
def test_it_trains_on_what_sp_sample_returns(hierarchy, engine):
    """The loss at step s is taken on batch s before the update."""
    config = sp.Config(**{**KEYS, "steps": 2, "engine": engine, "device": "cpu"})
    batches = sp.sample(config, steps=range(2))
    importance = torch.tensor(config.importance)
    start = init_params(config, torch.Generator().manual_seed(config.seed))
    run = train(config)
    assert run.config.engine == engine
    expected = loss_per_instance(forward(start, batches[0], config), batches[0], importance, config)
    torch.testing.assert_close(run.history[0], expected, rtol=1e-5, atol=0)


def test_the_engines_agree_and_auto_falls_back_from_fused(hierarchy):
    config = sp.Config(**{**KEYS, "device": "cpu"})
    auto = train(config)
    assert auto.config.engine == "reference"  # the CPU's fastest engine, fused, has no draw of it
    compiled = train(config.model_copy(update={"engine": "compiled"}))
    for name, tensor in auto.params.items():
        torch.testing.assert_close(compiled.params[name], tensor, rtol=1e-4, atol=2e-5, msg=name)
    with pytest.raises(sp.ConfigError, match="^engine: the fused engine's kernels have no draw of test-hierarchy data"):
        train(config.model_copy(update={"engine": "fused"}))


def test_a_finite_set_of_it_is_the_streams_draw(hierarchy):
    config = sp.Config(**{**KEYS, "dataset_size": 50, "device": "cpu"})
    run = sp.train(config, progress=False)
    assert run.config.engine == "reference"
    probs, instances = data.feature_probability(config), torch.arange(config.instances)
    expected = data.batch(config, probs, instances, data.DATASET_STEP, rows=50)
    assert torch.equal(sp.sample(config, steps=[0])[0], expected)  # full batch: every step the whole set
    assert all(row["test_loss"] > 0 for row in run.metrics["instances"])


def test_the_option_comes_from_the_command_lines_generic_flag(cli, tmp_path):
    code, _, err = cli(
        "train", "--out", tmp_path / "run", "--features", "6", "--hidden", "2", "--sparsity", "0.8",
        "--steps", "20", "--data-option", "correlation=anticorrelated", "--data-option", "set_size=3", "--quiet",
    )  # fmt: skip
    assert code == 0, err
    assert sp.load_run(tmp_path / "run").config.data_options == {"correlation": "anticorrelated", "set_size": 3, "strength": 1.0}
    code, _, err = cli("train", "--out", tmp_path / "bad", "--data-option", "set_size", "--quiet")
    assert code == 2 and err.strip() == "error: data-option: 'set_size' is not KEY=VALUE, e.g. --data-option set_size=2"
    assert not (tmp_path / "bad").exists()


def test_a_correlated_set_of_partial_strength_keeps_each_probability_and_correlates_at_it():
    def presence(**options):
        config = sp.Config(features=4, hidden=2, feature_probability=[[0.3] * 4], batch_size=200_000,
                           correlation="correlated", set_size=2, **options)  # fmt: skip
        return (data.batch(config, data.feature_probability(config), torch.arange(1), 0)[0] > 0).float()

    for strength in (0.0, 0.5, 0.8):
        x = presence(strength=strength)
        assert x.mean(0).tolist() == pytest.approx([0.3] * 4, abs=0.005)
        r = torch.corrcoef(x.T)
        assert float(r[0, 1]) == pytest.approx(strength, abs=0.01) and float(r[2, 3]) == pytest.approx(strength, abs=0.01)
        assert float(r[1, 2]) == pytest.approx(0.0, abs=0.01)  # sets are independent of each other
    assert torch.equal(presence(strength=1.0), presence())  # 1: the full co-occurrence the kernels draw
    with pytest.raises(sp.ConfigError, match="strength: 0.5 applies to correlated sets only"):
        sp.Config(features=4, hidden=2, strength=0.5)
    with pytest.raises(sp.ConfigError, match="^engine: the fused engine's kernels have no draw of paper data in correlated sets of 2 "):
        sp.train(sp.Config(features=4, hidden=2, correlation="correlated", set_size=2, strength=0.5, engine="fused", steps=1))
