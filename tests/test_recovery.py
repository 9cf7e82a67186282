"""Scoring a dictionary against known feature directions (recovery.py)."""

import math

import pytest
import torch

import superposition as sp
from superposition.analysis.recovery import MATCH, absorption, cosines, score


def _unit(shape, seed):
    return torch.nn.functional.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_the_true_directions_score_one_and_recover_everything():
    features = _unit((2, 12, 6), 0) * torch.rand(2, 12, 1, generator=torch.Generator().manual_seed(1)).add(0.6)
    # the same directions, rescaled and shuffled: scale and order do not matter
    latents = features[:, torch.randperm(12, generator=torch.Generator().manual_seed(2))] * 3
    for row in score(features, latents):
        assert row["mmcs"] == pytest.approx(1.0, abs=1e-6) and row["recovered"] == 12
        assert (row["latents_matched"], row["latents_duplicate"], row["latents_unmatched"]) == (12, 0, 0)


def test_duplicates_negatives_and_dead_latents_are_told_apart():
    features = torch.eye(3)[None]  # three orthogonal features in 3-D
    near = torch.nn.functional.normalize(torch.tensor([1.0, 0.1, 0.0]), dim=0)
    latents = torch.stack([torch.eye(3)[0], near, -torch.eye(3)[1], torch.zeros(3)])[None]
    (row,) = score(features, latents)
    # feature 0 twice (the exact one matched, the near copy a duplicate), feature 1 only as
    # its negative (a latent with a non-negative activation cannot write it), a dead latent
    assert row["recovered"] == 1 and row["mmcs"] == pytest.approx((1 + 0.1 / math.sqrt(1.01) + 0) / 3, abs=1e-6)
    assert (row["latents_matched"], row["latents_duplicate"], row["latents_unmatched"]) == (1, 1, 2)


def test_random_latents_score_what_chance_gives():
    # cosines of random unit vectors in d dimensions are ~ N(0, 1/d): the best of L is near
    # sqrt(2 ln L / d), far below MATCH
    d, latents = 256, 1024
    (row,) = score(_unit((1, 64, d), 3), _unit((1, latents, d), 4))
    assert 0.6 * math.sqrt(2 * math.log(latents) / d) < row["mmcs"] < 1.2 * math.sqrt(2 * math.log(latents) / d)
    assert row["recovered"] == 0 and row["latents_unmatched"] == latents


def test_a_run_scores_a_dictionary_of_its_own_feature_directions():
    run = sp.train(sp.Config(features=5, hidden=2, sparsity=[0.9], importance_decay=1.0, steps=2000, lr=3e-3, device="cpu"), progress=False)
    W = run.params["W"]
    represented = int((W.norm(dim=-1) > 0.5).sum())
    (row,) = run.recovery(W * 2)
    assert row["represented"] == represented and row["recovered"] == represented and row["mmcs"] == pytest.approx(1.0, abs=1e-5)
    # two of the directions alone recover those two: the others lie 72° (a pentagon) or more away
    first_two = W[:, (W[0].norm(dim=-1) > 0.5).nonzero().flatten()[:2]]
    (row,) = run.recovery(first_two)
    assert row["recovered"] == 2 and row["latents_matched"] == 2 and row["mmcs"] < 1 - (1 - MATCH) * 2 / 5
    with pytest.raises(sp.ConfigError, match="latents: expected shape"):
        run.recovery(torch.zeros(1, 4, 3))


def test_mcc_is_the_best_one_to_one_matching_not_the_greedy_one():
    from superposition.analysis.recovery import mcc

    # greedy by feature takes latent 0 for feature 0 (0.9) and leaves feature 1 its 0.1;
    # the best one-to-one matching crosses: (0.8 + 0.85) / 2. Signs do not matter
    assert mcc(torch.tensor([[0.9, -0.8], [0.85, 0.1]])) == pytest.approx(0.825)
    # more latents than features: one pair per feature; fewer: one per latent
    assert mcc(torch.tensor([[0.2, 1.0, 0.3], [0.1, 0.9, 0.4]])) == pytest.approx((1.0 + 0.4) / 2)
    assert mcc(torch.tensor([[0.5], [0.7], [0.1]])) == pytest.approx(0.7)


def test_uniqueness_counts_the_distinct_features_the_latents_take():
    features = torch.eye(3)[None]
    near = torch.nn.functional.normalize(torch.tensor([1.0, 0.1, 0.0]), dim=0)
    latents = torch.stack([torch.eye(3)[0], near, -torch.eye(3)[1], torch.eye(3)[2]])[None]
    (row,) = score(features, latents)
    assert row["uniqueness"] == pytest.approx(3 / 4)  # features 0 (twice), 1 (by |cos|), 2
    assert row["mcc"] == pytest.approx(1.0)  # 0, 1 and 2 each have a latent at |cos| 1


def test_classification_scores_each_latent_against_its_closest_feature():
    from superposition.analysis.recovery import classification

    cos = torch.tensor([[0.9, 0.1, 0.0], [0.2, -0.95, 0.0]])  # latent 0 ~ feature 0, 1 ~ 1; latent 2 dead
    present = torch.tensor([[1, 0], [1, 1], [0, 1], [0, 0]], dtype=torch.bool)
    fires = torch.tensor([[1, 0, 0], [1, 1, 0], [1, 0, 0], [0, 1, 0]], dtype=torch.bool)
    scores = classification(cos, present, fires)
    # latent 0: fires on rows 0-2, feature 0 present on 0-1: precision 2/3, recall 1;
    # latent 1: fires on 1 and 3, feature 1 present on 1-2: 1/2 and 1/2; latent 2: 0
    f1 = [2 * (2 / 3) / (2 / 3 + 1), 0.5, 0.0]
    assert scores["precision"] == pytest.approx((2 / 3 + 1 / 2) / 3)
    assert scores["recall"] == pytest.approx((1 + 1 / 2) / 3)
    assert scores["f1_per_latent"] == pytest.approx(f1, abs=1e-6) and scores["f1"] == pytest.approx(sum(f1) / 3)


def test_absorption_is_zero_for_an_oracle_sae_and_one_for_a_constructed_absorbing_one():
    # parent 0 with children 1 and 2, feature 3 alone; orthonormal directions in 4 dims
    features = torch.eye(4)
    parents = [-1, 0, 0]
    present = torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [1, 0, 1, 1], [0, 0, 0, 1], [1, 1, 0, 1]], dtype=torch.bool)
    oracle = cosines(features[None], features[None])[0]
    assert absorption(features, oracle, present, present, parents) == {"absorption": 0.0, "absorption_per_child": [0.0, 0.0]}
    # the children's latents write parent + child; the parent's fires only without a child
    latents = torch.nn.functional.normalize(torch.stack([features[0], features[0] + features[1], features[0] + features[2], features[3]]), dim=-1)
    cos = cosines(features[None], latents[None])[0]
    fires = present.clone()
    fires[:, 0] = present[:, 0] & ~present[:, 1] & ~present[:, 2]
    assert absorption(features, cos, present, fires, parents) == {"absorption": 1.0, "absorption_per_child": [1.0, 1.0]}
    # the parent's latent firing on one of child 1's two rows halves its rate
    fires[1, 0] = True
    assert absorption(features, cos, present, fires, parents)["absorption_per_child"] == [0.5, 1.0]
    # silent beside the child but the child's latent is its own direction: a false negative, not absorption
    fires = present.clone()
    fires[:, 0] = present[:, 0] & ~present[:, 1] & ~present[:, 2]
    assert absorption(features, oracle, present, fires, parents)["absorption"] == 0.0
    # non-orthogonal features: the child's own cosine with its parent is not absorption
    skewed = torch.nn.functional.normalize(torch.tensor([[1.0, 0, 0, 0], [0.6, 0.8, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]), dim=-1)
    cos = cosines(skewed[None], skewed[None])[0]
    assert absorption(skewed, cos, present, fires, parents)["absorption"] == 0.0
