import math

import pytest
import torch

import superposition as sp
from superposition import data


def sample(kind, densities, features, rows, seed, step=0):
    """`rows` examples per density, drawn as training draws them at `step`."""
    config = sp.Config(features=features, hidden=2, sparsity=[1 - p for p in densities], data=kind, seed=seed)
    return data.batch(config, data.feature_probability(config), torch.arange(len(densities)), step, rows)


@pytest.mark.parametrize("p", [1.0, 0.3, 0.05])
def test_paper_density_and_mean(p):
    x = sample("paper", [p], 50, 20_000, 0)
    assert x.shape == (1, 20_000, 50)
    present = x > 0
    n = present.numel()
    assert present.float().mean().item() == pytest.approx(p, abs=4 * math.sqrt(p * (1 - p) / n) + 1e-9)
    # present values are U[0, 1]: mean 1/2, variance 1/12, whatever the density
    values = x[present]
    assert values.mean().item() == pytest.approx(0.5, abs=4 * math.sqrt(1 / 12 / values.numel()))
    assert values.var().item() == pytest.approx(1 / 12, rel=0.03)
    assert values.max().item() <= 1.0


def test_paper_each_instance_has_its_own_density():
    x = sample("paper", [0.9, 0.1], 20, 20_000, 1)
    density = (x > 0).float().mean(dim=(1, 2))
    assert density[0].item() == pytest.approx(0.9, abs=0.01)
    assert density[1].item() == pytest.approx(0.1, abs=0.01)


def test_paper_presence_independent_of_value():
    # The seed's coupled draw would make present values < p; the paper's must not.
    x = sample("paper", [0.2], 20, 20_000, 2)
    assert (x[x > 0] > 0.2).float().mean().item() == pytest.approx(0.8, abs=0.01)


@pytest.mark.parametrize("p", [1.0, 0.3, 0.01])
def test_seed_rows_are_unit_or_zero(p):
    x = sample("seed", [p], 20, 10_000, 3)
    norms = x.norm(dim=-1)
    nonzero = norms > 0
    assert torch.allclose(norms[nonzero], torch.ones_like(norms[nonzero]), atol=1e-5)
    # a row is all-zero exactly when no feature is present: probability (1-p)^20
    assert (~nonzero).float().mean().item() == pytest.approx((1 - p) ** 20, abs=0.01)


def test_seed_density():
    p = 0.3
    x = sample("seed", [p], 20, 20_000, 4)
    assert (x > 0).float().mean().item() == pytest.approx(p, abs=0.005)


def test_same_seed_and_step_same_batch():
    a = sample("paper", [0.5], 5, 64, 7)
    assert torch.equal(a, sample("paper", [0.5], 5, 64, 7))
    assert not torch.equal(a, sample("paper", [0.5], 5, 64, 7, step=1))
    assert not torch.equal(a, sample("paper", [0.5], 5, 64, 8))


@pytest.mark.parametrize(
    "keys",
    [
        {},
        {"data": "signed"},
        {"data": "seed"},
        {"correlation": "correlated", "set_size": 2},
        {"correlation": "anticorrelated", "set_size": 3, "data": "signed", "sparsity": [0.7, 0.8, 0.9]},
        {"data": "synthetic"},  # U[0, 1] values of their own, hashed where a feature fires
        {"data": "synthetic", "magnitude": "normal", "magnitude_mean": 2.0, "magnitude_mean_end": -0.5},  # constant per feature, ReLU'd
    ],
)
def test_the_torch_stream_is_the_kernels_bit_for_bit(keys):
    """data.batch (what the reference engine and sp.sample draw) equals fused.sample exactly."""
    import numpy as np

    from superposition import data
    from superposition.kernels import fused
    from superposition.config import resolve

    config = resolve({"features": 6, "sparsity": [0, 0.5, 0.9], "batch_size": 300, "seed": 12345678901234, **keys})
    probs = data.feature_probability(config)
    for step in (0, 7, 123456):
        x = data.batch(config, probs, torch.arange(3) + 4, step)
        for i in range(3):
            draw = data.GENERATORS[config.data].kernel_draw(config)
            kernel = fused.sample(
                probs[i].numpy(), config.seed, i + 4, step, config.batch_size,
                draw.code, draw.set_mode, draw.set_size, np.asarray(draw.magnitudes, np.float32),
            )  # fmt: skip
            np.testing.assert_array_equal(x[i].numpy().T, kernel)
