"""Synthetic sparse features, batched over an instances axis.

Each instance has its own probability per feature (`feature_probability`, the
paper's 1 - S). Two generators:

- `paper`: feature present with probability p, its value ~ U[0, 1]; presence and
  value are independent draws (Elhage et al., 2022).
- `seed`: the seed project's coupled single draw u ~ U[0, 1], kept when u <= p (so a
  present value is uniform on [0, p]), then every row scaled to unit L2 norm; an
  all-zero row stays zero.
- `signed`: as `paper`, but a present value is ~ U[-1, 1] (the paper's computation
  experiment, whose target is |x|).

Features can come in sets (`correlation`, `set_size`): consecutive groups that share
one presence draw per row. Correlated sets are present together; anticorrelated
sets have at most one member active (each member owns a slot of width p_f of the
shared draw). Each feature keeps its own probability p_f either way.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from .config import Config, DataKind


def sample(
    kind: DataKind,
    feature_probability: Float[Tensor, "inst feat"],
    batch_size: int,
    generator: torch.Generator,
    correlation: str = "none",
    set_size: int = 1,
) -> Float[Tensor, "inst batch feat"]:
    inst, feat = feature_probability.shape
    shape = (inst, batch_size, feat)
    device = feature_probability.device
    p = feature_probability[:, None, :]
    if correlation != "none":
        # one presence draw per set and row, shared by the set's members
        v = torch.rand(inst, batch_size, feat // set_size, generator=generator, device=device)
        v = v.repeat_interleave(set_size, dim=-1)
        if correlation == "correlated":
            present = v < p
        else:  # each member owns a slot of width p_f: at most one is active
            slots = p.reshape(inst, 1, feat // set_size, set_size)
            low = (slots.cumsum(-1) - slots).reshape(inst, 1, feat)
            present = (v >= low) & (v < low + p)
        values = torch.rand(shape, generator=generator, device=device)
        if kind == "signed":
            values = 2 * values - 1
        return torch.where(present, values, 0.0)
    if kind in ("paper", "signed"):
        values = torch.rand(shape, generator=generator, device=device)
        if kind == "signed":
            values = 2 * values - 1
        present = torch.rand(shape, generator=generator, device=device) < p
        return torch.where(present, values, 0.0)
    u = torch.rand(shape, generator=generator, device=device)
    x = torch.where(u <= p, u, 0.0)
    norm = x.norm(dim=-1, keepdim=True)
    return x / norm.clamp_min(torch.finfo(x.dtype).tiny)


def feature_probability(config: Config, device: torch.device | str = "cpu") -> Float[Tensor, "inst feat"]:
    return torch.tensor(config.feature_probability, dtype=torch.float32, device=device)


def importance(config: Config, device: torch.device | str = "cpu") -> Float[Tensor, "inst feat"]:
    return torch.tensor(config.importance, dtype=torch.float32, device=device)
