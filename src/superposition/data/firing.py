"""Firing probabilities that differ by feature: a profile from the most to the least
frequent feature, in place of one sparsity for all (SAELens's firing-probability configs).

  zipf     p_i ∝ i^-exponent (i = 1 … n), rescaled so that p_1 = firing_max and
           p_n = firing_min: the rank-frequency law of words and, by SynthSAEBench's
           assumption, of a language model's features
  linear   from firing_max down to firing_min in equal steps

User keys (a toy model's config and an SAE dictionary alike): `firing`, `firing_max`,
`firing_min`, `zipf_exponent`. Each profile is one row of probabilities, the same for
every instance it is given to.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..limits import MIN_PROBABILITY

KEYS = ("firing", "firing_max", "firing_min", "zipf_exponent")


class Firing(BaseModel):
    """A firing profile, validated; `probabilities(n)` is its row."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    firing: Literal["zipf", "linear"]
    firing_max: float = Field(ge=MIN_PROBABILITY, le=1)
    firing_min: float = Field(ge=MIN_PROBABILITY, le=1)
    zipf_exponent: float = Field(1.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _floats(cls, keys):
        """Whole numbers given for probabilities or the exponent (`firing_max = 1`) are floats."""
        if isinstance(keys, dict):
            return {k: float(v) if k != "firing" and isinstance(v, int) and not isinstance(v, bool) else v for k, v in keys.items()}
        return keys

    @model_validator(mode="after")
    def _ordered(self) -> Firing:
        if self.firing_min > self.firing_max:
            raise ValueError(f"firing_min: {self.firing_min} is above firing_max ({self.firing_max}); the profile runs from the most frequent feature down")
        return self

    def probabilities(self, features: int) -> list[float]:
        if features == 1:
            return [self.firing_max]
        if self.firing == "zipf":
            ranks = [i ** -self.zipf_exponent for i in range(1, features + 1)]
        else:
            ranks = [1 - i / (features - 1) for i in range(features)]
        low, high = ranks[-1], ranks[0]
        span = self.firing_max - self.firing_min
        return [self.firing_min + span * (r - low) / (high - low) for r in ranks]
