"""Matryoshka SAE (Bussmann et al. 2025; Nabeshima's toy): a BatchTopK SAE whose loss sums
the reconstruction error of nested prefixes of its latents: with prefix sizes m_1 < … <
m_P = latents, Σ_p mean over d_in of (h − a_{:m_p} W_dec,{:m_p} − b_dec)². The first
latents must reconstruct on their own, so a general feature (a parent) keeps a latent of
its own in an early prefix instead of being absorbed into its children's latents.

Its option `prefixes` (the sizes, ending at latents) defaults to a quarter, a half and
all of the latents."""

from __future__ import annotations

import torch
from pydantic import Field

from .batchtopk import BatchTopK
from .kind import NoOptions, register


class Options(NoOptions):
    prefixes: list[int] | None = Field(None, description="Nested prefix sizes, increasing, the last = latents (default: latents/4, /2, all).")


def prefix_sizes(prefixes: list[int] | None, latents: int) -> list[int]:
    if prefixes is not None:
        return list(prefixes)
    return sorted({max(1, latents // 4), max(1, latents // 2), latents})


@register
class Matryoshka(BatchTopK):
    name, formula = "matryoshka", "BatchTopK with the reconstruction error summed over nested prefixes"
    Options = Options

    def validate(self, given, latents):
        options = super().validate(given, latents)
        return {**options, "prefixes": prefix_sizes(options["prefixes"], latents)}

    def options_problem(self, options, latents):
        sizes = prefix_sizes(options.prefixes, latents)
        if not sizes or any(b <= a for a, b in zip(sizes, sizes[1:])) or sizes[0] < 1:
            return f"prefixes: {sizes} must increase from at least 1"
        if sizes[-1] != latents:
            return f"prefixes: the last size, {sizes[-1]}, must be latents ({latents})"
        return None

    def reconstruction_loss(self, params, h, a, h_hat):
        loss = torch.zeros(h.shape[0], device=h.device)
        rebuilt = params["b_dec"][:, None, :].expand_as(h)
        start = 0
        for size in self.options.prefixes:  # each prefix adds its slice to the one before
            rebuilt = rebuilt + torch.bmm(a[:, :, start:size], params["W_dec"][:, start:size])
            loss = loss + ((h - rebuilt) ** 2).mean(dim=(1, 2))
            start = size
        return loss
