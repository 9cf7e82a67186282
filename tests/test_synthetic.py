"""The `synthetic` generator's parts (SAELens's synthetic data): firing profiles, trees of
features, low-rank correlated firing and magnitudes, each checked against its definition
over many draws; and a dictionary SAE reads it."""

import math

import pytest
import torch
from scipy.stats import multivariate_normal, norm

import superposition as sp
from superposition.data import GENERATORS, batch
from superposition.data import hierarchy, lowrank

ROWS = 200_000


def drawn(config: sp.Config, rows: int = ROWS, step: int = 0) -> torch.Tensor:
    """(rows, feat) values of instance 0 at `step`."""
    probs = torch.tensor(config.feature_probability)
    return batch(config, probs, torch.arange(config.instances), step, rows)[0]


def test_zipf_probabilities_follow_their_formula_and_rates():
    n, a, high, low = 50, 0.5, 0.4, 0.002
    config = sp.Config(features=n, hidden=5, data="synthetic", firing="zipf", firing_max=high, firing_min=low, zipf_exponent=a)
    r = [i**-a for i in range(1, n + 1)]
    expected = [low + (high - low) * (v - r[-1]) / (r[0] - r[-1]) for v in r]
    assert config.feature_probability == [pytest.approx(expected, rel=1e-12)]
    assert config.feature_probability[0][0] == pytest.approx(high) and config.feature_probability[0][-1] == pytest.approx(low)
    rate = (drawn(config) != 0).double().mean(0)
    p = torch.tensor(expected, dtype=torch.float64)
    assert ((rate - p).abs() < 5 * (p * (1 - p) / ROWS).sqrt()).all()


def test_a_linear_profile_and_bad_profiles():
    config = sp.Config(features=5, hidden=2, firing="linear", firing_max=0.5, firing_min=0.1, replicates=2)
    assert config.feature_probability == [pytest.approx([0.5, 0.4, 0.3, 0.2, 0.1])] * 2
    with pytest.raises(sp.ConfigError, match="^firing_min: 0.5 is above firing_max"):
        sp.Config(features=5, hidden=2, firing="zipf", firing_max=0.1, firing_min=0.5)
    with pytest.raises(sp.ConfigError, match="^sparsity: a firing profile gives every feature's probability"):
        sp.Config(features=5, hidden=2, firing="zipf", firing_max=0.1, firing_min=0.05, sparsity=[0.9])
    with pytest.raises(sp.ConfigError, match="^firing_max: belongs to a firing profile"):
        sp.Config(features=5, hidden=2, firing_max=0.1)


TREE = {"features": 20, "hidden": 5, "data": "synthetic", "sparsity": [0.7], "roots": 3, "branching": 3}


@pytest.mark.parametrize("exclusive", [False, True])
def test_a_child_never_fires_without_its_parent_and_exclusive_siblings_exclude(exclusive):
    config = sp.Config(**TREE, exclusive=exclusive)
    parents = GENERATORS["synthetic"].hierarchy(config)
    assert parents == [-1, -1, -1, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    on = drawn(config) != 0
    for child, parent in enumerate(parents):
        if parent >= 0:
            assert not (on[:, child] & ~on[:, parent]).any()
            assert on[:, child].any()
    siblings = torch.stack([on[:, 3 + 3 * r : 6 + 3 * r].sum(1) for r in range(3)])
    if exclusive:
        assert siblings.max() == 1
        # given its parent, a child fires with the chance that it, and at least one sibling
        # would have, fired, shared uniformly: (1 - 0.7**3) / 3 = 0.219
        share = on[:, 3].double().sum() / on[:, 0].double().sum()
        assert float(share) == pytest.approx((1 - 0.7**3) / 3, abs=0.01)
    else:
        assert siblings.max() == 3  # 0.3**3 of a parent's rows
    assert (on[:, 12:].double().mean(0) - 0.3).abs().max() < 0.01  # the rest independent


def test_compensation_keeps_a_child_at_its_rate_and_a_deep_tree_is_numbered_breadth_first():
    assert hierarchy.built(2, 2, 2) == [-1, -1, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    config = sp.Config(features=14, hidden=5, data="synthetic", sparsity=[0.8], roots=2, branching=2, depth=2, compensate=True)
    rate = (drawn(config) != 0).double().mean(0)
    assert (rate - 0.2).abs().max() < 0.01  # every level at 0.2, not 0.2 ** (depth + 1)
    plain = sp.Config(features=14, hidden=5, data="synthetic", sparsity=[0.8], roots=2, branching=2, depth=2)
    assert float((drawn(plain) != 0).double().mean(0)[-1]) == pytest.approx(0.2**3, abs=0.003)


def test_a_tree_given_by_parents_and_bad_trees():
    config = sp.Config(features=6, hidden=2, data="synthetic", sparsity=[0.5], parents=[-1, 0, 1, 1])
    on = drawn(config, 50_000) != 0
    assert not (on[:, 2] & ~on[:, 0]).any() and not (on[:, 3] & ~on[:, 1]).any()
    with pytest.raises(sp.ConfigError, match=r"^parents: feature 1's parent 1 must be -1 \(a root\) or an earlier feature$"):
        sp.Config(features=6, hidden=2, data="synthetic", parents=[-1, 1])
    with pytest.raises(sp.ConfigError, match=r"^roots: the tree has 12 features, more than features \(10\)"):
        sp.Config(features=10, hidden=2, data="synthetic", roots=3, branching=3)


def test_low_rank_firing_is_correlated_as_its_copula_says():
    config = sp.Config(features=8, hidden=3, data="synthetic", sparsity=[0.8], correlation_rank=2, correlation_scale=0.5, structure_seed=3)
    on = (drawn(config) != 0).double()
    F = lowrank.factor(3, 8, 2, 0.5, torch.device("cpu")).double()
    d = lowrank.diagonal(F)
    floored = (F * F).sum(1) > 1 - lowrank.MIN_DIAGONAL
    assert floored.sum() == 2 and torch.equal(d[floored], torch.full((2,), lowrank.MIN_DIAGONAL, dtype=d.dtype))
    sd = ((F * F).sum(1) + d).sqrt()  # z's standard deviation: 1 unless floored
    rho = ((F @ F.T) / torch.outer(sd, sd)).numpy()
    t = norm.ppf(0.8) / sd.numpy()  # the firing threshold in standard units
    rate = 1 - norm.cdf(t)
    assert (abs(on.mean(0).numpy() - rate) < 0.01).all() and (abs(rate[~floored.numpy()] - 0.2) < 1e-6).all()
    checked = 0
    for i in range(8):
        for j in range(i + 1, 8):
            both = multivariate_normal(mean=[0, 0], cov=[[1, rho[i, j]], [rho[i, j], 1]]).cdf([-t[i], -t[j]])
            expected = (both - rate[i] * rate[j]) / math.sqrt(rate[i] * (1 - rate[i]) * rate[j] * (1 - rate[j]))
            observed = float(torch.corrcoef(on[:, [i, j]].T)[0, 1])
            assert observed == pytest.approx(expected, abs=0.012), (i, j)
            checked += abs(expected) > 0.05
    assert checked >= 5  # the scale gives correlations well clear of noise
    independent = sp.Config(features=8, hidden=3, data="synthetic", sparsity=[0.8])
    assert torch.corrcoef((drawn(independent) != 0).double().T).fill_diagonal_(0).abs().max() < 0.012


def test_normal_magnitudes_linear_means_folded_spreads_and_scaled_children():
    keys = {"features": 4, "hidden": 2, "data": "synthetic", "sparsity": [0.0], "magnitude": "normal"}
    x = drawn(sp.Config(**keys, magnitude_mean=5.0, magnitude_mean_end=2.0), 1000)
    assert torch.equal(x, torch.tensor([5.0, 4.0, 3.0, 2.0]).expand(1000, 4))  # std 0: the means themselves
    x = drawn(sp.Config(**keys, magnitude_mean=3.0, magnitude_std=0.5, magnitude_std_spread=0.5, structure_seed=1))
    std = x.std(0)
    spread = (0.5 + 0.5 * lowrank.structure(1, lowrank.SPREAD, 4, torch.device("cpu"))).abs()
    assert torch.allclose(std, spread, rtol=0.02) and torch.allclose(x.mean(0), torch.full((4,), 3.0), atol=0.01)
    scaled = drawn(sp.Config(**{**keys, "features": 3}, magnitude_mean=2.0, parents=[-1, 0, 0], scale_children=True), 100)
    assert torch.equal(scaled[:, 1], scaled[:, 0] * scaled[:, 0] / 2.0)
    with pytest.raises(sp.ConfigError, match='^magnitude_std: applies to normal magnitudes; give magnitude = "normal"$'):
        sp.Config(features=4, hidden=2, data="synthetic", magnitude_std=0.5)


def test_a_dictionary_sae_reads_synthetic_data_with_a_zipf_profile(tmp_path):
    sae = sp.train_sae(
        data="dictionary", features=12, dims=6, generator="synthetic", roots=2, branching=2, exclusive=True,
        firing="zipf", firing_max=0.3, firing_min=0.05, kind="topk", k=2, steps=200, batch_size=256, engine="reference",
    )  # fmt: skip
    assert sae.config.generator == "synthetic" and sae.config.firing["firing"] == "zipf" and sae.config.density is None
    assert sae.config.data_options["roots"] == 2
    loaded = sp.load_sae(sae.save(tmp_path / "s", figures=False))
    assert loaded.config == sae.config
    with pytest.raises(sp.ConfigError, match="^density: a firing profile gives every feature's probability"):
        sp.train_sae(data="dictionary", features=12, dims=6, density=0.1, firing="zipf", firing_max=0.3, firing_min=0.05)
    with pytest.raises(sp.ConfigError, match="^roots: belongs to --data dictionary"):
        sp.train_sae(sp.train(sp.Config(steps=10, sparsity=[0.9])), roots=2)


def test_the_largest_uniform_gives_a_finite_normal():
    u = torch.tensor([0.0, 0.5, 1 - 2.0**-24])
    z = lowrank.normal(u)
    assert torch.isfinite(z).all() and float(z[0]) == pytest.approx(-float(z[2]), rel=1e-6) and float(z[1]) == pytest.approx(2.0**-25 * 2.5066, rel=1e-3)


def test_the_cpu_hash_has_torchs_bits_and_sparse_draws_match_dense_ones():
    from superposition.data import stream

    keys = stream.step_keys(3, torch.arange(4), 7)
    counters = stream.counters(30, 50, torch.device("cpu")) + 2**41
    dense = stream.uniform(keys, counters)
    assert torch.equal(dense, stream._torch_unit(keys.view(-1, 1, 1) + counters * stream._int64(stream.GOLDEN)))
    s = stream.Stream(keys, stream.counters(30, 50, torch.device("cpu")))
    where = s.uniform(block=9) < 0.1
    assert torch.equal(s.uniform_at(where, block=2), torch.where(where, s.uniform(block=2), 0.0))
    assert torch.equal(s.uniform(block=2, first=7), s.uniform(block=2)[:, :7])


def test_exclusive_siblings_of_some_parents_only():
    config = sp.Config(**{**TREE, "exclusive": [1]})
    on = drawn(config) != 0
    assert on[:, 6:9].sum(1).max() == 1 and on[:, 3:6].sum(1).max() == 3 and on[:, 9:12].sum(1).max() == 3
    with pytest.raises(sp.ConfigError, match=r"^exclusive: \[12\] must list features of the tree"):
        sp.Config(**{**TREE, "exclusive": [12]})


def test_constant_magnitudes_skip_their_draw_and_give_what_a_zero_spread_would():
    from superposition.data.stream import Stream, counters, step_keys
    from superposition.data.synthetic import Parts, compose

    p = torch.linspace(0.05, 0.5, 40)[None, :, None]
    stream = Stream(step_keys(0, torch.arange(1), 3), counters(40, 500, torch.device("cpu")))
    mean = torch.linspace(2.0, -1.0, 40)  # ReLU(μ): the negative means give 0
    drawn = compose(Parts([], False, False, False, None, mean, torch.zeros(40)), p, stream)
    skipped = compose(Parts([], False, False, False, None, mean, None), p, stream)
    assert torch.equal(drawn, skipped) and (skipped > 0).any()


def test_orthogonalize_spreads_an_overcomplete_dictionary_into_a_tight_frame(tmp_path):
    from superposition.saes.sources import DictionarySource, spread
    from superposition.saes.training import dictionary_of

    F = torch.nn.functional.normalize(torch.randn(2, 64, 16, generator=torch.Generator().manual_seed(0)), dim=-1)

    def mean_square_cosine(F):
        cos = F @ F.transpose(1, 2)
        return ((cos**2).sum((1, 2)) - 64) / (64 * 63)

    welch = (64 - 16) / (16 * 63)  # no 64 unit vectors in 16 dims have a lower mean squared cosine
    spread_out = spread(F, 100)
    assert torch.allclose(spread_out.norm(dim=-1), torch.ones(2, 64))
    assert (mean_square_cosine(F) > welch * 1.2).all() and torch.allclose(mean_square_cosine(spread_out), torch.tensor(welch), rtol=2e-3)
    sae = sp.train_sae(data="dictionary", features=24, dims=8, density=0.1, orthogonalize=30, kind="relu", steps=20, device="cpu", progress=False)
    plain = DictionarySource(dictionary_of(sae.config), sae.config.seed, "cpu").features  # the same draw, not spread
    assert sae.config.orthogonalize == 30 and torch.equal(sae.features, spread(plain, 30)) and not torch.allclose(sae.features, plain)
    for bad, message in ((dict(orthogonal=True), "^orthogonalize: the directions are orthonormal already"), (dict(orthogonalize=-1), "^orthogonalize:")):
        with pytest.raises(sp.ConfigError, match=message):
            sp.train_sae(data="dictionary", features=8, dims=8, density=0.1, **{"orthogonalize": 5, **bad})


@pytest.mark.parametrize("finite", [None, 200])  # fresh data each step, and a finite training set
def test_synthetic_data_without_trees_trains_on_the_fused_engine_as_on_the_reference(finite):
    from superposition.config import resolve

    keys = {"features": 6, "hidden": 2, "data": "synthetic", "magnitude": "normal", "magnitude_mean": 1.5, "magnitude_mean_end": 0.5,
            "sparsity": [0.8, 0.9], "steps": 200, "device": "cpu", "dataset_size": finite}  # fmt: skip
    fused = sp.train(resolve({**keys, "engine": "fused"}), progress=False)
    reference = sp.train(resolve({**keys, "engine": "reference"}), progress=False)
    assert (fused.config.engine, reference.config.engine) == ("fused", "reference")
    for name, value in reference.params.items():
        assert torch.allclose(fused.params[name], value, atol=1e-4), name
    with pytest.raises(sp.ConfigError, match=r"no draw of synthetic data \(1 trees.* synthetic without trees, correlation or drawn magnitudes\)"):
        sp.train(resolve({**keys, "engine": "fused", "roots": 1, "branching": 2}), progress=False)
