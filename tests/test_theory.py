import numpy as np
import pytest

from superposition.analysis.theory import (
    PHASES_3X2,
    antipodal_loss,
    best_antipodal_loss,
    candidate_losses,
    candidate_losses_3x2,
    feature_loss,
    observed_configuration,
    phase,
    phase_3x2,
    variance,
)


def _monte_carlo(b: float, p: float, n: int = 2_000_000, seed: int = 0) -> tuple[float, float]:
    """Sample mean of the error and its standard error."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, 2)) * (rng.random((n, 2)) < p)
    err = (x[:, 0] - np.maximum(x[:, 0] - x[:, 1] + b, 0)) ** 2
    return float(err.mean()), float(err.std() / np.sqrt(n))


@pytest.mark.parametrize("b", [-0.6, -0.2, 0.0, 0.15, 0.5])
@pytest.mark.parametrize("p", [1.0, 0.3, 0.05])
def test_closed_form_matches_sampling(b, p):
    mean, stderr = _monte_carlo(b, p)
    assert abs(antipodal_loss(b, p) - mean) < 4 * stderr + 1e-12


def test_hand_computed_points():
    # dense, b = 0: both present, error min(x0, x1)², E = 1/6
    assert antipodal_loss(0.0, 1.0) == pytest.approx(1 / 6)
    # a feature present 30% of the time: Var = 0.3/3 - 0.09/4
    assert variance(0.3) == pytest.approx(0.0775)
    # b = -1 switches the output off: the loss is E[x²] = p/3
    assert antipodal_loss(-1.0, 0.4) == pytest.approx(0.4 / 3)


def test_optimal_bias_is_a_minimum():
    loss, b = best_antipodal_loss(0.2)
    for delta in (-0.01, 0.01):
        assert antipodal_loss(b + delta, 0.2) >= loss


def test_phases_at_the_corners():
    # a very important second feature at any density: learned, first dropped
    assert phase(10.0, 1.0) == "learned alone"
    # unimportant and dense: not learned
    assert phase(0.1, 1.0) == "not learned"
    # equal importance and very sparse: superposition is cheaper than dropping either
    assert phase(1.0, 0.01) == "superposition"
    losses = candidate_losses(1.0, 0.01)
    assert losses["superposition"] < losses["not learned"] == losses["learned alone"]


# n=3, m=2: the paper's four configurations and the triangle


@pytest.mark.parametrize("b", [-0.6, -0.2, 0.0, 0.15, 0.5])
@pytest.mark.parametrize("p", [1.0, 0.3, 0.05])
def test_one_antipodal_partner_is_the_closed_form(b, p):
    assert feature_loss(b, p, (-1.0,)) == pytest.approx(float(antipodal_loss(b, p)), abs=1e-12)


@pytest.mark.parametrize("p", [1.0, 0.5, 0.1, 0.01])
def test_triangle_at_zero_bias_by_hand(p):
    # one partner present: p·E[(u/2)² − (u/2)³·2/3] = p/16; both: p·E[s² + 2s³/3], s = −(u+v)/2: p/6
    assert feature_loss(0.0, p, (-0.5, -0.5)) == pytest.approx(p**2 * (1 - p) / 8 + p**3 / 6, rel=1e-12)


@pytest.mark.parametrize(("b", "p"), [(0.2, 0.5), (-0.1, 0.1), (0.05, 1.0)])
def test_triangle_matches_sampling(b, p):
    rng = np.random.default_rng(0)
    x = rng.random((1_000_000, 3)) * (rng.random((1_000_000, 3)) < p)
    err = (x[:, 0] - np.maximum(x[:, 0] - 0.5 * x[:, 1] - 0.5 * x[:, 2] + b, 0)) ** 2
    assert abs(feature_loss(b, p, (-0.5, -0.5)) - err.mean()) < 4 * err.std() / 1000


def test_the_candidates_of_3x2():
    pair = best_antipodal_loss(0.05)[0]
    losses = candidate_losses_3x2(4.0, 0.05)
    assert losses["others in a pair"] == pytest.approx(2 * pair)
    assert losses["extra in a pair"] == pytest.approx(5 * pair)
    # sparse: an important extra feature gets its own dimension, an unimportant one is paired
    assert phase_3x2(4.0, 0.05) == "others in a pair"
    assert phase_3x2(0.5, 0.05) == "extra in a pair"
    assert phase_3x2(0.1, 1.0) == "not learned" and phase_3x2(10.0, 1.0) == "learned alone"


def _at(*degrees, norms=(1.0, 1.0, 1.0)):
    return np.array([[n * np.cos(np.radians(d)), n * np.sin(np.radians(d))] for n, d in zip(norms, degrees)])


def test_trained_configurations_are_read_from_the_direction_w_ignores():
    names = {
        "triangle": _at(0, 120, 240),
        "others in a pair": _at(10, 190, 100, norms=(1.0, 0.8, 1.1)),  # 0 and 1 antipodal, norms unequal
        "extra in a pair": _at(0, 90, 270),
        "not learned": _at(0, 90, 45, norms=(1.0, 1.0, 0.1)),
        "learned alone": _at(0, 90, 45, norms=(0.1, 1.0, 1.0)),
        "other": _at(0, 0, 90),  # 0 and 1 on the same side: no configuration of the paper's
    }
    found = observed_configuration(np.stack(list(names.values())))
    assert [PHASES_3X2[k] for k in found] == list(names)
