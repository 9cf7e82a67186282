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

Two sources of randomness:

- `batch` (training): counter-based, the fused engine's own stream written in
  torch. Element n of the batch of (seed, instance, step) is a hash of a 64-bit key
  of those three and of n, so every engine, on every device, draws the same
  batches bit for bit, and `superposition.sample` can return what training saw.
  One draw gives presence and value: u < p says present, and then u / p is uniform.
- `sample` (the fixed evaluation batch of metrics.py): torch's generator.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .config import Config, DataKind

# splitmix64's constants (fused.py hashes with the same ones)
GOLDEN, MIX1, MIX2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
_MASK64 = (1 << 64) - 1


def _int64(value: int) -> int:
    """A uint64 as the int64 with the same bits: torch has no full uint64 arithmetic."""
    value &= _MASK64
    return value - (1 << 64) if value >= 1 << 63 else value


def _shift_right(z: Tensor, bits: int) -> Tensor:
    """Logical (unsigned) shift of int64 bits; torch's >> on int64 extends the sign."""
    return (z >> bits) & ((1 << (64 - bits)) - 1)


def _mix(z: Tensor) -> Tensor:
    """splitmix64's finaliser on int64 tensors (multiplication wraps, as for uint64)."""
    z = (z ^ _shift_right(z, 30)) * _int64(MIX1)
    z = (z ^ _shift_right(z, 27)) * _int64(MIX2)
    return z ^ _shift_right(z, 31)


def instance_keys(seed: int, instances: Int[Tensor, "inst"]) -> Int[Tensor, "inst"]:
    """The part of each (instance, step) key that the step does not change."""
    k = _mix(torch.tensor(_int64(seed * GOLDEN + 0x5EED), device=instances.device))
    return _mix(k ^ (instances.long() * _int64(MIX1)))


def at_step(keys: Int[Tensor, "inst"], step: int | Int[Tensor, ""]) -> Int[Tensor, "inst"]:
    """The keys of `step` from instance_keys. The step may be a tensor, so that a compiled
    loop keeps its step counter on the device."""
    return _mix(keys ^ (torch.as_tensor(step, dtype=torch.long, device=keys.device) * _int64(MIX2)))


def step_keys(seed: int, instances: Int[Tensor, "inst"], step: int) -> Int[Tensor, "inst"]:
    """The key of each (instance, step): fused.step_key, vectorised over instances."""
    return at_step(instance_keys(seed, instances), step)


def _uniform(keys: Int[Tensor, "inst"], counters: Int[Tensor, "..."]) -> Float[Tensor, "inst ..."]:
    """float32 on [0, 1) with 24 random bits, from each key and every counter."""
    shape = (-1,) + (1,) * counters.dim()
    z = _mix(keys.view(shape) + counters * _int64(GOLDEN))
    return _shift_right(z, 40).float() * 2.0**-24


def batch(
    config: Config,
    feature_probability: Float[Tensor, "inst feat"],
    instances: Int[Tensor, "inst"],
    step: int,
    rows: int | None = None,
) -> Float[Tensor, "inst batch feat"]:
    """The training batch of these (global) instances at `step`, as every engine draws it
    (`rows` of them: batch_size unless given; `normalize` scales each to unit norm)."""
    keys = step_keys(config.seed, instances.to(feature_probability.device), step)
    return draw(config, feature_probability, keys, rows or config.batch_size)


def draw(
    config: Config,
    feature_probability: Float[Tensor, "inst feat"],
    keys: Int[Tensor, "inst"],
    rows: int,
    counter: Int[Tensor, "feat batch"] | None = None,
) -> Float[Tensor, "inst batch feat"]:
    """`rows` examples per instance from its key (see `step_keys`); of the config, only the
    data options are read. `counter`, the element counters (`counters(feat, rows)`), may
    be passed in: Inductor folds an arange times the hash's constant into an index
    expression whose coefficients overflow int64."""
    inst, feat = feature_probability.shape
    counter = counters(feat, rows, keys.device) if counter is None else counter
    u = _uniform(keys, counter)  # (inst, feat, batch): counter n = f * batch + r
    p = feature_probability[:, :, None]
    signed = config.data == "signed"
    if config.correlation != "none":
        size = config.set_size
        shared = _uniform(keys, counter[::size] + feat * rows).repeat_interleave(size, dim=1)  # one draw per set
        if config.correlation == "correlated":
            present = shared < p
        else:  # member j owns [low_j, low_j + p_j) of the shared draw, low summed in order as the kernel does
            low = torch.zeros_like(p)
            for j in range(1, size):
                low[:, j::size] = low[:, j - 1 :: size] + p[:, j - 1 :: size]
            present = (low <= shared) & (shared < low + p)
        values = 2.0 * u - 1.0 if signed else u
        x = torch.where(present, values, 0.0)
    elif config.data == "seed":
        x = _unit_columns(torch.where(u <= p, u, 0.0))
    else:
        inverse = 1.0 / p
        values = (2.0 * u) * inverse - 1.0 if signed else u * inverse
        x = torch.where(u < p, values, 0.0)
    if config.normalize:
        x = _unit_columns(x)
    return x.transpose(1, 2)


def counters(feat: int, rows: int, device: torch.device) -> Int[Tensor, "feat batch"]:
    """Element (f, r) of a draw of `rows` examples has counter f * rows + r."""
    return torch.arange(feat * rows, device=device, dtype=torch.long).view(feat, rows)


def _unit_columns(x: Float[Tensor, "inst feat batch"]) -> Float[Tensor, "inst feat batch"]:
    """Every example scaled to unit norm as the kernel rounds it; an all-zero one stays zero.

    A compiled graph sums the squares in one reduction (its rounding differs by ulps):
    unrolled feature by feature, its trace would grow with the features and be specialised
    on their number, one graph per feature count."""
    if torch.compiler.is_compiling():
        norm = (x * x).sum(1, keepdim=True)
    else:
        norm = torch.zeros_like(x[:, :1])
        for f in range(x.shape[1]):  # summed feature by feature, in the kernel's order
            norm += x[:, f : f + 1] * x[:, f : f + 1]
    # float32 1/sqrt as the kernel rounds it: torch's float32 sqrt is not correctly rounded
    # on every CPU, its float64 sqrt rounded to float32 is (but for ~1 value in 2**29)
    root = norm.double().sqrt().float()
    return x * torch.where(norm > 0, 1.0 / root, 0.0)


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
    return unit_rows(torch.where(u <= p, u, 0.0))


def unit_rows(x: Float[Tensor, "... feat"]) -> Float[Tensor, "... feat"]:
    """Every example scaled to unit norm; an all-zero one stays zero."""
    return x / x.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)


def feature_probability(config: Config, device: torch.device | str = "cpu") -> Float[Tensor, "inst feat"]:
    return torch.tensor(config.feature_probability, dtype=torch.float32, device=device)


def importance(config: Config, device: torch.device | str = "cpu") -> Float[Tensor, "inst feat"]:
    return torch.tensor(config.importance, dtype=torch.float32, device=device)
