"""The paper's data (Elhage et al., 2022): feature i present with probability p_i, its
value ~ U[0, 1] (`paper`) or U[-1, 1] (`signed`, the computation experiment's, whose
target is |x|), independently of the others. One draw u gives both: u < p says present,
and then u / p is uniform on [0, 1).

Features can come in sets (`correlation`, `set_size`): consecutive groups that share one
presence draw per example. Correlated sets are present together; in an anticorrelated
set at most one member is active (each member owns a slot of width p_f of the shared
draw). Each feature keeps its own probability p_f either way, and a present value is
its own draw.

A correlated set may be correlated in part (`strength` s < 1, as in Chanin et al.'s
correlated toy features): on each example a coin of the set says whether its members
share the presence draw (probability s) or draw their own. Members of equal p then have
presence correlated at exactly s (covariance s p (1 − p)); s = 1 is the full
co-occurrence above. The kernels do not draw s < 1: such data trains on the compiled and
reference engines.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from jaxtyping import Float
from pydantic import Field
from torch import Tensor

from ..limits import MAX_SIZE
from .generator import ANTICORRELATED, CORRELATED, INDEPENDENT, PAPER, SIGNED, Generator, KernelDraw, NoOptions, register_data
from .stream import Stream

if TYPE_CHECKING:
    from ..config import Config

SET_MODES = {"none": INDEPENDENT, "correlated": CORRELATED, "anticorrelated": ANTICORRELATED}


class Sets(NoOptions):
    correlation: Literal["none", "correlated", "anticorrelated"] = Field(
        "none", description="none, correlated or anticorrelated: features in sets of set_size."
    )
    set_size: int = Field(1, gt=0, le=MAX_SIZE, description="Features per correlated or anticorrelated set.")
    strength: float = Field(1.0, ge=0, le=1, description="Correlated sets: the correlation of their members' presence (1: always together).")


@register_data
class Paper(Generator):
    name, kernel, Options = "paper", PAPER, Sets

    def values(self, u: Float[Tensor, "inst feat batch"]) -> Float[Tensor, "inst feat batch"]:
        """A present feature's value from its own uniform."""
        return u

    def check(self, config: Config) -> None:
        sets = self.options(config)
        if sets.strength < 1 and sets.correlation != "correlated":
            raise ValueError(f"strength: {sets.strength} applies to correlated sets only; give correlation = \"correlated\"")
        if sets.correlation == "none":
            return
        if config.features % sets.set_size:
            raise ValueError(f"set_size: {sets.set_size} does not divide features ({config.features}) into sets")
        if sets.correlation == "anticorrelated":
            for row in config.feature_probability:
                for first in range(0, config.features, sets.set_size):
                    if sum(row[first : first + sets.set_size]) > 1 + 1e-9:
                        raise ValueError("feature_probability: an anticorrelated set's probabilities add up to more than 1")

    def draw(self, sets: Sets, p: Float[Tensor, "inst feat 1"], stream: Stream) -> Float[Tensor, "inst feat batch"]:
        u = stream.uniform()
        if sets.correlation == "none":
            return torch.where(u < p, self.values(u * (1.0 / p)), 0.0)
        size = sets.set_size
        shared = stream.uniform(block=1, every=size).repeat_interleave(size, dim=1)  # one draw per set
        if sets.correlation == "correlated":
            present = shared < p
            if sets.strength < 1:
                together = stream.uniform(block=2, every=size).repeat_interleave(size, dim=1) < sets.strength
                present = torch.where(together, present, stream.uniform(block=3) < p)
        else:  # member j owns [low_j, low_j + p_j) of the shared draw, low summed in order as the kernel does
            low = torch.zeros_like(p)
            for j in range(1, size):
                low[:, j::size] = low[:, j - 1 :: size] + p[:, j - 1 :: size]
            present = (low <= shared) & (shared < low + p)
        return torch.where(present, self.values(u), 0.0)

    def describe(self, config: Config) -> str:
        sets = self.options(config)
        sets_words = f" in {sets.correlation} sets of {sets.set_size}" if sets.correlation != "none" else ""
        strength = f" (correlation {sets.strength:g})" if sets.strength < 1 else ""
        return f"{self.name} data{sets_words}{strength}"

    def kernel_draw(self, config: Config) -> KernelDraw | None:
        sets = self.options(config)
        if sets.strength < 1:
            return None
        return KernelDraw(self.kernel, SET_MODES[sets.correlation], sets.set_size)


@register_data
class Signed(Paper):
    name, kernel = "signed", SIGNED

    def values(self, u: Float[Tensor, "inst feat batch"]) -> Float[Tensor, "inst feat batch"]:
        return 2.0 * u - 1.0
