"""Sparse autoencoders (SAEs), batched over an instances axis, each kind one small unit.

SAELens's names and shapes, with an instances axis in front (as in `sae.safetensors`):
  W_enc      (inst, d_in, latents)    b_enc (inst, latents)
  W_dec      (inst, latents, d_in)    b_dec (inst, d_in)
  threshold  (inst, latents)          jumprelu only

  pre = (h − b_dec) W_enc + b_enc ;  a = act(pre) ;  h' = a W_dec + b_dec
  loss = mean over d_in of (h − h')² + the kind's sparsity term (+ its auxiliary loss)

A trained SAE's decoder rows have unit norm, so a latent's activation is the length of
what it writes. TopK, BatchTopK and JumpReLU keep them so throughout (renormalised after
every step, as in "Towards Monosemanticity" and the plain loops people write); ReLU
trains them free and weights its L1 term by their norms, as SAELens does, then folds
the norms into the encoder when training ends (relu.py says why). Every instance has its own `setting`: the L1 coefficient, k, or
the L0 coefficient, which is how one job trains a grid of penalties.

  relu      a = ReLU(pre), sparsity term l1 Σ_j a_j |W_dec[j]|
  topk      a = ReLU(TopK_k(pre)) (Gao et al. 2024); no sparsity term, and the AuxK loss:
            the k_aux largest pre-activations of dead latents reconstruct the residual
            (squared error over the residual's variance)
  jumprelu  a = pre H(pre − θ) with a learned threshold θ per latent (Rajamanoharan et
            al. 2024); sparsity term l0 Σ_j H(pre_j − θ_j), whose gradient reaches θ
            through a straight-through estimator with a rectangle kernel

A kind is a subclass of `SAEKind` registered with `@register` (`sp.register_sae` from
outside the package); `SAE_KINDS` is the table the config, the engines, the trainer and
the command line read. A kind whose setting is l1, k or l0 needs nothing else: a new
kind (BatchTopK, say) is one class. What a kind may override besides its activation:
its own config keys (`Options`, a pydantic model: Matryoshka's prefixes), the
reconstruction loss (Matryoshka's sum over prefixes), the activation at inference
(BatchTopK's threshold) and a calibration after training that sets it.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import torch
from jaxtyping import Bool, Float
from pydantic import BaseModel, ConfigDict
from torch import Tensor

from ..errors import ConfigError
from ..registry import admit, own, parse_options

Params = dict[str, Tensor]

# The encoder starts as a small multiple of the decoder's transpose (SAELens's and
# dictionary_learning's heuristic init also uses norm 0.1, after Anthropic's April 2024
# update): on issue 11's S2 problem MMCS after 1,000 steps was 0.66 with the full
# transpose, 0.84 with 0.1 and 0.82 with 0.3.
ENCODER_INIT = 0.1


class NoOptions(BaseModel):
    """A kind's own config keys; subclass it to declare some (each field a key)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class SAEKind:
    """An SAE kind. `setting` is one value per instance: its penalty coefficient or its k.
    The instance in SAE_KINDS has the default options; `bound` gives one with a config's."""

    name: ClassVar[str]
    # the config key of its per-instance setting, also its command-line flag and sweep axis
    # (l1, k, l0, or one of its own), and the setting's name in metrics.json, results.csv
    # and figures (SAELens's)
    setting: ClassVar[str]
    column: ClassVar[str]
    whole: ClassVar[bool] = False  # the setting is a whole number (TopK's k)
    penalty: ClassVar[bool] = True  # the setting is a penalty's coefficient (not TopK's k), which can warm up
    formula: ClassVar[str] = ""
    # the figures of saes/plots.py it draws, where they apply (directions: d_in = 2;
    # penalty: several settings)
    figures: ClassVar[tuple[str, ...]] = ("directions", "penalty")
    # whether sae_fused.py's kernel computes it; never inherited (see `register`): a subclass
    # that changes the arithmetic is an SAE the kernel does not compute
    fused: ClassVar[bool] = False
    # its training recipe: config keys (lr, beta1, sparsity_warmup, log_threshold, …) a job
    # of this kind takes where none is given, in place of SAEConfig's own defaults
    recipe: ClassVar[dict[str, object]] = {}
    Options: ClassVar[type[NoOptions]] = NoOptions
    # θ is a parameter the optimiser trains (so `log_threshold` applies to it)
    trains_threshold: ClassVar[bool] = False
    # it sets something after training from the pre-activations of fresh batches (`calibrate`)
    calibrates: ClassVar[bool] = False

    def __init__(self) -> None:
        self.options: Any = self.Options()

    def bound(self, options: dict[str, Any]) -> SAEKind:
        """This kind with a config's options (validated: see `validate`)."""
        kind = copy.copy(self)
        kind.options = self.Options(**options)
        return kind

    def validate(self, given: dict[str, Any], latents: int) -> dict[str, Any]:
        """The options as given with every default filled in; bad ones raise ValueError naming the key."""
        options = parse_options(self.Options, given, f"the {self.name} SAE")
        if problem := self.options_problem(options, latents):
            raise ValueError(problem)
        return options.model_dump()

    def options_problem(self, options: Any, latents: int) -> str | None:
        """What is wrong with these options for an SAE of `latents` latents (a line naming the key), or None."""
        return None

    def shapes(self, instances: int, d_in: int, latents: int) -> dict[str, tuple[int, ...]]:
        return {
            "W_enc": (instances, d_in, latents),
            "b_enc": (instances, latents),
            "W_dec": (instances, latents, d_in),
            "b_dec": (instances, d_in),
        }

    def init(self, instances: int, d_in: int, latents: int, generator: torch.Generator) -> Params:
        """Decoder rows random unit vectors, the encoder ENCODER_INIT times their transpose,
        biases zero."""
        W_dec = torch.nn.functional.normalize(torch.randn(instances, latents, d_in, generator=generator), dim=-1)
        params = {name: torch.zeros(shape) for name, shape in self.shapes(instances, d_in, latents).items()}
        params["W_dec"] = W_dec
        params["W_enc"] = (ENCODER_INIT * W_dec.transpose(1, 2)).contiguous()
        return params

    def pre(self, params: Params, h: Float[Tensor, "inst batch d_in"]) -> Float[Tensor, "inst batch latents"]:
        return torch.baddbmm(params["b_enc"][:, None, :], h - params["b_dec"][:, None, :], params["W_enc"])

    def activate(self, params: Params, pre: Float[Tensor, "inst batch latents"], setting: Tensor) -> Float[Tensor, "inst batch latents"]:
        raise NotImplementedError

    def infer(self, params: Params, pre: Float[Tensor, "inst batch latents"], setting: Tensor) -> Float[Tensor, "inst batch latents"]:
        """The activation outside training (scores, `SAE.encode`): the training one unless overridden."""
        return self.activate(params, pre, setting)

    def decode(self, params: Params, a: Float[Tensor, "inst batch latents"]) -> Float[Tensor, "inst batch d_in"]:
        return torch.baddbmm(params["b_dec"][:, None, :], a, params["W_dec"])

    def reconstruction_loss(
        self, params: Params, h: Float[Tensor, "inst batch d_in"], a: Float[Tensor, "inst batch latents"], h_hat: Float[Tensor, "inst batch d_in"]
    ) -> Float[Tensor, "inst"]:
        """The training loss's reconstruction term: the mean squared error."""
        return ((h - h_hat) ** 2).mean(dim=(1, 2))

    def calibrate(self, params: Params, pres: list[Float[Tensor, "inst batch latents"]], setting: Tensor) -> None:
        """After training (where `calibrates`): set what inference needs from fresh batches' pre-activations."""

    def sparsity_loss(self, params: Params, pre: Tensor, a: Tensor, setting: Tensor) -> Float[Tensor, "inst"]:
        return torch.zeros(a.shape[0], device=a.device)

    def aux_loss(
        self, params: Params, residual: Float[Tensor, "inst batch d_in"], pre: Tensor, dead: Bool[Tensor, "inst latents"]
    ) -> Float[Tensor, "inst"]:
        return torch.zeros(pre.shape[0], device=pre.device)

    def after_step(self, params: Params) -> None:
        """Restore what the update may have broken: unit decoder rows."""
        params["W_dec"].div_(params["W_dec"].norm(dim=-1, keepdim=True).clamp_min(1e-12))

    def fold(self, params: Params) -> None:
        """When training ends: unit decoder rows, the SAE's function unchanged (where the
        kind trains them free)."""

    def setting_problem(self, value: float, latents: int) -> str | None:
        """What is wrong with `value` as this kind's setting, or None: a penalty is >= 0."""
        return None if value >= 0 else "is negative; a penalty coefficient is >= 0"

    def default_setting(self, r2: float, d_in: int, active: float) -> float | None:
        """The setting where none is given (saes/config.py: r2 the represented features'
        mean squared norm, d_in their dimension, active the features present per row), or
        None: the user must give one."""
        return None


SAE_KINDS: dict[str, SAEKind] = {}


def setting_columns() -> dict[str, str]:
    """Every registered kind's setting key, with the column it is reported under."""
    return {kind.setting: kind.column for kind in SAE_KINDS.values()}


def register(cls: type[SAEKind]) -> type[SAEKind]:
    """Add an SAE kind to the table every part of the package reads; it runs on the fused
    engine only where its own class says so. Kinds that share a setting key share its column."""
    name = admit(SAE_KINDS, cls, SAEKind, "register_sae", "kind")
    setting, column = getattr(cls, "setting", None), getattr(cls, "column", None)
    if not (isinstance(setting, str) and setting.isidentifier() and isinstance(column, str) and column):
        raise ConfigError(f"register_sae: {cls.__name__} needs a `setting` (a key such as l1) and a `column` to report it under")
    others = {k: c for n, kind in SAE_KINDS.items() if n != name for k, c in [(kind.setting, kind.column)]}
    if others.get(setting, column) != column:
        raise ConfigError(f"register_sae: the setting {setting!r} is reported as {others[setting]!r} by another kind, not {column!r}")
    own(cls, "fused", False)
    SAE_KINDS[name] = cls()
    return cls


def forward(kind: SAEKind, params: Params, h: Tensor, setting: Tensor, inference: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """(pre, a, h') of every instance, with the training activation or, with `inference`, the kind's inference one."""
    pre = kind.pre(params, h)
    a = (kind.infer if inference else kind.activate)(params, pre, setting)
    return pre, a, kind.decode(params, a)
