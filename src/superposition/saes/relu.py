"""ReLU SAE: a = ReLU(pre), sparsity term l1 Σ_j a_j |W_dec[j]|.

It trains as SAELens's standard SAE and Anthropic's April 2024 update do: decoder rows
free, starting at norm DECODER_INIT with the encoder their transpose, and each
activation's L1 term weighted by its row's norm, so that shrinking a and growing the row
gains nothing. Trained with unit rows instead, Adam turns a row 1 / |row| times slower:
on SAELens's 256-feature Zipf model (32 dims, 128 latents, 1,000 steps at lr 3e-4) MCC
was 0.55-0.56 with unit rows against 0.65-0.67 this way (seeds 1 and 2, the same loop).
`fold` makes the rows unit when training ends, scaling each latent's encoder column and
bias by its row's norm: the same SAE and the same loss, every activation the length of
what its latent writes, as the other kinds' are.
"""

from __future__ import annotations

import torch

from .kind import SAEKind, register

DECODER_INIT = 0.1  # SAELens's decoder_init_norm


@register
class ReLU(SAEKind):
    name, setting, column, formula, fused = "relu", "l1", "l1_coefficient", "ReLU(pre), L1 penalty weighted by decoder norm", True

    def init(self, instances, d_in, latents, generator):
        params = super().init(instances, d_in, latents, generator)
        params["W_dec"] *= DECODER_INIT
        params["W_enc"] = params["W_dec"].transpose(1, 2).contiguous()
        return params

    def activate(self, params, pre, setting):
        return torch.relu(pre)

    def sparsity_loss(self, params, pre, a, setting):
        norms = params["W_dec"].norm(dim=-1)  # (inst, latents)
        return setting * (a * norms[:, None, :]).sum(-1).mean(-1)

    def after_step(self, params):
        """Nothing: the rows' norms are free (see the module's docstring)."""

    def fold(self, params):
        norms = params["W_dec"].norm(dim=-1, keepdim=True).clamp_min(1e-12)  # (inst, latents, 1)
        params["W_dec"].div_(norms)
        params["W_enc"].mul_(norms.transpose(1, 2))
        params["b_enc"].mul_(norms.squeeze(-1))

    def default_setting(self, r2, d_in, active):
        return 0.3 * r2 / d_in  # saes/config.py: encoding v saves ~r² v² / d, costs l1 v
