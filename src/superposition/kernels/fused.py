"""The fused engine: data, forward, backward and Adam(W) in one compiled loop.

Where the time of a plain autograd loop goes: two random draws per element, a
dozen full-size temporaries and ~30 small dispatched operations per step, for
matrix products that are tiny. Here each instance runs its steps inside one
numba-compiled function with hand-written gradients:

  z = x W ;  h = hid(z) ;  pre = h D + b ;  out = act(pre)
  g = 2 I (out - x) act'(pre) / (batch * features)
  db = Σ g ;  dD = hᵀ g ;  dh = g Dᵀ ;  dz = dh hid'(z) ;  dW = xᵀ dz

with D = Wᵀ (tied, so W gets both the encoder and the decoder gradient) or W_out.
Every scratch array is laid out (…, batch), so each inner loop runs along the
batch axis, which is long and contiguous: the compiler vectorises it whatever n
and m are, and nothing but the batch's own arrays is ever allocated.

Random numbers are counter-based: uniform(key, n) hashes a 64-bit key, derived
from (seed, instance, step), with the element's index n. So every instance is an
independent stream, results do not depend on the number of threads, and the
instances are spread over the cores with `prange`, each running all its steps
without synchronisation.

One draw gives both presence and value (the paper's distribution exactly):
u < p says present, and then u / p is uniform on [0, 1) (signed data: 2u/p − 1 on
[−1, 1)). The seed's data keeps u itself (u <= p) and scales each row to unit norm.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numba
import numpy as np
from numba import njit, prange

# The kernel takes no strings: the model is flags (tied, hidden ReLU, output ReLU), the
# data the integers of a generator's KernelDraw.
from ..data.generator import ANTICORRELATED, CONSTANT, CORRELATED, INDEPENDENT, PAPER, SEED, SIGNED, UNIFORM, KernelDraw

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S40 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(40)
_TO_UNIT = np.float32(2.0**-24)
# Only reassociation, which lets the batch-axis sums vectorise. With "contract" (FMA
# fusion) or "nsz" as well, the code numba compiles fresh and the code it loads from
# its cache round differently (~6e-8 per step, growing), so the first run after a
# build gave other weights than later runs. NaN and inf still propagate.
_FASTMATH = {"reassoc"}


@njit(inline="always")
def _mix(z):
    """splitmix64's finaliser: a bijective 64-bit hash."""
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@njit(inline="always")
def _uniform(key, n):
    """A float32 on [0, 1) with 24 random bits, from the key and a counter."""
    return np.float32(_mix(key + np.uint64(n) * _GOLDEN) >> _S40) * _TO_UNIT


@njit(cache=True)
def step_key(seed, instance, step):
    """The 64-bit key of one (instance, step): three chained hashes, no overlaps between streams."""
    k = _mix(np.uint64(seed) * _GOLDEN + np.uint64(0x5EED))
    k = _mix(k ^ (np.uint64(instance) * _MIX1))
    return _mix(k ^ (np.uint64(step) * _MIX2))


@njit(inline="always")
def _draw(X, p, key, data_code, set_mode, set_size, magnitudes):
    """One step's data for one instance into X (feat, batch), then the seed's row scaling."""
    _draw_rows(X, p, key, data_code, set_mode, set_size, X.shape[1], 0, magnitudes)


@njit(inline="always")
def _draw_rows(X, p, key, data_code, set_mode, set_size, total, first, magnitudes):
    """Rows first … first + batch of a draw of `total` rows into X (feat, batch): element
    (f, r) of that draw has counter f * total + r, so a large draw can be made in blocks.
    magnitudes (feat,): CONSTANT's values (empty for the other draws)."""
    feat, batch = X.shape
    if set_mode != INDEPENDENT:
        _draw_sets(X, p, key, data_code, set_mode == ANTICORRELATED, set_size, total, first)
        return
    for f in range(feat):
        row = X[f]
        pf = p[f]
        inv = np.float32(1.0) / pf
        base = f * total + first
        if data_code == PAPER:
            for r in range(batch):
                u = _uniform(key, base + r)
                row[r] = u * inv if u < pf else np.float32(0.0)
        elif data_code == SIGNED:
            for r in range(batch):
                u = _uniform(key, base + r)
                row[r] = np.float32(2.0) * u * inv - np.float32(1.0) if u < pf else np.float32(0.0)
        elif data_code == UNIFORM:  # a present value's own uniform, hashed only where it fires
            values = (feat + f) * total + first
            for r in range(batch):
                row[r] = _uniform(key, values + r) if _uniform(key, base + r) < pf else np.float32(0.0)
        elif data_code == CONSTANT:
            m = magnitudes[f]
            for r in range(batch):
                row[r] = m if _uniform(key, base + r) < pf else np.float32(0.0)
        else:
            for r in range(batch):
                u = _uniform(key, base + r)
                row[r] = u if u <= pf else np.float32(0.0)
    if data_code == SEED:
        _unit_columns(X)


@njit(inline="always")
def _unit_columns(X):
    """Scale every column (example) of X (feat, batch) to unit L2 norm; a zero one stays zero."""
    feat, batch = X.shape
    norm = np.zeros(batch, np.float32)
    for f in range(feat):
        row = X[f]
        for r in range(batch):
            norm[r] += row[r] * row[r]
    for r in range(batch):
        norm[r] = np.float32(1.0) / np.sqrt(norm[r]) if norm[r] > 0 else np.float32(0.0)
    for f in range(feat):
        row = X[f]
        for r in range(batch):
            row[r] *= norm[r]


@njit(inline="always")
def _draw_sets(X, p, key, data_code, anticorrelated, set_size, total, first):
    """Features in consecutive sets of set_size share one presence draw v per row.

    Correlated: member f is present when v < p_f (all members together).
    Anticorrelated: member f is present when v falls in its own slot of width p_f,
    so at most one member of a set is active. A present value is its own u ~ U[0, 1)
    (2u − 1 for signed data), drawn independently of v.
    """
    feat, batch = X.shape
    for start in range(0, feat, set_size):
        low = np.float32(0.0)
        shared = (feat + start) * total + first  # counter range of this set's presence draws
        for f in range(start, start + set_size):
            row = X[f]
            pf = p[f]
            for r in range(batch):
                v = _uniform(key, shared + r)
                u = _uniform(key, f * total + first + r)
                value = np.float32(2.0) * u - np.float32(1.0) if data_code == SIGNED else u
                present = (low <= v and v < low + pf) if anticorrelated else v < pf
                row[r] = value if present else np.float32(0.0)
            if anticorrelated:
                low += pf


@njit(cache=True)
def sample(probs, seed, instance, step, batch, data_code, set_mode=0, set_size=1, magnitudes=None):
    """The batch the kernel draws for (instance, step), as (feat, batch): for tests."""
    X = np.empty((probs.shape[0], batch), np.float32)
    values = np.zeros(0, np.float32) if magnitudes is None else magnitudes
    _draw(X, probs, step_key(seed, instance, step), data_code, set_mode, set_size, values)
    return X


@njit(inline="always")
def _backprop(W, W_out, b, imp, X, rows, Z, H, G, dZ, gW, gD, gb, tied, hidden_relu, relu_out, abs_target):
    """Loss of one instance on the first `rows` rows of X (feat, batch), as a share of the
    whole batch's mean, and its gradients into gW, gD, gb (the rows past `rows` are
    empty ones that `_add_empty_rows` accounts for).

    W (feat, hid), W_out (hid, feat; unused when tied), b (feat,). gD is the
    gradient of the decoder (hid, feat); for tied models it is already folded into gW.
    Every loop innermost runs along the batch axis.
    """
    feat, batch = X.shape
    hid = W.shape[1]
    scale = np.float32(2.0 / (batch * feat))
    # encoder
    for k in range(hid):
        z = Z[k]
        z[:rows] = 0
        for f in range(feat):
            w = W[f, k]
            x = X[f]
            for r in range(rows):
                z[r] += w * x[r]
        if hidden_relu:
            hk = H[k]
            for r in range(rows):
                hk[r] = max(z[r], np.float32(0.0))
    # decoder, loss, and the gradient at the output (G holds pre, then dL/dpre)
    loss = np.float32(0.0)
    for j in range(feat):
        g = G[j]
        g[:rows] = b[j]
        for k in range(hid):
            d = W[j, k] if tied else W_out[k, j]
            hk = H[k]
            for r in range(rows):
                g[r] += d * hk[r]
        x = X[j]
        weight = imp[j]
        row_loss = np.float32(0.0)
        total = np.float32(0.0)
        for r in range(rows):
            pre = g[r]
            diff = (max(pre, np.float32(0.0)) if relu_out else pre) - (abs(x[r]) if abs_target else x[r])
            row_loss += diff * diff
            grad = scale * weight * diff if (pre > 0 or not relu_out) else np.float32(0.0)
            g[r] = grad
            total += grad
        loss += weight * row_loss
        gb[j] = total
    # backward: decoder weights and the hidden layer, then the encoder weights
    for k in range(hid):
        hk = H[k]
        dz = dZ[k]
        dz[:rows] = 0
        for j in range(feat):
            g = G[j]
            d = W[j, k] if tied else W_out[k, j]
            acc = np.float32(0.0)
            for r in range(rows):
                acc += hk[r] * g[r]
                dz[r] += d * g[r]
            gD[k, j] = acc
        if hidden_relu:
            z = Z[k]
            for r in range(rows):
                dz[r] = dz[r] if z[r] > 0 else np.float32(0.0)
    for f in range(feat):
        x = X[f]
        for k in range(hid):
            dz = dZ[k]
            acc = np.float32(0.0)
            for r in range(rows):
                acc += x[r] * dz[r]
            gW[f, k] = acc + gD[k, f] if tied else acc
    return loss / (batch * feat)


# Compact a batch to its non-empty rows where at least this share of rows is expected
# to be empty (all features absent): those rows only feed the bias, in closed form.
EMPTY_ROWS = 0.5


@njit(inline="always")
def _compact(X, Xc, largest, keep):
    """Copy the non-empty rows of X into the first columns of Xc, in order; their count.
    Scratch (batch,): largest, each row's largest |x| (a vectorised test for zero rows),
    and keep, the indices of the non-empty rows."""
    feat, batch = X.shape
    largest[:] = 0
    for f in range(feat):
        x = X[f]
        for r in range(batch):
            largest[r] = max(largest[r], abs(x[r]))
    rows = 0
    for r in range(batch):
        if largest[r] > 0:
            keep[rows] = r
            rows += 1
    for f in range(feat):  # one feature's row at a time: the gather stays within 4 KB
        x, xc = X[f], Xc[f]
        for k in range(rows):
            xc[k] = x[keep[k]]
    return rows


@njit(inline="always")
def _add_empty_rows(b, imp, empty, batch, gb, relu_out):
    """Loss share and bias gradient of `empty` all-zero rows: their output is act(b)."""
    feat = b.shape[0]
    scale = np.float32(2.0 / (batch * feat))
    loss = np.float32(0.0)
    for j in range(feat):
        out = max(b[j], np.float32(0.0)) if relu_out else b[j]
        loss += imp[j] * out * out * empty
        if b[j] > 0 or not relu_out:
            gb[j] += scale * imp[j] * out * empty
    return loss / (batch * feat)


@njit(inline="always")
def _scratch(feat, hid, batch, hidden_relu):
    """X, Z, H, G, dZ, gW, gD, gb for one instance (H is Z itself unless the hidden layer has a ReLU)."""
    Z = np.empty((hid, batch), np.float32)
    return (
        np.empty((feat, batch), np.float32),
        Z,
        np.empty((hid, batch), np.float32) if hidden_relu else Z,
        np.empty((feat, batch), np.float32),
        np.empty((hid, batch), np.float32),
        np.empty((feat, hid), np.float32),
        np.empty((hid, feat), np.float32),
        np.empty(feat, np.float32),
    )


@njit(inline="always")
def _loss_and_gradients(W, W_out, b, imp, X, Xc, largest, keep, sparse, Z, H, G, dZ, gW, gD, gb, tied, hidden_relu, relu_out, abs_target):
    """One instance's loss on the batch X and its gradients; `sparse`: on the non-empty
    rows (copied into Xc), the empty ones in closed form."""
    batch = X.shape[1]
    rows = _compact(X, Xc, largest, keep) if sparse else batch
    loss = _backprop(W, W_out, b, imp, Xc if sparse else X, rows, Z, H, G, dZ, gW, gD, gb, tied, hidden_relu, relu_out, abs_target)
    if rows < batch:
        loss += _add_empty_rows(b, imp, batch - rows, batch, gb, relu_out)
    return loss


@njit(cache=True, fastmath=_FASTMATH)
def gradients(W, W_out, b, importance, X, tied, hidden_relu, relu_out, abs_target=False, sparse=False):
    """Loss and (dW, dW_out, db) of one instance on X (feat, batch): the kernel's own backprop, for tests."""
    feat, batch = X.shape
    _, Z, H, G, dZ, gW, gD, gb = _scratch(feat, W.shape[1], batch, hidden_relu)
    Xc, largest, keep = np.empty_like(X), np.empty(batch, np.float32), np.empty(batch, np.int64)
    loss = _loss_and_gradients(
        W, W_out, b, importance, X, Xc, largest, keep, sparse, Z, H, G, dZ, gW, gD, gb, tied, hidden_relu, relu_out, abs_target
    )
    return loss, gW, gD, gb


class Weights(NamedTuple):
    """The parameters of every instance, updated in place."""

    W: np.ndarray  # (inst, feat, hid)
    W_out: np.ndarray  # (inst, hid, feat), or a dummy (inst, 1, 1) when tied
    b: np.ndarray  # (inst, feat)


class Moments(NamedTuple):
    """Adam's first and second moments, the shapes of the weights."""

    mW: np.ndarray
    vW: np.ndarray
    mW_out: np.ndarray
    vW_out: np.ndarray
    mb: np.ndarray
    vb: np.ndarray


class Stream(NamedTuple):
    """What the data of (instance, step) is drawn from: see data.py."""

    probs: np.ndarray  # (inst, feat)
    seed: int
    first_instance: int  # global index of instance 0 here, which keys its stream
    data_code: int  # KernelDraw.code
    set_mode: int  # KernelDraw.set_mode
    set_size: int
    batch: int
    normalize: bool  # every example scaled to unit norm
    magnitudes: np.ndarray  # (feat,) KernelDraw.magnitudes (empty but for CONSTANT)


class Model(NamedTuple):
    """The model and its loss, as flags: the kernel takes no strings."""

    importance: np.ndarray  # (inst, feat)
    tied: bool
    hidden_relu: bool
    relu_out: bool
    abs_target: bool


class Optimiser(NamedTuple):
    beta1: float
    beta2: float
    eps: float
    weight_decay: float
    decoupled: bool  # AdamW; else Adam with the decay as an L2 gradient


# free_cores watches the cores this long (five of the kernel's 10 ms ticks), and trusts
# what it saw for a while: a busy process holds its core for seconds, not milliseconds
WATCH_SECONDS, TRUST_SECONDS = 0.05, 2.0
_seen: list[tuple[float, int]] = []  # (when, busy cores): the last look


def free_cores(cores: int) -> int:
    """Of `cores`, those no other process is running on now, at least 1.

    A kernel's threads meet in parallel regions (an SAE of few instances every step), and
    a region waits for its slowest thread: one that shares its core with another process
    waits for its turn, so beside a busy process two threads ran SAEs 1.1-129x slower than
    one (benchmarks/loaded_threads.py). The cores this process may run on are watched for
    WATCH_SECONDS (/proc/stat), less the time this process's own threads ran on them
    (numba's spin a while after a region); each core's worth of the rest is a core another
    process holds. Where /proc cannot be read, every core is taken to be free.
    """
    if cores == 1:
        return 1
    allowed = _allowed_cpus()
    now = time.monotonic()
    if not _seen or now - _seen[0][0] > TRUST_SECONDS:
        try:
            start = _busy_ticks(allowed) - _own_ticks()
            time.sleep(WATCH_SECONDS)
            ticks = _busy_ticks(allowed) - _own_ticks() - start
        except (OSError, ValueError, IndexError):
            return cores
        _seen[:] = [(now, round(ticks / (os.sysconf("SC_CLK_TCK") * WATCH_SECONDS)))]
    return max(1, min(cores, len(allowed) - _seen[0][1]))


def _allowed_cpus() -> set[int]:
    try:
        return os.sched_getaffinity(0)
    except AttributeError:  # macOS
        return set(range(os.cpu_count() or 1))


def _busy_ticks(cpus: set[int]) -> int:
    """Ticks these CPUs have spent since boot on anything but idling and waiting for I/O."""
    total = 0
    for line in Path("/proc/stat").read_text().splitlines():
        name, *fields = line.split()
        if name[:3] == "cpu" and name[3:].isdigit() and int(name[3:]) in cpus:
            user, nice, system, _, _, irq, softirq, steal = map(int, fields[:8])
            total += user + nice + system + irq + softirq + steal
    return total


def _own_ticks() -> int:
    """Ticks this process's threads have run since it started, in user and system mode."""
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime and stime, fields 14 and 15 of proc(5)


@contextlib.contextmanager
def thread_limit(threads: int) -> Iterator[None]:
    """numba's parallel regions started by this thread use at most `threads` threads meanwhile
    (the results do not depend on it: see each kernel)."""
    before = numba.get_num_threads()
    numba.set_num_threads(max(1, min(threads, before)))
    try:
        yield
    finally:
        numba.set_num_threads(before)


def empty_share(stream: Stream) -> np.ndarray:
    """Expected share of each instance's rows with every feature absent, (inst,)."""
    probs = stream.probs.astype(np.float64)
    if stream.set_mode != INDEPENDENT:  # one presence draw per set: correlated, the densest member; anticorrelated, any
        sets = probs.reshape(len(probs), -1, stream.set_size)
        probs = np.minimum(sets.max(-1) if stream.set_mode == CORRELATED else sets.sum(-1), 1.0)
    return np.prod(1 - probs, axis=-1)


def plan(stream: Stream, threads: int) -> tuple[np.ndarray, np.ndarray]:
    """Which instances each thread trains, (threads, k) padded with -1, and which of them
    skip their empty rows, (inst,). The costliest instance goes first, each to the thread
    with the least work so far: prange alone would split by count, 5 instances on 2
    threads as 3 and 2 whatever their cost, and a sparse instance costs less."""
    empty = empty_share(stream)
    sparse = empty >= EMPTY_ROWS
    costs = np.where(sparse, 0.3 + (1 - empty), 1.0)  # drawing is ~0.3 of a dense step
    return lanes(costs, threads), sparse


def lanes(costs: np.ndarray, threads: int) -> np.ndarray:
    """Instances per thread, (threads, k) padded with -1: the costliest first, each to the
    thread with the least work so far."""
    load = np.zeros(threads)
    queues: list[list[int]] = [[] for _ in range(threads)]
    for i in np.argsort(-costs, kind="stable"):
        w = int(np.argmin(load))
        queues[w].append(int(i))
        load[w] += costs[i]
    out = np.full((threads, max(map(len, queues))), -1, np.int64)
    for w, lane in enumerate(queues):
        out[w, : len(lane)] = lane
    return out


@njit(parallel=True, cache=True, fastmath=_FASTMATH, nogil=True)  # nogil: the caller may import meanwhile
def train_steps(weights, moments, stream, model, optimiser, first_step, lrs, losses, lanes, sparse):
    """Train every instance for len(lrs) steps from `first_step`, in place; thread w trains
    the instances of lanes[w] one after another, skipping empty rows where sparse[i] (see
    `plan`). lrs: (steps,) the learning rate of each step; losses: out, (steps, inst)."""
    for w in prange(lanes.shape[0]):
        for i in lanes[w]:
            if i >= 0:
                _train_instance(weights, moments, stream, model, optimiser, first_step, lrs, losses, i, sparse[i])


@njit(inline="always")
def _train_instance(weights, moments, stream, model, optimiser, first_step, lrs, losses, i, sparse):
    """Instance i for len(lrs) steps."""
    W, W_out, b = weights
    _, feat, hid = W.shape
    tied, hidden_relu, relu_out, abs_target = model.tied, model.hidden_relu, model.relu_out, model.abs_target
    batch = stream.batch
    X, Z, H, G, dZ, gW, gD, gb = _scratch(feat, hid, batch, hidden_relu)
    Xc = np.empty((feat, batch if sparse else 0), np.float32)
    largest = np.empty(batch if sparse else 0, np.float32)
    keep = np.empty(batch if sparse else 0, np.int64)
    for s in range(lrs.shape[0]):
        step = first_step + s
        key = step_key(stream.seed, stream.first_instance + i, step)
        _draw(X, stream.probs[i], key, stream.data_code, stream.set_mode, stream.set_size, stream.magnitudes)
        if stream.normalize:
            _unit_columns(X)
        losses[s, i] = _loss_and_gradients(
            W[i], W_out[i], b[i], model.importance[i], X, Xc, largest, keep, sparse,
            Z, H, G, dZ, gW, gD, gb, tied, hidden_relu, relu_out, abs_target,
        )  # fmt: skip
        # Adam(W) with torch's bias corrections
        c1 = 1 - optimiser.beta1 ** (step + 1)
        c2 = np.sqrt(1 - optimiser.beta2 ** (step + 1))
        hyper = (lrs[s], optimiser.beta1, optimiser.beta2, optimiser.eps, optimiser.weight_decay, optimiser.decoupled, c1, c2)
        _adam(W[i].reshape(-1), gW.reshape(-1), moments.mW[i].reshape(-1), moments.vW[i].reshape(-1), hyper)
        if not tied:
            _adam(W_out[i].reshape(-1), gD.reshape(-1), moments.mW_out[i].reshape(-1), moments.vW_out[i].reshape(-1), hyper)
        _adam(b[i], gb, moments.mb[i], moments.vb[i], hyper)


@njit(inline="always")
def _adam(param, grad, m, v, hyper):
    """One Adam step on flat views; AdamW decays the weights, Adam adds the L2 gradient."""
    lr, beta1, beta2, eps, weight_decay, decoupled, c1, c2 = hyper
    for n in range(param.shape[0]):
        gn = grad[n]
        if decoupled:
            param[n] *= 1 - lr * weight_decay
        else:
            gn += weight_decay * param[n]
        m[n] = beta1 * m[n] + (1 - beta1) * gn
        v[n] = beta2 * v[n] + (1 - beta2) * gn * gn
        param[n] -= (lr / c1) * m[n] / (np.sqrt(v[n]) / c2 + eps)
