"""The counter stream every engine draws its random numbers from.

Element n of the draw of (seed, instance, step) is splitmix64's hash of a 64-bit key of
those three plus n times the golden ratio. So every engine, on every device, draws the
same batches bit for bit, an instance's stream does not depend on the others or on the
threads, and `superposition.sample` can return what training saw. The numba kernels
hash with the same constants (kernels: fused.py).

On the CPU the hash of a draw runs as one numba loop (`_grid`, `_pairs`), with the bits
torch's dozen passes over int64 tensors give (tested); on a GPU, and inside a graph that
torch.compile traces, it is torch's.

A draw of `rows` examples of `feat` features uses counters in blocks of feat x rows:
element (f, r) of block b has counter b * feat * rows + f * rows + r. A generator takes
what it needs block by block (`Stream.uniform`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

# splitmix64's constants
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


def uniform(keys: Int[Tensor, "inst"], counters: Int[Tensor, "..."]) -> Float[Tensor, "inst ..."]:
    """float32 on [0, 1) with 24 random bits, from each key and every counter."""
    if _on_numba(keys):
        out = np.empty((keys.shape[0], counters.numel()), np.float32)
        _grid(_u64(keys), _u64(counters), out)
        return torch.from_numpy(out).view(keys.shape[0], *counters.shape)
    shape = (-1,) + (1,) * counters.dim()
    return _torch_unit(keys.view(shape) + counters * _int64(GOLDEN))


def pairs(keys: Int[Tensor, "n"], counters: Int[Tensor, "n"]) -> Float[Tensor, "n"]:
    """`uniform` of each (key, counter) pair."""
    if _on_numba(keys):
        out = np.empty(keys.shape[0], np.float32)
        _pairs(_u64(keys), _u64(counters), out)
        return torch.from_numpy(out)
    return _torch_unit(keys + counters * _int64(GOLDEN))


def _torch_unit(z: Tensor) -> Tensor:
    return _shift_right(_mix(z), 40).float() * 2.0**-24


def _on_numba(keys: Tensor) -> bool:
    return keys.device.type == "cpu" and not torch.compiler.is_compiling()


def _u64(t: Tensor) -> np.ndarray:
    """An int64 tensor's bits as a flat uint64 array (no copy where it is contiguous)."""
    return t.reshape(-1).contiguous().numpy().view(np.uint64)


_N_GOLDEN, _N_MIX1, _N_MIX2 = np.uint64(GOLDEN), np.uint64(MIX1), np.uint64(MIX2)
_N30, _N27, _N31, _N40 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(40)


@numba.njit(inline="always")
def _unit(z):
    """splitmix64's finaliser of z, its top 24 bits as a float32 on [0, 1)."""
    z = (z ^ (z >> _N30)) * _N_MIX1
    z = (z ^ (z >> _N27)) * _N_MIX2
    z = z ^ (z >> _N31)
    return np.float32(z >> _N40) * np.float32(2.0**-24)


@numba.njit(parallel=True, cache=True, nogil=True)
def _grid(keys, counters, out):  # out[i, j]: key i, counter j; few keys, many counters
    for j in numba.prange(counters.shape[0]):
        step = counters[j] * _N_GOLDEN
        for i in range(keys.shape[0]):
            out[i, j] = _unit(keys[i] + step)


@numba.njit(parallel=True, cache=True, nogil=True)
def _pairs(keys, counters, out):
    for t in numba.prange(keys.shape[0]):
        out[t] = _unit(keys[t] + counters[t] * _N_GOLDEN)


def counters(feat: int, rows: int, device: torch.device) -> Int[Tensor, "feat batch"]:
    """Element (f, r) of a draw of `rows` examples has counter f * rows + r."""
    return torch.arange(feat * rows, device=device, dtype=torch.long).view(feat, rows)


@dataclass(frozen=True)
class Stream:
    """The random numbers of one draw: a key per instance and the counters of block 0.

    The counters come in as a tensor (`counters`): a compiled graph folds an arange times
    the hash's constant into an index expression whose coefficients overflow int64."""

    keys: Int[Tensor, "inst"]
    counter: Int[Tensor, "feat batch"]

    def uniform(self, block: int = 0, every: int = 1, first: int | None = None) -> Float[Tensor, "inst feat batch"]:
        """The uniforms of counter block `block`, of every `every`-th feature from the first
        (of the `first` features only, where given)."""
        feat, rows = self.counter.shape
        return uniform(self.keys, self.counter[:first:every] + block * feat * rows)

    def uniform_at(self, where: Bool[Tensor, "inst feat batch"], block: int = 0) -> Float[Tensor, "inst feat batch"]:
        """The uniforms of block `block` where `where` holds, 0 elsewhere: `uniform(block)`'s
        values there, hashed only there (a sparse draw's values cost what its firing ones do)."""
        feat, rows = self.counter.shape
        inst, f, r = where.nonzero(as_tuple=True)
        out = torch.zeros(where.shape, device=where.device)
        out[inst, f, r] = pairs(self.keys[inst], self.counter[f, r] + block * feat * rows)
        return out


def unit_columns(x: Float[Tensor, "inst feat batch"]) -> Float[Tensor, "inst feat batch"]:
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
