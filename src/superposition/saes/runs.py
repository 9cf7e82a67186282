"""A trained batch of SAEs as one object (`SAE`), its scores, and the directory it is saved as.

  config.json          the resolved SAEConfig plus `package_version`: the source run's
                       path and the SHA-256 of its config.json, or the dictionary's sizes
  sae.safetensors      W_enc (inst, d_in, latents), b_enc (inst, latents), W_dec (inst,
                       latents, d_in), b_dec (inst, d_in), threshold (inst, latents) for
                       jumprelu, and `features` (inst, n, d_in): the true directions each
                       SAE was scored against (a run's encoder rows, or the dictionary's)
  metrics.json         the engine, its start's and the training loop's wall times, and
                       `instances`: one dict per SAE instance, its setting, source
                       instance, and scores
  history.safetensors  `loss` (steps, inst)
  *.png                figures, named from the config
  superposition.json   the marker, sealing the four data files, written last

Each SAE instance's row: its setting (l1_coefficient, k or l0_coefficient), the source
instance it read, and its scores on a fixed evaluation batch of eval_batch_size fresh rows:
  recovery (recovery.py): mmcs, mmcs_all, recovered, represented, latents_matched,
                          latents_duplicate, latents_unmatched, mcc, uniqueness;
                          precision, recall, f1 (means over latents) and f1_per_latent
  absorption              where the source's features form trees: the mean over children of
                          the share of a child's rows absorbed (its parent's latent silent,
                          its own firing with the parent's direction), and
                          absorption_per_child (recovery.py)
  shrinkage               mean over rows of ‖h'‖ / ‖h‖ (1: none; rows of ‖h‖ ≤ 1e-6 left out)
  dead_fraction           latents that fire on no row of the evaluation batch
  l0                      mean number of latents firing per row
  mse                     mean over rows and dimensions of (h − h')²
  variance_explained      1 − Σ (h − h')² / Σ (h − mean h)²
  loss                    the training loss on that batch (its reconstruction term + sparsity term)
  resampled               latents resampled during training
  dead_at_checks          latents silent since the check before, at each check (metrics'
                          `checks`: the steps), counted before that check resampled any
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from safetensors.torch import load, save
from torch import Tensor

from ..analysis.recovery import absorption, classification, cosines, score
from ..config import ConfigError
from ..files import CONFIG, atomic_dir, seal, to_json, verify
from ..runs import package_version
from ..training.loop import Diverged, divergence
from . import SAE_KINDS, Params, forward
from .config import SAEConfig
from .training import SAEResult, check, settings_tensor, source_of, source_run, train

WEIGHTS, METRICS, HISTORY = "sae.safetensors", "metrics.json", "history.safetensors"
# An SAE whose error is this many times what predicting the mean would cost has blown up,
# though its numbers are still finite (Adam at lr 1e6 ends near 1e12)
DIVERGED_ERROR = 1e3
SEALED = (CONFIG, WEIGHTS, METRICS, HISTORY)

# The SAEs' evaluation batch: the source's stream under its own seed, never a training one.
EVAL_SEED_OFFSET = 1_000_003
MIN_NORM = 1e-6  # rows of activations shorter than this have no shrinkage (an empty input's)


@dataclass
class SAE:
    """A trained batch of SAEs: what `sp.train_sae` returns and `sp.load_sae` reads.

    config    the SAEConfig it was trained with
    params    W_enc, b_enc, W_dec, b_dec (and threshold), on the CPU
    features  the true directions (inst, n, d_in) it is scored against
    metrics   metrics.json as a dict: `instances` holds one dict per SAE instance
    losses    training loss (steps, inst)
    """

    config: SAEConfig
    params: Params
    features: Float[Tensor, "inst feat d_in"]
    metrics: dict[str, Any]
    losses: np.ndarray
    path: Path | None = None

    def __len__(self) -> int:
        return self.config.instances

    def encode(self, h: Any) -> Float[Tensor, "inst batch latents"]:
        """Latent activations of h (inst, batch, d_in)."""
        return self._forward(h)[1]

    def forward(self, h: Any) -> Float[Tensor, "inst batch d_in"]:
        """Reconstructions h' of h (inst, batch, d_in)."""
        return self._forward(h)[2]

    def _forward(self, h: Any) -> tuple[Tensor, Tensor, Tensor]:
        h = torch.as_tensor(h, dtype=torch.float32)
        if h.dim() != 3 or h.shape[0] != len(self) or h.shape[2] != self.config.dims:
            raise ConfigError(f"h: expected shape (instances={len(self)}, batch, d_in={self.config.dims}), got {tuple(h.shape)}")
        with torch.no_grad():
            return forward(self.config.sae_kind, self.params, h, settings_tensor(self.config), inference=True)

    def plot(self, name: str = "directions"):
        """One figure as a matplotlib Figure: directions (d_in = 2) or penalty (several settings)."""
        from .plots import figure

        return figure(name, self)

    def write(self, directory: Path, figures: bool = True) -> None:

        directory = Path(directory)
        (directory / CONFIG).write_text(to_json({**self.config.model_dump(), "package_version": package_version()}))
        tensors = {**self.params, "features": self.features}
        (directory / WEIGHTS).write_bytes(save({k: v.contiguous() for k, v in tensors.items()}))
        (directory / METRICS).write_text(to_json(self.metrics))
        (directory / HISTORY).write_bytes(save({"loss": torch.tensor(self.losses, dtype=torch.float32)}))
        if figures:
            from .plots import write_figures

            write_figures(self, directory)
        seal(directory, "sae", SEALED)

    def save(self, path: str | os.PathLike[str], figures: bool = True) -> Path:
        """Save as an SAE directory (replacing one of ours, refusing anything else)."""
        with atomic_dir(Path(path), "sae", inputs=[self.config.run] if self.config.run else ()) as staging:
            self.write(staging, figures)
        self.path = Path(path)
        return self.path


def measure(result: SAEResult, run=None) -> SAE:
    """Score a trained batch of SAEs against its source's true features; non-finite weights or
    loss are `Diverged`, never an SAE."""
    config = result.config
    source = source_of(config, run)
    copies = len(config.settings)
    features = source.features.cpu().repeat(copies, 1, 1)
    represented = source.represented.cpu().repeat(copies, 1)
    x = source.inputs(config.seed + EVAL_SEED_OFFSET, config.eval_batch_size, 0)  # (sources, rows, feat)
    h = source.activations(x).cpu().repeat(copies, 1, 1)
    kind = config.sae_kind
    setting = settings_tensor(config)
    with torch.no_grad():
        pre, a, h_hat = forward(kind, result.params, h, setting, inference=True)
        error = ((h - h_hat) ** 2).sum(dim=(1, 2))
        spread = ((h - h.mean(1, keepdim=True)) ** 2).sum(dim=(1, 2))
        mse = error / (h.shape[1] * h.shape[2])
        loss = kind.reconstruction_loss(result.params, h, a, h_hat) + kind.sparsity_loss(result.params, pre, a, setting)
        firing = a > 0
        norm = h.norm(dim=-1)
        shrinkage = [float((h_hat[i].norm(dim=-1) / norm[i])[norm[i] > MIN_NORM].mean()) for i in range(len(h))]
    present = (x != 0).cpu()
    cos = cosines(features, result.params["W_dec"])
    parents = source.parents
    rows = []
    for i, scores in enumerate(score(features, result.params["W_dec"], represented)):
        rows.append(
            {
                kind.column: config.settings[i // config.source_instances],
                "source_instance": i % config.source_instances,
                **scores,
                **classification(cos[i], present[i % config.source_instances], firing[i]),
                **(absorption(features[i], cos[i], present[i % config.source_instances], firing[i], parents) if parents else {}),
                "shrinkage": shrinkage[i],
                "dead_fraction": float((~firing[i].any(0)).float().mean()),
                "l0": float(firing[i].sum(-1).float().mean()),
                "mse": float(mse[i]),
                "variance_explained": float(1 - error[i] / spread[i]) if spread[i] > 0 else float("nan"),
                "loss": float(loss[i]),
                "resampled": int(result.resampled[i]),
                "dead_at_checks": result.dead[:, i].tolist(),
            }
        )
    problem = divergence(result.params, [row["loss"] for row in rows])
    if problem:
        raise Diverged(problem)
    blown = [i for i in range(len(rows)) if 0 < DIVERGED_ERROR * spread[i] < error[i]]  # an all-zero batch has no scale
    if blown:
        raise Diverged(
            f"the reconstruction error of {len(blown)} SAE(s) {blown[:10]} is over {DIVERGED_ERROR:,.0f} times "
            "the activations' variance; lower lr"
        )
    metrics = {
        "engine": result.engine,
        "setup_seconds": result.setup_seconds,
        "train_seconds": result.seconds,
        "checks": result.checks,
        "instances": rows,
    }
    return SAE(config, result.params, features, metrics, result.history.numpy())


def train_sae(config: SAEConfig, run=None, progress: bool = False) -> SAE:

    check(config)
    run = source_run(config, run)  # read from disk once, for training and scoring
    return measure(train(config, run, progress), run)


def load_sae(path: str | os.PathLike[str]) -> SAE:
    """Read an SAE directory back (checksums verified). Raises ConfigError if broken."""
    path = Path(path)
    if set(verify(path, "sae", "sae")["sha256"]) != set(SEALED):
        raise ConfigError(f"sae: {path}/superposition.json does not seal the files of an SAE; write it again")
    try:
        raw = json.loads((path / CONFIG).read_text())
        metrics = json.loads((path / METRICS).read_text())
        tensors = load((path / WEIGHTS).read_bytes())
        history = load((path / HISTORY).read_bytes())
    except (OSError, ValueError) as error:
        raise ConfigError(f"sae: {path} has an unreadable file ({error})") from None
    raw.pop("package_version", None)
    try:
        config = SAEConfig(**raw)
    except (ConfigError, TypeError) as error:
        raise ConfigError(f"sae: {path} holds an invalid config ({error})") from None
    features = tensors.pop("features", None)
    expected = SAE_KINDS[config.kind].shapes(config.instances, config.dims, config.latents)
    if {k: tuple(v.shape) for k, v in tensors.items()} != expected or features is None:
        raise ConfigError(f"sae: {path}/{WEIGHTS} does not hold the tensors its config needs")
    return SAE(config, tensors, features, metrics, history["loss"].numpy(), path)
