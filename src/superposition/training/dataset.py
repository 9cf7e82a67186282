"""Finite training sets (Henighan et al., 2023): T examples per instance, drawn once.

With `dataset_size = T`, instance i's training set is the batch of T rows that the
counter stream draws for (seed, i) at data.DATASET_STEP, a step no training run
reaches: `data.batch(config, probs, instances, DATASET_STEP, rows=T)` returns it too,
scaled to unit norm when `normalize` (an all-zero example stays zero). Its test set is
blocks of eval_batch_size fresh rows at steps data.EVAL_STEP + b, block 0 being every
run's evaluation batch, as many as its loss needs for a standard error below 1%
(`test_loss`). The kernels' draw makes the training set and the blocks where the
generator has one, torch's otherwise; all are held as compressed sparse rows (`Sparse`):
at S = 0.999, ~10 of 10,000 features are present per example, so the paper's largest
sets take megabytes, not gigabytes.

Training on it: the whole set every step when T <= batch_size, else shuffled
minibatches of batch_size. Epoch e is a permutation of the T examples (their order by a
hash keyed by seed, instance and e); step s takes positions s·B … (s+1)·B − 1 of the
epochs laid end to end, so a batch may straddle two epochs and none is dropped.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
from jaxtyping import Float
from numba import njit
from torch import Tensor

from .. import data
from ..config import Config
from ..data import DATASET_STEP, EVAL_STEP, GENERATORS, SHUFFLE_STEP
from ..kernels.fused import _GOLDEN, _draw_rows, _mix, _unit_columns, step_key
from ..models import forward, loss_per_example, loss_weights
from .steps import CHUNK

BLOCK = 64  # rows drawn at once: feat x BLOCK floats of scratch
CHUNK_VALUES = 2**24  # dense values at once where a set is evaluated in chunks of rows


class Sparse(NamedTuple):
    """Examples of every instance as compressed sparse rows: instance i's example t has the
    features cols[row_ptr[i, t] : row_ptr[i, t + 1]] with those values."""

    row_ptr: np.ndarray  # (inst, rows + 1) int64, offsets into cols and values
    cols: np.ndarray  # (nnz,) int32
    values: np.ndarray  # (nnz,) float32
    features: int

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.row_ptr.shape[0], self.row_ptr.shape[1] - 1, self.features)

    def dense(self, first: int = 0, last: int | None = None) -> Float[Tensor, "inst rows feat"]:
        """Rows first … last − 1 of every instance as a dense tensor."""
        inst, rows, feat = self.shape
        last = rows if last is None else last
        out = np.zeros((inst, last - first, feat), np.float32)
        for i in range(inst):
            low, high = self.row_ptr[i, first], self.row_ptr[i, last]
            counts = np.diff(self.row_ptr[i, first : last + 1])
            out[i, np.repeat(np.arange(last - first), counts), self.cols[low:high]] = self.values[low:high]
        return torch.from_numpy(out)

    def subset(self, instances: list[int] | range) -> Sparse:
        return Sparse(self.row_ptr[list(instances)], self.cols, self.values, self.features)

    def compact(self) -> Sparse:
        """The same examples with cols and values holding only theirs, in instance order."""
        spans = [(low, high) for low, high in self.row_ptr[:, [0, -1]]]
        offsets = np.cumsum([0] + [high - low for low, high in spans])
        row_ptr = np.stack([ptr - ptr[0] + offset for ptr, offset in zip(self.row_ptr, offsets)])
        cols = np.concatenate([self.cols[low:high] for low, high in spans])
        values = np.concatenate([self.values[low:high] for low, high in spans])
        return Sparse(row_ptr, cols, values, self.features)

    def torch(self) -> Tensor:
        """A torch sparse COO tensor (inst, rows, feat); `.to_dense()` for the dense one."""
        inst, rows, feat = self.shape
        own = self.compact()
        counts = np.diff(own.row_ptr, axis=1)  # (inst, rows) present features per example
        instance = np.repeat(np.arange(inst), counts.sum(1))
        row = np.concatenate([np.repeat(np.arange(rows), c) for c in counts])
        index = torch.from_numpy(np.stack([instance, row, own.cols.astype(np.int64)]))
        return torch.sparse_coo_tensor(index, torch.from_numpy(own.values), (inst, rows, feat), check_invariants=True).coalesce()

    def hidden(self, W: Float[Tensor, "inst feat hidden"]) -> Float[Tensor, "inst rows hidden"]:
        """x_t W for every example: the points of the paper's data-point geometry."""
        inst, rows, _ = self.shape
        out = torch.zeros(inst, rows, W.shape[-1], dtype=W.dtype)
        for i in range(inst):
            low, high = self.row_ptr[i, 0], self.row_ptr[i, -1]
            example = torch.from_numpy(np.repeat(np.arange(rows), np.diff(self.row_ptr[i])))
            values = torch.from_numpy(self.values[low:high])[:, None]
            out[i].index_add_(0, example, values * W[i, torch.from_numpy(self.cols[low:high]).long()])
        return out

    def chunks(self) -> int:
        """Rows per chunk when the set is evaluated densely."""
        inst, rows, feat = self.shape
        return max(1, min(rows, CHUNK_VALUES // max(1, inst * feat)))


def draw(config: Config, step: int, rows: int, sources: list[int] | None = None) -> Sparse:
    """`rows` examples of every instance from the counter stream at `step` (see above);
    instance i draws the stream of instance sources[i] (default: i itself)."""
    sources = list(range(config.instances)) if sources is None else sources
    kernel = GENERATORS[config.data].kernel_draw(config)
    if kernel is None:
        return _sparse(data.batch(config, data.feature_probability(config), torch.tensor(sources), step, rows))
    probs = np.asarray(config.feature_probability, np.float32)
    parts = [
        _draw_sparse(probs[i], _key(config.seed, source, step), rows, *kernel[:3], np.asarray(kernel.magnitudes, np.float32), config.normalize)
        for i, source in enumerate(sources)
    ]
    offsets = np.cumsum([0] + [len(cols) for _, cols, _ in parts])
    row_ptr = np.stack([ptr + offset for (ptr, _, _), offset in zip(parts, offsets)])
    cols = np.concatenate([c for _, c, _ in parts]) if parts else np.zeros(0, np.int32)
    values = np.concatenate([v for _, _, v in parts]) if parts else np.zeros(0, np.float32)
    return Sparse(row_ptr, cols, values, config.features)


def _sparse(x: Float[Tensor, "inst rows feat"]) -> Sparse:
    """A dense draw as compressed sparse rows."""
    inst, rows, feat = x.shape
    present = x != 0
    ends = present.sum(-1).reshape(-1).cumsum(0)  # every example's end offset, instance after instance
    starts = torch.cat([ends.new_zeros(1), ends])[:-1].view(inst, rows)[:, :1]
    row_ptr = torch.cat([starts, ends.view(inst, rows)], dim=1)
    cols = present.nonzero()[:, 2].int()
    return Sparse(row_ptr.numpy(), cols.numpy(), x[present].numpy(), feat)


def training_set(config: Config, sources: list[int] | None = None) -> Sparse:
    return draw(config, DATASET_STEP, config.dataset_size, sources)


class TestLoss(NamedTuple):
    """A finite-data run's test loss, per instance, with its standard error and the rows it took."""

    loss: Float[Tensor, "inst"]
    se: Float[Tensor, "inst"]
    rows: int


# A memorising model's loss on fresh examples is heavy-tailed: one 10,000-row batch can sit
# 25% below the loss on 100,000 (issue 26). The test set grows, a block of eval_batch_size
# rows at a time, doubling, until every instance's standard error is below this share of
# its loss, or until rows x features reach TEST_VALUES, per instance: a run of 4 dataset
# seeds measures each as precisely as a run of one (its recorded SE says how precisely).
TEST_RELATIVE_SE = 0.01
TEST_VALUES = 2**31
TEST_CACHE_BYTES = 2**28  # the test blocks kept for the next run of the same stream


def test_loss(config: Config, params: dict[str, Tensor]) -> TestLoss:
    """The loss on fresh examples from the test blocks (test_block), as many as it takes."""
    inst = config.instances
    sums = torch.zeros(inst, dtype=torch.float64)
    squares = torch.zeros(inst, dtype=torch.float64)
    rows, blocks, wanted = 0, 0, 1
    while True:
        for block in range(blocks, wanted):
            losses = example_losses(config, params, test_block(config, block))
            sums += losses.sum(1)
            squares += (losses**2).sum(1)
            rows += losses.shape[1]
        blocks = wanted
        mean = sums / rows
        se = ((squares / rows - mean**2).clamp_min(0) / max(1, rows - 1)).sqrt()
        if (se <= TEST_RELATIVE_SE * mean).all() or 2 * rows * config.features > TEST_VALUES:
            return TestLoss(mean.float(), se.float(), rows)
        wanted *= 2


def test_block(config: Config, block: int) -> Sparse:
    """Block b of the test set: eval_batch_size fresh rows at step EVAL_STEP + b (block 0 is
    every run's evaluation batch). Kept per stream, up to TEST_CACHE_BYTES: the paper-size
    presets' runs share them (10,000 rows of 10,000 features take ~1 s to draw)."""
    key = (config.seed, config.instances, config.eval_batch_size, config.model_dump_json(include=_STREAM))
    if _KEPT.stream != key:  # one stream at a time: a preset's runs come in order
        _KEPT.stream, _KEPT.size, _KEPT.blocks = key, 0, {}
    if block in _KEPT.blocks:
        return _KEPT.blocks[block]
    drawn = draw(config, EVAL_STEP + block, config.eval_batch_size)
    size = drawn.row_ptr.nbytes + drawn.cols.nbytes + drawn.values.nbytes
    if _KEPT.size + size <= TEST_CACHE_BYTES:
        _KEPT.blocks[block] = drawn
        _KEPT.size += size
    return drawn


@dataclass
class _TestBlocks:
    stream: tuple | None = None
    size: int = 0  # bytes
    blocks: dict[int, Sparse] = field(default_factory=dict)


# every key `draw` reads, besides the seed and the rows
_STREAM = {"features", "sparsity", "feature_probability", "data", "data_options", "normalize"}
_KEPT = _TestBlocks()


def _key(seed: int, instance: int, step: int) -> np.uint64:
    """The stream's key as numba must be handed it: a Python int would arrive as int64, and
    int64 + uint64 is float64 there."""
    return np.uint64(step_key(seed, instance, step))


@njit(cache=True, nogil=True)
def _draw_sparse(p, key, rows, data_code, set_mode, set_size, magnitudes, normalize):
    feat = p.shape[0]
    X = np.empty((feat, BLOCK), np.float32)
    row_ptr = np.zeros(rows + 1, np.int64)
    capacity = int(rows * p.sum() * 1.25) + 1024
    cols = np.empty(capacity, np.int32)
    values = np.empty(capacity, np.float32)
    count = 0
    for first in range(0, rows, BLOCK):
        block = min(BLOCK, rows - first)
        Xb = X[:, :block]
        _draw_rows(Xb, p, key, data_code, set_mode, set_size, rows, first, magnitudes)
        if normalize:
            _unit_columns(Xb)
        for r in range(block):
            for f in range(feat):
                v = Xb[f, r]
                if v != 0:
                    if count == capacity:
                        capacity *= 2
                        cols = _grow(cols, capacity)
                        values = _grow(values, capacity)
                    cols[count], values[count] = f, v
                    count += 1
            row_ptr[first + r + 1] = count
    return row_ptr, cols[:count].copy(), values[:count].copy()


@njit(inline="always")
def _grow(array, capacity):
    out = np.empty(capacity, array.dtype)
    out[: array.shape[0]] = array
    return out


@njit(cache=True)
def _permutation(key, rows):
    """Epoch order: the examples sorted by a hash of (key, index)."""
    hashes = np.empty(rows, np.uint64)
    for t in range(rows):
        hashes[t] = _mix(key + np.uint64(t) * _GOLDEN)
    return np.argsort(hashes, kind="mergesort")


def batches(config: Config, first_step: int, count: int, sources: list[int]) -> np.ndarray:
    """Example indices of steps first_step … first_step + count − 1 for the instances whose
    streams are `sources`, (len(sources), count, batch_size) int64."""
    rows, size = config.dataset_size, config.batch_size
    out = np.empty((len(sources), count, size), np.int64)
    positions = np.arange(first_step * size, (first_step + count) * size, dtype=np.int64)
    epochs = positions // rows
    for i, source in enumerate(sources):
        flat = np.empty(len(positions), np.int64)
        for epoch in np.unique(epochs):
            order = _permutation(_key(config.seed, source, SHUFFLE_STEP + int(epoch)), rows)
            mask = epochs == epoch
            flat[mask] = order[positions[mask] % rows]
        out[i] = flat.reshape(count, size)
    return out


def gather(x: Float[Tensor, "inst rows feat"], picks: Tensor) -> Float[Tensor, "inst batch feat"]:
    """The examples picks (inst, batch) of every instance of a dense set."""
    return torch.take_along_dim(x, picks[:, :, None].to(x.device), dim=1)


def full_batch(config: Config) -> bool:
    return config.dataset_size <= config.batch_size


def bytes_needed(config: Config, dense: bool) -> int:
    """Memory of the training set and a test block, roughly (the blocks kept are capped
    apart: TEST_CACHE_BYTES): sparse (8 bytes a present value, 8 an
    example), or dense as the reference engine trains on the training set (4 bytes a value,
    with autograd's temporaries)."""
    present = _present_per_example(config)
    examples = config.instances * (config.dataset_size + config.eval_batch_size)  # the training set and a test block
    total = int(examples * (8 + 8 * present * 1.25))
    if dense:
        total += 8 * config.instances * min(config.dataset_size, config.batch_size) * config.features * 4
        total += config.instances * config.dataset_size * config.features * 4
    return total


def _present_per_example(config: Config) -> float:
    return sum(sum(row) for row in config.feature_probability) / config.instances


def scratch_bytes(config: Config, copies: int) -> int:
    """The fused engine's scratch, roughly: per thread, the tree (float64 Σ h hᵀ and its
    handed-down share per node: hidden² each), the batch's hidden vectors, its present
    features laid out in the tree's order (8 bytes each), and at m = 2 the walk's lists
    (20 bytes per feature and level); and the minibatches' example indices of a chunk of
    steps."""
    batch = min(config.dataset_size, config.batch_size)
    nodes = 2 * (2 * batch // 8 + 2)
    present = _present_per_example(config)
    levels = math.ceil(math.log2(max(2, nodes // 2))) + 1
    walk = 20 * config.features * levels if config.hidden == 2 else 0
    per_thread = nodes * (2 * 8 * config.hidden**2 + 6 * 8 * config.hidden) + 4 * 4 * batch * config.hidden
    per_thread += int(8 * batch * present * 1.25) + walk
    indices = 0 if full_batch(config) else 5 * copies * CHUNK * batch * 8
    return (os.cpu_count() or 1) * per_thread + indices


def evaluate(config: Config, params: dict[str, Tensor], examples: Sparse) -> Float[Tensor, "inst"]:
    """The loss on every example of the set (the mean over examples and features)."""
    return example_losses(config, params, examples).mean(1).float()


def example_losses(config: Config, params: dict[str, Tensor], examples: Sparse) -> Float[Tensor, "inst rows"]:
    """The loss of every example of the set (float64), made densely a chunk of rows at a time."""
    importance = loss_weights(config)
    rows, step = examples.shape[1], examples.chunks()
    with torch.no_grad():
        return torch.cat([
            loss_per_example(forward(params, x, config), x, importance, config).double()
            for x in (examples.dense(first, min(rows, first + step)) for first in range(0, rows, step))
        ], dim=1)  # fmt: skip
