"""One of our SAEs as SAELens writes one: a directory `sae_lens.SAE.load_from_disk` loads.

  cfg.json                  architecture, d_in, d_sae, dtype, metadata (with sae_lens_version:
                            without it SAELens takes the directory for a pre-6.0 one)
  sae_weights.safetensors   W_enc (d_in, d_sae), b_enc (d_sae), W_dec (d_sae, d_in), b_dec (d_in),
                            and threshold (d_sae) for jumprelu

Our kinds compute what SAELens's inference architectures compute, with b_dec subtracted
from the input (`apply_b_dec_to_input`): relu is its `standard`, topk its `topk` (k, no
rescaling by decoder norms: our rows are unit norm), jumprelu its `jumprelu`. BatchTopK
and Matryoshka SAEs are saved as SAELens saves its own: as `jumprelu`, their calibrated
threshold per latent, the training architecture in the metadata.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save

from ..errors import ConfigError
from ..files import atomic_dir, seal, to_json
from ..saes.runs import SAE

CONFIG_FILE, WEIGHTS_FILE = "cfg.json", "sae_weights.safetensors"
SAELENS_FORMAT = "6.54.12"  # the version whose loader this layout was checked against
ARCHITECTURES = {"relu": "standard", "topk": "topk", "jumprelu": "jumprelu", "batchtopk": "jumprelu", "matryoshka": "jumprelu"}


def export(sae: SAE, instance: int, out: Path) -> str:
    """Write SAE `instance` at `out`; returns the SAELens architecture it was written as."""
    kind = sae.config.kind
    if kind not in ARCHITECTURES:
        raise ConfigError(f"kind: SAELens has no architecture for the {kind} SAE; export relu, topk, jumprelu, batchtopk or matryoshka")
    if isinstance(instance, bool) or not 0 <= instance < len(sae):
        raise ConfigError(f"instance: {instance} is not one of the SAEs (0 to {len(sae) - 1})")
    architecture = ARCHITECTURES[kind]
    weights = {name: sae.params[name][instance].contiguous() for name in ("W_enc", "b_enc", "W_dec", "b_dec")}
    config = {
        "architecture": architecture, "d_in": sae.config.dims, "d_sae": sae.config.latents, "dtype": "float32", "device": "cpu",
        "apply_b_dec_to_input": True, "normalize_activations": "none", "reshape_activations": "none",
        "metadata": {"sae_lens_version": SAELENS_FORMAT, "model_name": "superposition toy model", "hook_name": "hidden",
                     "training_architecture": kind, "source": sae.config.run or sae.config.source},
    }  # fmt: skip
    setting = sae.metrics["instances"][instance][sae.config.sae_kind.column]
    if architecture == "topk":
        config["k"], config["rescale_acts_by_decoder_norm"] = int(setting), False
    if architecture == "jumprelu":
        weights["threshold"] = sae.params["threshold"][instance].contiguous()
    if kind in ("batchtopk", "matryoshka"):
        config["metadata"]["training_architecture_details"] = {"k": setting}
    with atomic_dir(Path(out), "saelens-sae") as staging:
        (staging / CONFIG_FILE).write_text(to_json(config))
        (staging / WEIGHTS_FILE).write_bytes(save(weights))
        seal(staging, "saelens-sae", [CONFIG_FILE, WEIGHTS_FILE])
    return architecture

