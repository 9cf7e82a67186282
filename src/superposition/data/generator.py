"""What a kind of synthetic data is, and the table of them every part of the package reads.

A generator is a subclass of `Generator` registered with `@register_data`: its name (the
config's `data`), its options (a pydantic model whose fields are config keys: TOML keys,
command-line flags and notebook keywords, validated at the edge with the rest of the
config), its draw on the counter stream in torch (every engine's data, the evaluation
batch, `sp.sample` and the SAEs' sources), the words figure titles use, and optionally
the numba kernels' own draw of the same data, which the fused engine needs to run it.

    @register_data
    class Hierarchy(Generator):
        name = "hierarchy"

        class Options(NoOptions):
            children: int = Field(1, gt=0, description="Child features after each parent.")

        def draw(self, options, p, stream):
            ...  # (inst, feat, batch) from stream.uniform(block)

The kernels draw the built-in data themselves (kernels: fused.py `_draw_rows`); a
generator names which of their draws is its own with `kernel`, never inherited: a
subclass that changes the draw is data the kernels do not draw.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from jaxtyping import Float
from pydantic import BaseModel, ConfigDict
from torch import Tensor

from ..registry import admit, declared_keys, own, parse_options
from .stream import Stream

if TYPE_CHECKING:
    from ..config import Config

# The kernels' draws (numba takes no strings): the value distribution, then how features
# share presence draws. Every one decides presence by u < p_f with u element (f, r) of
# counter block 0; a present value is then u / p_f (PAPER), 2 u / p_f - 1 (SIGNED), u
# itself with every example scaled to unit norm (SEED), its own uniform from counter
# block 1 (UNIFORM: synthetic data's U[0, 1]) or the feature's constant (CONSTANT).
PAPER, SEED, SIGNED, UNIFORM, CONSTANT = 0, 1, 2, 3, 4
INDEPENDENT, CORRELATED, ANTICORRELATED = 0, 1, 2


class KernelDraw(NamedTuple):
    """Which of the numba kernels' draws gives a generator's data, with its arguments."""

    code: int  # PAPER, SEED, SIGNED, UNIFORM or CONSTANT
    set_mode: int = INDEPENDENT
    set_size: int = 1
    magnitudes: tuple[float, ...] = ()  # CONSTANT: each feature's value where it fires


class NoOptions(BaseModel):
    """A generator's config keys; subclass it to declare some (each field a key)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class Generator:
    """A kind of synthetic data. Override what differs."""

    name: ClassVar[str]
    Options: ClassVar[type[NoOptions]] = NoOptions
    # the kernels' draw of this data (its value distribution), or None: the fused engine
    # does not run it. Never inherited (see `register_data`).
    kernel: ClassVar[int | None] = None
    # where the kernels draw only some of its configs, which (words for the fused engine's refusal)
    kernel_scope: ClassVar[str] = ""

    def options(self, config: Config) -> Any:
        """The config's options for this generator, typed (an instance of `Options`)."""
        return self.Options(**config.data_options)

    def validate(self, given: dict[str, Any]) -> dict[str, Any]:
        """The options as given (user keys) with every default filled in; bad ones raise
        ValueError naming the key."""
        return parse_options(self.Options, given, f"{self.name} data").model_dump()

    def check(self, config: Config) -> None:
        """Raise ValueError for a config whose data this generator cannot draw."""

    def draw(self, options: Any, p: Float[Tensor, "inst feat 1"], stream: Stream) -> Float[Tensor, "inst feat batch"]:
        """The examples of one draw, one column each, from the stream's uniforms. `options`:
        the config's, an instance of `Options` (a compiled step calls this in its trace,
        where only the options, not the whole config, are at hand)."""
        raise NotImplementedError

    def hierarchy(self, config: Config) -> list[int]:
        """The parent of each of the first features (-1: a root) where they form trees
        (children fire only with their parents); empty where none do."""
        return []

    def describe(self, config: Config) -> str:
        """The data in words, for figure titles."""
        return f"{self.name} data"

    def kernel_draw(self, config: Config) -> KernelDraw | None:
        """The kernels' draw of this config's data, or None where they have none."""
        return None if self.kernel is None else KernelDraw(self.kernel)


GENERATORS: dict[str, Generator] = {}


def register_data(cls: type[Generator]) -> type[Generator]:
    """Add a generator to the table every part of the package reads. Its `kernel` is its
    own class's, never inherited."""
    name = admit(GENERATORS, cls, Generator, "register_data", "data")
    own(cls, "kernel", None)
    GENERATORS[name] = cls()
    return cls


def option_keys() -> dict[str, list[str]]:
    """Every option's key, with the generators that declare it."""
    return declared_keys(GENERATORS)
