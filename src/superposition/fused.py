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

from typing import NamedTuple

import numpy as np
from numba import njit, prange

# The kernel takes no strings: the model is three flags (tied, hidden ReLU, output ReLU).
DATA_CODES = {"paper": 0, "seed": 1, "signed": 2}
SET_MODES = {"none": 0, "correlated": 1, "anticorrelated": 2}

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
def _draw(X, p, key, data_code, set_mode, set_size):
    """One step's data for one instance into X (feat, batch), then the seed's row scaling."""
    feat, batch = X.shape
    if set_mode != 0:
        _draw_sets(X, p, key, data_code, set_mode == 2, set_size)
        return
    for f in range(feat):
        row = X[f]
        pf = p[f]
        inv = np.float32(1.0) / pf
        base = f * batch
        if data_code == 0:
            for r in range(batch):
                u = _uniform(key, base + r)
                row[r] = u * inv if u < pf else np.float32(0.0)
        elif data_code == 2:
            for r in range(batch):
                u = _uniform(key, base + r)
                row[r] = np.float32(2.0) * u * inv - np.float32(1.0) if u < pf else np.float32(0.0)
        else:
            for r in range(batch):
                u = _uniform(key, base + r)
                row[r] = u if u <= pf else np.float32(0.0)
    if data_code == 1:
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
def _draw_sets(X, p, key, data_code, anticorrelated, set_size):
    """Features in consecutive sets of set_size share one presence draw v per row.

    Correlated: member f is present when v < p_f (all members together).
    Anticorrelated: member f is present when v falls in its own slot of width p_f,
    so at most one member of a set is active. A present value is its own u ~ U[0, 1)
    (2u − 1 for signed data), drawn independently of v.
    """
    feat, batch = X.shape
    for first in range(0, feat, set_size):
        low = np.float32(0.0)
        shared = (feat + first) * batch  # counter range of this set's presence draws
        for f in range(first, first + set_size):
            row = X[f]
            pf = p[f]
            for r in range(batch):
                v = _uniform(key, shared + r)
                u = _uniform(key, f * batch + r)
                value = np.float32(2.0) * u - np.float32(1.0) if data_code == 2 else u
                present = (low <= v and v < low + pf) if anticorrelated else v < pf
                row[r] = value if present else np.float32(0.0)
            if anticorrelated:
                low += pf


@njit(cache=True)
def sample(probs, seed, instance, step, batch, data_code, set_mode=0, set_size=1):
    """The batch the kernel draws for (instance, step), as (feat, batch): for tests."""
    X = np.empty((probs.shape[0], batch), np.float32)
    _draw(X, probs, step_key(seed, instance, step), data_code, set_mode, set_size)
    return X


@njit(inline="always")
def _backprop(W, W_out, b, imp, X, Z, H, G, dZ, gW, gD, gb, tied, hidden_relu, relu_out, abs_target):
    """Loss of one instance on the batch X (feat, batch), and its gradients into gW, gD, gb.

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
        z[:] = 0
        for f in range(feat):
            w = W[f, k]
            x = X[f]
            for r in range(batch):
                z[r] += w * x[r]
        if hidden_relu:
            hk = H[k]
            for r in range(batch):
                hk[r] = max(z[r], np.float32(0.0))
    # decoder, loss, and the gradient at the output (G holds pre, then dL/dpre)
    loss = np.float32(0.0)
    for j in range(feat):
        g = G[j]
        g[:] = b[j]
        for k in range(hid):
            d = W[j, k] if tied else W_out[k, j]
            hk = H[k]
            for r in range(batch):
                g[r] += d * hk[r]
        x = X[j]
        weight = imp[j]
        row_loss = np.float32(0.0)
        total = np.float32(0.0)
        for r in range(batch):
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
        dz[:] = 0
        for j in range(feat):
            g = G[j]
            d = W[j, k] if tied else W_out[k, j]
            acc = np.float32(0.0)
            for r in range(batch):
                acc += hk[r] * g[r]
                dz[r] += d * g[r]
            gD[k, j] = acc
        if hidden_relu:
            z = Z[k]
            for r in range(batch):
                dz[r] = dz[r] if z[r] > 0 else np.float32(0.0)
    for f in range(feat):
        x = X[f]
        for k in range(hid):
            dz = dZ[k]
            acc = np.float32(0.0)
            for r in range(batch):
                acc += x[r] * dz[r]
            gW[f, k] = acc + gD[k, f] if tied else acc
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


@njit(cache=True, fastmath=_FASTMATH)
def gradients(W, W_out, b, importance, X, tied, hidden_relu, relu_out, abs_target=False):
    """Loss and (dW, dW_out, db) of one instance on X (feat, batch): the kernel's own backprop, for tests."""
    feat, batch = X.shape
    _, Z, H, G, dZ, gW, gD, gb = _scratch(feat, W.shape[1], batch, hidden_relu)
    loss = _backprop(W, W_out, b, importance, X, Z, H, G, dZ, gW, gD, gb, tied, hidden_relu, relu_out, abs_target)
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
    data_code: int  # DATA_CODES
    set_mode: int  # SET_MODES
    set_size: int
    batch: int


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


@njit(parallel=True, cache=True, fastmath=_FASTMATH, nogil=True)  # nogil: the caller may import meanwhile
def train_steps(weights, moments, stream, model, optimiser, first_step, lrs, losses):
    """Train every instance for len(lrs) steps from `first_step`, in place; one instance per
    thread at a time. lrs: (steps,) the learning rate of each step; losses: out, (steps, inst)."""
    W, W_out, b = weights
    n_inst, feat, hid = W.shape
    tied, hidden_relu, relu_out, abs_target = model.tied, model.hidden_relu, model.relu_out, model.abs_target
    for i in prange(n_inst):
        X, Z, H, G, dZ, gW, gD, gb = _scratch(feat, hid, stream.batch, hidden_relu)
        for s in range(lrs.shape[0]):
            step = first_step + s
            key = step_key(stream.seed, stream.first_instance + i, step)
            _draw(X, stream.probs[i], key, stream.data_code, stream.set_mode, stream.set_size)
            losses[s, i] = _backprop(
                W[i], W_out[i], b[i], model.importance[i], X, Z, H, G, dZ, gW, gD, gb, tied, hidden_relu, relu_out, abs_target
            )
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
