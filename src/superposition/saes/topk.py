"""TopK SAE (Gao et al. 2024): a = ReLU(TopK_k(pre)); no sparsity term, and the AuxK loss:
the k_aux largest pre-activations of dead latents reconstruct the residual, its squared
error divided by the residual's variance (openai/sparse_autoencoder's normalised MSE)."""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from .kind import SAEKind, register

# AuxK (Gao et al. 2024): weight 1/32 (their code's auxk_coef), and the dead latents' k_aux
# largest pre-activations with k_aux = d_in / 2 (EleutherAI's heuristic; OpenAI's code used
# 256 for d_model 768)
AUXK_WEIGHT = 1 / 32


@register
class TopK(SAEKind):
    name, setting, column, formula, fused, whole, penalty = "topk", "k", "k", "ReLU(TopK(pre)), AuxK loss", True, True, False

    def setting_problem(self, value, latents):
        return None if 0 < value <= latents else f"must be from 1 to latents ({latents})"

    def default_setting(self, r2, d_in, active):
        return max(1, round(active))  # the features present per row

    def activate(self, params, pre, setting):
        return _top(pre, setting.long())

    def aux_loss(self, params, residual, pre, dead):
        if not bool(dead.any()):
            return torch.zeros(pre.shape[0], device=pre.device)
        k_aux_ = k_aux(params["W_enc"].shape[1], pre.shape[-1])
        masked = pre.masked_fill(~dead[:, None, :], float("-inf"))
        counts = dead.sum(-1).clamp_max(k_aux_)  # an instance with fewer dead latents uses them all
        a = _top(masked, counts).nan_to_num(0.0)
        rebuilt = torch.bmm(a, params["W_dec"])  # no bias: it reconstructs the residual
        residual = residual.detach()
        # Gao et al.'s normalised MSE: over the residual's variance about its batch mean, a
        # constant here as in their code (its residual is detached)
        variance = ((residual - residual.mean(1, keepdim=True)) ** 2).mean(dim=(1, 2))
        weight = torch.where(variance > 0, AUXK_WEIGHT / variance, 0.0) * dead.any(-1)
        return weight * ((residual - rebuilt) ** 2).mean(dim=(1, 2))


def k_aux(d_in: int, latents: int) -> int:
    return max(1, min(latents, d_in // 2))


def _top(pre: Float[Tensor, "inst batch latents"], k: Tensor) -> Float[Tensor, "inst batch latents"]:
    """ReLU of the k[i] largest pre-activations of every row of instance i, the rest 0."""
    values, index = pre.topk(int(k.max()), dim=-1)
    rank = torch.arange(values.shape[-1], device=pre.device)
    values = torch.where(rank < k.view(-1, 1, 1), torch.relu(values), 0.0)
    return torch.zeros_like(pre).scatter(-1, index, values)
