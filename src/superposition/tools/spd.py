"""A tied toy model as SPD's TMS target (goodfire-ai/spd, `spd/experiments/tms`): the files
its `TMSModel` is loaded from for stochastic parameter decomposition.

  tms.pth                 torch.save of the state dict: linear1.weight (hidden, features) = Wᵀ,
                          linear2.weight (features, hidden) = W (SPD ties it to linear1 on
                          load), linear2.bias (features) = b, and with `hidden_identity`
                          hidden_layers.0.weight = I (hidden, hidden)
  tms_train_config.yaml   its TMSTrainConfig: the model's sizes, feature probability,
                          batch, steps, seed, lr; written as JSON, which YAML reads as is

SPD points at the .pth file; the config must lie beside it. SPD's model is ReLU(W (I (Wᵀ x)) + b)
with importance 1 on independent U[0, 1] features of one probability, so a run is refused
where it computes something else. The "+ID" targets put a frozen identity in the hidden
space: it changes neither the function nor any gradient of W and b, so a tied run is
already the +ID model's training, and `hidden_identity` only writes the layer.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch

from ..errors import ConfigError
from ..files import atomic_dir, seal, to_json
from ..runs import Run

WEIGHTS_FILE, CONFIG_FILE = "tms.pth", "tms_train_config.yaml"


def problem(run: Run, instance: int) -> str | None:
    """Why SPD's TMSModel cannot hold instance `instance` of this run, or None."""
    config = run.config
    if isinstance(instance, bool) or not 0 <= instance < len(run):
        return f"instance: {instance} is not one of the run's instances (0 to {len(run) - 1})"
    if config.model != "tied" or config.activation != "relu" or config.hidden_activation != "linear":
        return f"model: SPD's TMS target is tied, ReLU(W Wᵀ x + b); this run is {config.model} with {config.hidden_activation} hidden and {config.activation} output"
    if config.data != "paper" or run.config.data_options.get("correlation", "none") != "none" or config.normalize:
        return "data: SPD's TMS data is independent U[0, 1] features (paper data without correlation or normalize)"
    if len(set(config.feature_probability[instance])) != 1:
        return "feature_probability: SPD's TMS config holds one probability for every feature; this instance's vary"
    return None


def export(run: Run, instance: int, out: Path, hidden_identity: bool = False) -> list[str]:
    """Write instance `instance` at `out`; the notes on what SPD's config cannot say exactly."""
    if reason := problem(run, instance):
        raise ConfigError(reason)
    config, notes = run.config, []
    W, b = run.params["W"][instance], run.params["b"][instance]  # (features, hidden), (features,)
    # clones: torch.save writes a view's whole storage, every instance's weights
    state = {"linear1.weight": W.T.clone(), "linear2.weight": W.clone(), "linear2.bias": b.clone()}
    if hidden_identity:
        state["hidden_layers.0.weight"] = torch.eye(config.hidden)
    if set(config.importance[instance]) != {1.0}:
        notes.append("importance: SPD trains TMS with importance 1; this model was trained with other importances")
    if config.optimizer != "adamw" or config.schedule != "constant":
        notes.append(f"optimizer: SPD's TMS training is AdamW at a constant lr; this model used {config.optimizer}, {config.schedule}")
    train = {
        "wandb_project": None,
        "tms_model_config": {
            "n_features": config.features, "n_hidden": config.hidden, "n_hidden_layers": int(hidden_identity),
            "tied_weights": True, "init_bias_to_zero": False, "device": "cpu",
        },
        "feature_probability": config.feature_probability[instance][0],
        "batch_size": config.batch_size, "steps": config.steps, "seed": config.seed,
        "lr_schedule": {"start_val": config.lr, "fn_type": "constant", "warmup_pct": 0.0, "final_val_frac": 1.0},
        "data_generation_type": "at_least_zero_active",
        "fixed_identity_hidden_layers": hidden_identity, "fixed_random_hidden_layers": False, "synced_inputs": None,
    }  # fmt: skip
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with atomic_dir(Path(out), "spd-model") as staging:
        (staging / WEIGHTS_FILE).write_bytes(buffer.getvalue())
        (staging / CONFIG_FILE).write_text(to_json(train))
        seal(staging, "spd-model", [WEIGHTS_FILE, CONFIG_FILE])
    return notes
