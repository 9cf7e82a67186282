"""The toy models, every one batched over an instances axis.

Parameters are a plain dict of tensors, the same names as in `model.safetensors`:
  W      (inst, feat, hidden)   the embedding; row i is feature i's direction W_i
  W_out  (inst, hidden, feat)   untied and mlp only
  b      (inst, feat)

  tied:    x' = act(hid(x W) Wᵀ + b)        the paper's model, the seed's One Weight net
  untied:  x' = act(hid(x W) W_out + b)     the seed's Two Weight net
  mlp:     x' = ReLU(x W) W_out + b         the seed's later identity-MLP baseline

act is the output activation (`activation`), hid the hidden one (`hidden_activation`,
identity unless asked: ReLU gives the paper's privileged-basis model for tied).
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from .config import Config

Params = dict[str, Tensor]


def has_w_out(model: str) -> bool:
    return model in ("untied", "mlp")


def init_params(config: Config, generator: torch.Generator) -> Params:
    """Xavier-normal per instance, bias zeros, on the CPU (same start on every device).

    Each instance is its own 2-D matrix: xavier on a 3-D tensor would count the
    instances axis into fan-in/out, so the scale would change with their number.
    """
    n, f, h = config.instances, config.features, config.hidden

    def xavier(rows: int, cols: int) -> Tensor:
        return torch.stack(
            [torch.nn.init.xavier_normal_(torch.empty(rows, cols), generator=generator) for _ in range(n)]
        )

    params = {"W": xavier(f, h)}
    if has_w_out(config.model):
        params["W_out"] = xavier(h, f)
    params["b"] = torch.zeros(n, f)
    return params


def forward(params: Params, x: Float[Tensor, "inst batch feat"], config: Config) -> Float[Tensor, "inst batch feat"]:
    W, b = params["W"], params["b"]
    hidden = torch.bmm(x, W)  # (inst, batch, hidden)
    if config.hidden_activation == "relu":
        hidden = torch.relu(hidden)
    decoder = W.transpose(1, 2) if config.model == "tied" else params["W_out"]
    out = torch.baddbmm(b[:, None, :], hidden, decoder)
    return torch.relu(out) if config.activation == "relu" else out


def loss_per_instance(
    out: Float[Tensor, "inst batch feat"],
    x: Float[Tensor, "inst batch feat"],
    importance: Float[Tensor, "inst feat"],
    target: str = "identity",
) -> Float[Tensor, "inst"]:
    """Importance-weighted squared error against x (or |x|), mean over batch and features."""
    goal = x.abs() if target == "abs" else x
    return (importance[:, None, :] * (goal - out) ** 2).mean(dim=(1, 2))


def gram(params: Params, model: str) -> Float[Tensor, "inst feat feat"]:
    """x W Wᵀ's matrix (tied) or W W_out (untied, mlp): row i is what feature i writes out."""
    W = params["W"]
    return torch.bmm(W, W.transpose(1, 2) if model == "tied" else params["W_out"])
