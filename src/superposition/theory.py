"""Expected losses of candidate solutions, for the analytic phase diagrams.

The paper's n=2, m=1 phase diagram (feature 0 of importance 1, feature 1 of
importance r, both present with probability p and then ~ U[0, 1]) compares three
candidate solutions of the tied ReLU model, each with its best biases:

  not learned    W = [1, 0]:  feature 1 gets only its bias, best at its mean p/2:
                 loss r · Var(x) = r (p/3 − p²/4)
  learned alone  W = [0, 1]:  the same with the roles swapped: Var(x) = p/3 − p²/4
  superposition  W = [1, −1]: x'_0 = ReLU(x_0 − x_1 + b), symmetrically for x'_1:
                 loss (1 + r) · min_b ℓ(b)

ℓ(b) = E[(x_0 − ReLU(x_0 − x_1 + b))²] is computed in closed form: the
expectation splits by which features are present, and each piece is the integral of
a piecewise polynomial, done by hand below (valid for −1 ≤ b ≤ 1). The minimum over
b is found on a fine grid refined by golden-section search. Losses are sums over
features (the per-feature mean used in training only rescales all three alike).

Norms are fixed at 1 (the learned vectors are within a few percent of it); the
same three candidates decide n=3, m=2 when features 0 and 1 have importance 1 and
the third has r, since the feature left alone contributes no loss; the triangle
(all three at 120°) is a fourth candidate there that this module does not price.
"""

from __future__ import annotations

import numpy as np

PHASES = ("not learned", "learned alone", "superposition")
PHASE_COLOURS = ("#d9d9d9", "#4575b4", "#d73027")  # PHASES order, for every phase diagram


def observed_phase(norms: np.ndarray) -> np.ndarray:
    """Index into PHASES of trained models, from their feature norms (..., feat).

    The last feature is the extra one: not learned when its norm is at most 0.5,
    in superposition when every feature is represented, learned alone otherwise.
    """
    represented = np.asarray(norms) > 0.5
    return np.where(~represented[..., -1], 0, np.where(represented.all(-1), 2, 1))


def variance(p: np.ndarray | float) -> np.ndarray | float:
    """Var(x) of a feature present with probability p, value ~ U[0, 1]."""
    return p / 3 - p**2 / 4


def antipodal_loss(b: np.ndarray | float, p: np.ndarray | float) -> np.ndarray | float:
    """ℓ(b): expected squared error of one feature of an antipodal pair, bias b in [-1, 1]."""
    b = np.asarray(b, dtype=float)
    p = np.asarray(p, dtype=float)
    pos = np.clip(b, 0, None)
    neg = np.clip(b, None, 0)
    # (1) both absent: out = ReLU(b)
    none = pos**2
    # (2) only the partner present: out = ReLU(b − x_1), zero unless b > 0
    partner = pos**3 / 3
    # (3) only this feature present: out = ReLU(x_0 + b)
    alone = np.where(b >= 0, b**2, neg**2 + 2 * neg**3 / 3)
    # (4) both present: c = x_1 − b; err = c² where c < 0, else min(x_0, c)-shaped
    both = np.where(
        b >= 0,
        pos**3 / 3 + (1 - pos) ** 3 / 3 - (1 - pos) ** 4 / 6,
        1 / 6 + neg**3 / 3 + neg**4 / 6 - neg / 3,
    )
    return (1 - p) ** 2 * none + (1 - p) * p * partner + p * (1 - p) * alone + p**2 * both


def best_antipodal_loss(p: float) -> tuple[float, float]:
    """min over b of ℓ(b), and the minimising bias."""
    grid = np.linspace(-1, 1, 4001)
    k = int(np.argmin(antipodal_loss(grid, p)))
    lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
    golden = (np.sqrt(5) - 1) / 2
    for _ in range(60):
        a, c = hi - golden * (hi - lo), lo + golden * (hi - lo)
        if antipodal_loss(a, p) < antipodal_loss(c, p):
            hi = c
        else:
            lo = a
    b = (lo + hi) / 2
    return float(antipodal_loss(b, p)), float(b)


def candidate_losses(importance: float, p: float) -> dict[str, float]:
    """Expected loss of each candidate for the n=2, m=1 problem."""
    var = float(variance(p))
    return {
        "not learned": importance * var,
        "learned alone": var,
        "superposition": (1 + importance) * best_antipodal_loss(p)[0],
    }


def phase(importance: float, p: float) -> str:
    losses = candidate_losses(importance, p)
    return min(losses, key=losses.get)
