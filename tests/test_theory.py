import numpy as np
import pytest

from superposition.theory import antipodal_loss, best_antipodal_loss, candidate_losses, phase, variance


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
