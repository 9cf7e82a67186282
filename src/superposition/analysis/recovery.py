"""How well a learned dictionary (an SAE's decoder rows, say) recovers known features.

The true features are unit directions in the hidden space: for a toy model, the rows
W_i of its encoder (x W: for models with a hidden ReLU, the pre-activation). A
dictionary is a set of latent directions (the decoder rows). Per instance:

  cos[i, j]       cosine of true feature i with latent j; signed, since a latent
                  with a non-negative activation writes +d_j, never −d_j
  mmcs            mean over the true features of max_j cos[i, j] (Sharkey et al. 2022),
                  over the represented features (‖W_i‖ > 0.5) and over all
  recovered       true features with max_j cos[i, j] >= MATCH
  latents         matched: at least MATCH with some feature and that feature's best
                  latent; duplicate: at least MATCH but another latent matches that
                  feature better; unmatched: below MATCH with every feature
  mcc             mean |cos| over a one-to-one matching of features to latents that
                  maximises it (Hungarian; O'Neill et al. 2025, SAELens's synthetic
                  evaluations): min(features, latents) pairs
  uniqueness      distinct features among the latents' closest (by |cos|), over the
                  latents: 1 where every latent has a feature of its own

and from activations (`classification`), each latent against the feature closest to it by
|cos|, as SAELens's synthetic evaluations match them: precision, recall and F1 of "the
latent fires" (activation > 0) as a detector of "its feature is present" (x_i ≠ 0), per
latent and their means over every latent (a dead one scores 0).

Where features form trees (a child present only with its parent), `absorption`, after
Chanin et al. ("A is for Absorption", 2024, and their toy models of it): the latents of
parent P and child C are those the one-to-one matching of `mcc` gives them. A row on which
C is present is absorbed when P's latent is silent while C's latent fires and carries the
parent direction, its decoder row's cosine with P at least ABSORBED above the cosine of C
itself with P (so a latent that is C's own direction never carries it, orthogonal or not).
Per child, the share of its rows absorbed; `absorption` is the mean over the children
present on some row. 0 for an SAE whose latents are the features; 1 where the parent's
latent never fires beside the child and the child's latent has taken the parent's
direction, as an L1 SAE's does in their toy.
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from scipy.optimize import linear_sum_assignment
from torch import Tensor

# A latent within ~25° of a feature's direction: far above what chance gives in the
# toy models' small hidden spaces, and what "recovered" is meant to be.
MATCH = 0.9
# A child's latent carries its parent's direction from this much more cosine with it than the
# child itself has: (C + αP)/‖C + αP‖ with orthogonal C, P passes from α ≈ 0.33 (a fifth of
# Chanin et al.'s absorbing latent's α = 1, cosine 0.71)
ABSORBED = 0.3


def cosines(
    features: Float[Tensor, "inst feat dim"], latents: Float[Tensor, "inst latent dim"]
) -> Float[Tensor, "inst feat latent"]:
    """Cosine of every true feature with every latent; a zero vector has cosine 0."""
    unit = torch.nn.functional.normalize
    return torch.einsum("ifd,ild->ifl", unit(features.float(), dim=-1), unit(latents.float(), dim=-1))


def score(
    features: Float[Tensor, "inst feat dim"],
    latents: Float[Tensor, "inst latent dim"],
    represented: Bool[Tensor, "inst feat"] | None = None,
) -> list[dict[str, Any]]:
    """The scores of the module docstring, one dict per instance."""
    if features.ndim != 3 or latents.ndim != 3 or features.shape[::2] != latents.shape[::2]:
        raise ValueError(
            f"features (inst, feat, dim) {tuple(features.shape)} and latents (inst, latent, dim) "
            f"{tuple(latents.shape)} must share their instances and dimensions"
        )
    if represented is None:
        represented = torch.ones(features.shape[:2], dtype=torch.bool)
    cos = cosines(features, latents)
    best = cos.max(dim=-1).values  # per feature: its closest latent
    out = []
    for k in range(cos.shape[0]):
        status = latent_status(cos[k])
        kept = represented[k]
        out.append(
            {
                "mmcs": float(best[k][kept].mean()) if kept.any() else float("nan"),
                "mmcs_all": float(best[k].mean()),
                "recovered": int((best[k][kept] >= MATCH).sum()),
                "represented": int(kept.sum()),
                **{f"latents_{name}": int((status == code).sum()) for code, name in enumerate(STATUS)},
                "mcc": mcc(cos[k]),
                "uniqueness": float(len(cos[k].abs().argmax(dim=0).unique()) / cos.shape[2]),
            }
        )
    return out


def matching(cos: Float[Tensor, "feat latent"]) -> tuple[Any, Any]:
    """The one-to-one matching of features to latents that maximises the sum of |cos|: (features, their latents)."""
    return linear_sum_assignment(cos.abs().double().numpy(), maximize=True)


def mcc(cos: Float[Tensor, "feat latent"]) -> float:
    """The mean |cos| of the one-to-one matching of features to latents that maximises it."""
    rows, columns = matching(cos)
    return float(cos.abs().double()[rows, columns].mean())


def absorption(
    features: Float[Tensor, "feat dim"],
    cos: Float[Tensor, "feat latent"],
    present: Bool[Tensor, "rows feat"],
    fires: Bool[Tensor, "rows latent"],
    parents: list[int],
) -> dict[str, Any]:
    """The absorption rate of the module docstring: its mean over children and each child's (None: never present)."""
    rows, columns = matching(cos)
    latent = dict(zip(rows.tolist(), columns.tolist()))
    unit = torch.nn.functional.normalize(features.float(), dim=-1)
    rates: list[float | None] = []
    for child, parent in enumerate(parents):
        if parent < 0:
            continue
        on = present[:, child]
        if not bool(on.any()):
            rates.append(None)
            continue
        if child not in latent:  # more features than latents, and this child has none
            rates.append(0.0)
            continue
        lc = latent[child]
        carries = float(cos[parent, lc]) - float(unit[child] @ unit[parent]) >= ABSORBED
        # a parent left without a latent is silent everywhere
        silent = ~fires[:, latent[parent]] if parent in latent else torch.ones_like(on)
        absorbed = on & silent & fires[:, lc] if carries else torch.zeros_like(on)
        rates.append(float(absorbed.sum() / on.sum()))
    seen = [r for r in rates if r is not None]
    return {"absorption": sum(seen) / len(seen) if seen else float("nan"), "absorption_per_child": rates}


def classification(
    cos: Float[Tensor, "feat latent"], present: Bool[Tensor, "rows feat"], fires: Bool[Tensor, "rows latent"]
) -> dict[str, Any]:
    """Each latent's firing as a detector of its closest feature's presence (module docstring)."""
    feature = cos.abs().argmax(dim=0)  # per latent
    truth = present[:, feature]  # (rows, latent): the latent's feature is present
    hits = (truth & fires).sum(0).double()
    precision = torch.where(fires.any(0), hits / fires.sum(0).clamp(min=1), 0.0)
    recall = torch.where(truth.any(0), hits / truth.sum(0).clamp(min=1), 0.0)
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall).clamp(min=1e-300), 0.0)
    return {
        "precision": float(precision.mean()),
        "recall": float(recall.mean()),
        "f1": float(f1.mean()),
        "f1_per_latent": [round(v, 6) for v in f1.tolist()],
    }


STATUS = ("matched", "duplicate", "unmatched")


def latent_status(cos: Float[Tensor, "feat latent"]) -> Int[Tensor, "latent"]:
    """Each latent's index in STATUS: matched (at least MATCH with a feature, and that
    feature's best latent), duplicate (at least MATCH, another latent is that feature's
    best), unmatched (below MATCH with every feature)."""
    hits = cos.max(dim=0)  # per latent: its closest feature
    own = cos.argmax(dim=1)[hits.indices] == torch.arange(cos.shape[1])
    strong = hits.values >= MATCH
    return torch.where(strong, torch.where(own, 0, 1), 2)
