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

Norms are fixed at 1 (the learned vectors are within a few percent of it).

The n=3, m=2 diagram (features 0 and 1 of importance 1, the extra feature 2 of
importance r) has the paper's four candidates, named by the direction W ignores,
and the triangle, which the paper leaves out ("We do not consider a last solution of
putting all the features in joint superposition, W ⊥ [1, 1, 1]"):

  not learned       W ⊥ [0,0,1]  r · Var
  learned alone     W ⊥ [1,0,0]  Var            (an other feature dropped)
  extra in a pair   W ⊥ [0,1,1]  (1 + r) ℓ*     (the extra feature antipodal to an other)
  others in a pair  W ⊥ [1,1,0]  2 ℓ*           (the extra feature gets its own dimension)
  triangle          W ⊥ [1,1,1]  (2 + r) ℓ_△*   (three directions at 120°)

A feature's loss with partners at cosines c_j is an expectation over which partners
are present and their values; `feature_loss` integrates it exactly (Gauss-Legendre
on the pieces where the integrand is a polynomial), and with one partner at c = −1
it is ℓ(b) again.
"""

from __future__ import annotations

from functools import cache

import numpy as np

PHASES = ("not learned", "learned alone", "superposition")
PHASE_COLOURS = ("#d9d9d9", "#4575b4", "#d73027")  # PHASES order, for every phase diagram
# n=3, m=2: the candidates in the order above, then what a trained model can be besides
PHASES_3X2 = ("not learned", "learned alone", "extra in a pair", "others in a pair", "triangle", "other")
PHASE_COLOURS_3X2 = ("#d9d9d9", "#4575b4", "#d73027", "#fdae61", "#1a9850", "#000000")
# the direction W ignores, per configuration of three features in superposition (unit length)
_IGNORED = {
    "extra in a pair": [np.array([0, 1, 1]) / np.sqrt(2), np.array([1, 0, 1]) / np.sqrt(2)],
    "others in a pair": [np.array([1, 1, 0]) / np.sqrt(2)],
    "triangle": [np.ones(3) / np.sqrt(3)],
}
MATCH = 0.95  # the closest two directions above have cosine 2/√6 ≈ 0.82


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


@cache
def best_antipodal_loss(p: float) -> tuple[float, float]:
    """min over b of ℓ(b), and the minimising bias."""
    return _minimise(lambda b: antipodal_loss(b, p), np.linspace(-1, 1, 4001))


def _minimise(loss, grid: np.ndarray) -> tuple[float, float]:
    """The minimum of a one-bias loss: the best grid point, refined by golden-section search."""
    k = int(np.argmin([float(loss(b)) for b in grid]))
    lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
    golden = (np.sqrt(5) - 1) / 2
    for _ in range(60):
        a, c = hi - golden * (hi - lo), lo + golden * (hi - lo)
        if loss(a) < loss(c):
            hi = c
        else:
            lo = a
    b = (lo + hi) / 2
    return float(loss(b)), float(b)


_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(5)  # exact for the quartic pieces below


def _unit_mean(f, knots) -> float:
    """∫_0^1 f(u) du for f polynomial between the knots: Gauss-Legendre on each piece."""
    edges = np.unique(np.clip([0.0, 1.0, *knots], 0.0, 1.0))
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        if hi > lo:
            u = lo + (hi - lo) * (_NODES + 1) / 2
            total += (hi - lo) / 2 * float(np.dot(_WEIGHTS, [f(x) for x in u]))
    return total


def _present_error(s: float) -> float:
    """E[(x − ReLU(x + s))²] over x ~ U[0, 1]: a present feature's error under interference s."""
    if s >= 0:
        return s * s
    if s >= -1:
        return s * s + 2 * s**3 / 3
    return 1 / 3


def feature_loss(b: float, p: float, cosines: tuple[float, ...]) -> float:
    """Expected squared error of one unit-length feature with bias b whose (at most two)
    partners lie at `cosines` to it: out = ReLU(x + Σ c_j x_j + b), every feature present
    with probability p, then ~ U[0, 1]."""

    def q(s: float) -> float:  # over this feature's own presence
        return p * _present_error(s) + (1 - p) * max(s, 0.0) ** 2

    def one(s: float, c: float) -> float:  # one partner present, its value integrated out
        return _unit_mean(lambda u: q(s + c * u), [-s / c, (-1 - s) / c])

    if not cosines:
        return q(b)
    if len(cosines) == 1:
        (c,) = cosines
        return (1 - p) * q(b) + p * one(b, c)
    c1, c2 = cosines
    kinks = [(k - b) / c1 for k in (0.0, -1.0, -c2, -1.0 - c2)]  # where one(·, c2) changes polynomial
    both = _unit_mean(lambda u: one(b + c1 * u, c2), kinks)
    return (1 - p) ** 2 * q(b) + p * (1 - p) * (one(b, c1) + one(b, c2)) + p * p * both


@cache
def best_triangle_loss(p: float) -> tuple[float, float]:
    """min over b of a feature's loss in the triangle (partners at cos 120°), and the bias."""
    return _minimise(lambda b: feature_loss(b, p, (-0.5, -0.5)), np.linspace(-1, 1, 201))


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


def candidate_losses_3x2(importance: float, p: float) -> dict[str, float]:
    """Expected loss of each candidate for the n=3, m=2 problem (PHASES_3X2 without "other")."""
    var, pair = float(variance(p)), best_antipodal_loss(p)[0]
    return {
        "not learned": importance * var,
        "learned alone": var,
        "extra in a pair": (1 + importance) * pair,
        "others in a pair": 2 * pair,
        "triangle": (2 + importance) * best_triangle_loss(p)[0],
    }


def phase_3x2(importance: float, p: float) -> str:
    losses = candidate_losses_3x2(importance, p)
    return min(losses, key=losses.get)


def observed_configuration(W: np.ndarray) -> np.ndarray:
    """Index into PHASES_3X2 of trained n=3, m=2 models, W (..., 3, 2), feature 2 the extra one.

    From the norms (represented: > 0.5) when a feature is dropped; when all three are
    represented, from the direction W ignores: the v with Σ v_i W_i = 0 (the null
    vector of W Wᵀ), matched to the configurations' directions with cosine > MATCH.
    """
    W = np.asarray(W, dtype=float)
    flat = W.reshape(-1, 3, W.shape[-1])
    out = np.empty(len(flat), dtype=int)
    for k, w in enumerate(flat):
        represented = np.linalg.norm(w, axis=-1) > 0.5
        if represented.all():
            v = np.linalg.eigh(w @ w.T)[1][:, 0]
            v = v if v[np.argmax(np.abs(v))] > 0 else -v
            found = [name for name, dirs in _IGNORED.items() if max(float(v @ d) for d in dirs) > MATCH]
            out[k] = PHASES_3X2.index(found[0]) if found else PHASES_3X2.index("other")
        elif not represented[2] and represented[:2].all():
            out[k] = PHASES_3X2.index("not learned")
        elif represented[2] and represented[:2].sum() == 1:
            out[k] = PHASES_3X2.index("learned alone")
        else:
            out[k] = PHASES_3X2.index("other")
    return out.reshape(W.shape[:-2])
