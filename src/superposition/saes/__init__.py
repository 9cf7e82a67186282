"""Sparse autoencoders on toy activations: each kind one module, registered in SAE_KINDS.

  kind.py      what an SAE kind is (SAEKind), the table of them, the forward pass
  relu.py, topk.py, jumprelu.py, batchtopk.py, matryoshka.py   the built-in kinds
  config.py    an SAE job's config (SAEConfig), validated at the edge
  sources.py   the activations SAEs train on: a toy run's, or a random dictionary's
  training.py  the SAE loop on the reference, compiled and fused engines
  runs.py      `SAE` and its directory, with its scores against the true features
  plots.py     its figures

Importing the package registers the built-in kinds and nothing heavier.
"""

from . import batchtopk, jumprelu, matryoshka, relu, topk  # noqa: F401  (the built-in kinds register themselves)
from .batchtopk import BatchTopK
from .jumprelu import BANDWIDTH, THRESHOLD_INIT, JumpReLU
from .kind import ENCODER_INIT, SAE_KINDS, NoOptions, Params, SAEKind, forward, register, setting_columns
from .matryoshka import Matryoshka
from .relu import ReLU
from .topk import AUXK_WEIGHT, TopK, k_aux

__all__ = [
    "AUXK_WEIGHT", "BANDWIDTH", "ENCODER_INIT", "SAE_KINDS", "THRESHOLD_INIT",
    "BatchTopK", "JumpReLU", "Matryoshka", "NoOptions", "Params", "ReLU", "SAEKind", "TopK", "forward", "k_aux", "register", "setting_columns",
]  # fmt: skip
