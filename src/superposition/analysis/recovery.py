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
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

# A latent within ~25° of a feature's direction: far above what chance gives in the
# toy models' small hidden spaces, and what "recovered" is meant to be.
MATCH = 0.9


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
            }
        )
    return out


STATUS = ("matched", "duplicate", "unmatched")


def latent_status(cos: Float[Tensor, "feat latent"]) -> Int[Tensor, "latent"]:
    """Each latent's index in STATUS: matched (at least MATCH with a feature, and that
    feature's best latent), duplicate (at least MATCH, another latent is that feature's
    best), unmatched (below MATCH with every feature)."""
    hits = cos.max(dim=0)  # per latent: its closest feature
    own = cos.argmax(dim=1)[hits.indices] == torch.arange(cos.shape[1])
    strong = hits.values >= MATCH
    return torch.where(strong, torch.where(own, 0, 1), 2)
