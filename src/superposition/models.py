"""The toy models, every one batched over an instances axis, each kind one small unit.

Parameters are a plain dict of tensors, the same names as in `model.safetensors`:
  W      (inst, feat, hidden)   the embedding; row i is feature i's direction W_i
  W_out  (inst, hidden, feat)   kinds with their own decoder
  b      (inst, feat)

  tied:    x' = act(hid(x W) Wᵀ + b)        the paper's model, the seed's One Weight net
  untied:  x' = act(hid(x W) W_out + b)     the seed's Two Weight net
  mlp:     x' = ReLU(x W) W_out + b         untied with a hidden ReLU and a linear output

act is the output activation (`activation`), hid the hidden one (`hidden_activation`,
identity unless asked: ReLU gives the paper's privileged-basis model for tied).

A model kind is a subclass of `Kind` registered in `KINDS` with `@register`: its
parameters and their shapes, encode/decode, loss, whether the fused engine runs it,
and which figures apply. Config validation, the run directory, the figures and the
command line all read that table, so a new kind is one module:

    @register
    class Scaled(Kind):
        name = "scaled"
        def decode(self, params, hidden, config):
            return torch.relu(hidden @ params["W"].transpose(1, 2) * params["s"] + params["b"])
        def shapes(self, config): return {**super().shapes(config), "s": (config.instances, 1, 1)}
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from jaxtyping import Float
from torch import Tensor

from .registry import admit, own

Params = dict[str, Tensor]


class Kind:
    """A model kind. Override what differs; every method takes the whole batch of instances.

    encode, decode and loss may read the config's model options only (`model`,
    `activation`, `hidden_activation`, `target`: compiled.GRAPH_FIELDS): the compiled
    engine traces one graph per combination of those, and anything else reaches it as a
    parameter or a tensor."""

    name: ClassVar[str]
    formula: ClassVar[str] = ""  # for titles and `superposition kinds`
    matrix: ClassVar[str] = "W Wᵀ"  # what `gram` is, for figure titles
    # keys this kind sets where the user gives none, and keys it requires
    defaults: ClassVar[dict[str, Any]] = {}
    required: ClassVar[dict[str, Any]] = {}
    # how the fused (numba, CPU) engine runs it (its decoder Wᵀ or W_out), or None: not at all.
    # Never inherited (see `register`): the kernel computes the built-in kinds' arithmetic,
    # so a subclass that overrides any of it is a model the kernel does not compute
    fused: ClassVar[Literal["tied", "untied"] | None] = None
    figures: ClassVar[tuple[str, ...]] = ("gram", "norms", "weights")

    def check(self, config) -> None:
        """Raise ValueError for a config this kind cannot train."""
        for key, value in self.required.items():
            if getattr(config, key) != value:
                raise ValueError(f"{key}: the {self.name} model needs {key} = {value!r} ({self.formula})")

    def shapes(self, config) -> dict[str, tuple[int, ...]]:
        n, f, h = config.instances, config.features, config.hidden
        return {"W": (n, f, h), "b": (n, f)}

    def init(self, config, generator: torch.Generator) -> Params:
        """Xavier-normal for every matrix, per instance; zeros for vectors; on the CPU.

        Each instance is its own 2-D matrix: xavier on a 3-D tensor would count the
        instances axis into fan-in/out, so the scale would change with their number.
        """
        params = {}
        for name, shape in self.shapes(config).items():
            if len(shape) == 3:
                params[name] = torch.stack(
                    [torch.nn.init.xavier_normal_(torch.empty(shape[1:]), generator=generator) for _ in range(shape[0])]
                )
            else:
                params[name] = torch.zeros(shape)
        return params

    def encode(self, params: Params, x: Float[Tensor, "inst batch feat"], config) -> Float[Tensor, "inst batch hidden"]:
        hidden = torch.bmm(x, params["W"])
        return torch.relu(hidden) if config.hidden_activation == "relu" else hidden

    def decoder(self, params: Params) -> Float[Tensor, "inst hidden feat"]:
        return params["W"].transpose(1, 2)

    def decode(self, params: Params, hidden: Float[Tensor, "inst batch hidden"], config) -> Float[Tensor, "inst batch feat"]:
        out = torch.baddbmm(params["b"][:, None, :], hidden, self.decoder(params))
        return torch.relu(out) if config.activation == "relu" else out

    def gram(self, params: Params) -> Float[Tensor, "inst feat feat"]:
        """Row i: what feature i writes into every output, W Wᵀ or W W_out."""
        return torch.bmm(params["W"], self.decoder(params))

    def gram_diagonal(self, params: Params) -> Float[Tensor, "inst feat"]:
        """What feature i writes into its own output: gram's diagonal, without the feat x feat matrix."""
        return torch.einsum("ifh,ihf->if", params["W"], self.decoder(params))

    def loss(
        self,
        out: Float[Tensor, "inst batch feat"],
        x: Float[Tensor, "inst batch feat"],
        importance: Float[Tensor, "inst feat"],
        config,
    ) -> Float[Tensor, "inst"]:
        """Importance-weighted squared error against x (or |x|), mean over batch and features."""
        return self._weighted_error(out, x, importance, config).mean(dim=(1, 2))

    def example_losses(
        self,
        out: Float[Tensor, "inst batch feat"],
        x: Float[Tensor, "inst batch feat"],
        importance: Float[Tensor, "inst feat"],
        config,
    ) -> Float[Tensor, "inst batch"]:
        """The loss of every example (mean over features): its spread gives a test loss's standard error."""
        return self._weighted_error(out, x, importance, config).mean(dim=2)

    def _weighted_error(self, out, x, importance, config) -> Float[Tensor, "inst batch feat"]:
        goal = x.abs() if config.target == "abs" else x
        return importance[:, None, :] * (goal - out) ** 2

    def describe(self, config) -> str:
        """The model part of a figure title."""
        text = f"{self.name} ({self.formula}) {config.activation}" if self.formula else f"{self.name} {config.activation}"
        return text + (", hidden relu" if config.hidden_activation == "relu" else "")

    def stem(self, config) -> str:
        """The model part of a figure's file name."""
        return f"{self.name}-{config.activation}" + ("-hiddenrelu" if config.hidden_activation == "relu" else "")


KINDS: dict[str, Kind] = {}


def register(cls: type[Kind]) -> type[Kind]:
    """Add a kind to the table every part of the package reads. A kind runs on the fused
    engine only where its own class says so: `fused` is not inherited."""
    name = admit(KINDS, cls, Kind, "register", "model")
    own(cls, "fused", None)
    KINDS[name] = cls()
    return cls


def kind(name: str) -> Kind:
    return KINDS[name]


@register
class Tied(Kind):
    name, formula, fused = "tied", "x W Wᵀ", "tied"


@register
class Untied(Kind):
    name, formula, fused, matrix = "untied", "x W W_out", "untied", "W W_out"

    def shapes(self, config) -> dict[str, tuple[int, ...]]:
        n, f, h = config.instances, config.features, config.hidden
        return {"W": (n, f, h), "W_out": (n, h, f), "b": (n, f)}

    def decoder(self, params: Params) -> Float[Tensor, "inst hidden feat"]:
        return params["W_out"]


@register
class MLP(Untied):
    """The seed's identity-MLP baseline: untied with a hidden ReLU and a linear output."""

    name, formula, fused = "mlp", "ReLU(x W) W_out", "untied"
    defaults = required = {"activation": "linear", "hidden_activation": "relu"}

    def describe(self, config) -> str:
        return f"{self.name} ({self.formula})"

    def stem(self, config) -> str:
        return self.name


# The functions the rest of the package calls: each asks the config's kind.


def init_params(config, generator: torch.Generator) -> Params:
    return KINDS[config.model].init(config, generator)


def encode(params: Params, x: Float[Tensor, "inst batch feat"], config) -> Float[Tensor, "inst batch hidden"]:
    return KINDS[config.model].encode(params, x, config)


def forward(params: Params, x: Float[Tensor, "inst batch feat"], config) -> Float[Tensor, "inst batch feat"]:
    model = KINDS[config.model]
    return model.decode(params, model.encode(params, x, config), config)


def loss_weights(config, device: torch.device | str = "cpu") -> Float[Tensor, "inst feat"]:
    """What the loss weighs each feature's squared error by: its importance I_i, times n where
    the loss sums over features (`loss_reduction = "sum"`), so that every engine's mean over
    features is that sum."""
    weights = torch.tensor(config.importance, dtype=torch.float32, device=device)
    return weights * config.features if config.loss_reduction == "sum" else weights


def loss_per_instance(out, x, importance, config) -> Float[Tensor, "inst"]:
    return KINDS[config.model].loss(out, x, importance, config)


def loss_per_example(out, x, importance, config) -> Float[Tensor, "inst batch"]:
    return KINDS[config.model].example_losses(out, x, importance, config)


def gram(params: Params, config) -> Float[Tensor, "inst feat feat"]:
    return KINDS[config.model].gram(params)


def gram_diagonal(params: Params, config) -> Float[Tensor, "inst feat"]:
    return KINDS[config.model].gram_diagonal(params)
