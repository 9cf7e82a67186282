"""The seed project's data: one draw u ~ U[0, 1] per feature, kept when u <= p (so a
present value is uniform on [0, p]), then every example scaled to unit L2 norm; an
all-zero example stays zero."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from jaxtyping import Float
from torch import Tensor

from .generator import SEED, Generator, NoOptions, register_data
from .stream import Stream, unit_columns

if TYPE_CHECKING:
    from ..config import Config


@register_data
class Seed(Generator):
    name, kernel = "seed", SEED

    def check(self, config: Config) -> None:
        if config.normalize:
            raise ValueError("normalize: seed data is already scaled to unit norm; drop normalize")

    def draw(self, options: NoOptions, p: Float[Tensor, "inst feat 1"], stream: Stream) -> Float[Tensor, "inst feat batch"]:
        u = stream.uniform()
        return unit_columns(torch.where(u <= p, u, 0.0))
