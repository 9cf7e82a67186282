"""The compiled SAE engine: data, forward, backward and Adam in one numba loop.

Where a plain autograd loop spends its time on SAEs of toy models: dense products of
every row with every latent, forward and backward, although a trained SAE fires a few
latents per row; and dispatch of ~40 small operations per step. Here each step runs
row by row with hand-written gradients, and only the latents that fire (or, for
JumpReLU, sit within the kernel's width of their threshold) cost more than the
encoder's product:

  x          the source's data for (seed, source instance, step), fused.py's stream:
             only the rows a unit computes
  c = x F + bias − b_dec                           (only the present features of x)
  pre = c W_enc + b_enc ;  a = act(pre) ;  e = a W_dec + b_dec − (c + b_dec)
  g = 2 e / (batch d)      dW_dec[j] += a_j g ;  db_dec += g
  for a firing latent j:   dpre_j = g · W_dec[j] + the sparsity term's derivative
                           db_enc[j] += dpre_j ;  dW_enc[:, j] += dpre_j c
  and at the end           db_dec −= W_enc db_enc (b_dec enters pre with −W_enc)

ReLU's L1 term, l1 a_j |W_dec[j]| (saes/relu.py), also pulls on its row:
dW_dec[j] += (l1 Σ_rows a_j) W_dec[j] / |W_dec[j]|, the sum gathered per latent in the
gradient of θ (ReLU has none) and applied once per step. Then Adam (torch's arithmetic, fused._adam)
and unit decoder rows, but for ReLU, whose rows are free. The kinds' rules
(TopK's selection and AuxK, JumpReLU's estimators, BatchTopK's cut) are those of saes/,
which the reference engine runs with autograd; the two agree to float rounding.

BatchTopK's selection needs the whole batch: a first pass keeps every row's
pre-activations (`kept`), the cut is the k · batch-th largest of them (`_cut`), and the
passes after it read the kept pre-activations instead of computing them again. A unit
draws its rows once per step, whatever the passes.

SAEs up to COLUMNS_WIDTH = d_in x latents (ReLU and JumpReLU) run batch-major instead
(`_columns`): the same arithmetic for every latent of every non-empty row, each loop
along the rows, where per-row loops over a handful of latents would be mostly set-up.

Instances run in parallel, each all its steps without synchronisation. A job of
fewer instances than ROW_UNITS splits each instance's rows into ROW_UNITS //
instances chunks, run in parallel and summed in a fixed order, so the split (and the
result) depends on the config only, never on the number of threads.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit, prange

from .fused import _FASTMATH, _adam, _draw_rows, _unit_columns, step_key

# the kinds the kernel computes, as the integers it switches on (numba takes no strings)
RELU, TOPK, JUMPRELU, BATCHTOPK = 0, 1, 2, 3
KIND_CODES = {"relu": RELU, "topk": TOPK, "jumprelu": JUMPRELU, "batchtopk": BATCHTOPK}
# the passes of a step: BatchTopK's pre-activations, AuxK's residual statistics, the gradients
PRE_PASS, STATS_PASS, GRADIENT_PASS = -1, 0, 1
# BatchTopK's PRE_PASS keeps the pre-activations above this share of the last step's cut as
# candidates for the next (see _cut)
GUESS = np.float32(0.9)
ROW_UNITS = 4
ROW_BLOCK = 16  # rows whose pre-activations are computed together (W_enc read once per block)


def factored(features: int, batch: int) -> bool:
    """Whether P = F W_enc (2 features x d x latents per step, with dW_enc) is cheaper than
    the dense encoder (batch x d x latents)."""
    return 2 * features < batch


# The widest SAE (d_in x latents) that runs batch-major (`_columns`): every latent of every
# non-empty row, each loop along the rows. Measured here, steps/s batch-major vs row by row
# (ReLU): 2 x 10 latents 11,400 vs 2,100 (per-row loops of 2 to 10 iterations are mostly
# set-up); 8 x 64 1,160 vs 490; 8 x 128 and 16 x 64 (1,024) 805 vs 490 and 755 vs 600;
# at 2,048 even or behind (16 x 128: 361 vs 360; 32 x 64: 528 vs 698).
COLUMNS_WIDTH = 1024


def batch_major(kind: str, dims: int, latents: int) -> bool:
    """Whether `_columns` runs: small SAEs whose selection is per latent (not TopK's per row
    or BatchTopK's per batch)."""
    return kind not in ("topk", "batchtopk") and dims * latents <= COLUMNS_WIDTH


class RowScratch(NamedTuple):
    """One unit's buffers for `_rows`, row by row; P and Q are empty unless factored, idx and
    val unless row by row."""

    C: np.ndarray  # (ROW_BLOCK, d): a block's rows of c = x F − b_dec
    PRE: np.ndarray  # (ROW_BLOCK, latents): their pre-activations
    present: np.ndarray  # (ROW_BLOCK, feat): each row's present features
    xs: np.ndarray  # (ROW_BLOCK, feat): and their values
    counts: np.ndarray  # (ROW_BLOCK,): how many
    weight: np.ndarray  # (ROW_BLOCK,): how many times each row counts
    active: np.ndarray  # (latents,): the latents that fire on a row
    values: np.ndarray  # (latents,): and their activations
    chosen: np.ndarray  # (latents,): TopK's (and AuxK's) selection
    norms: np.ndarray  # (latents,): ReLU's decoder rows' norms, which weigh its L1 term
    e: np.ndarray  # (d,): a row's reconstruction error
    g: np.ndarray  # (d,): its gradient
    touched: np.ndarray  # (2 latents,): the latents whose pre-activation has a gradient
    dpres: np.ndarray  # (2 latents,): and that gradient
    P: np.ndarray  # (feat, latents): F W_enc
    base: np.ndarray  # (latents,): b_enc − b_dec W_enc
    Q: np.ndarray  # (feat, latents): the gradient of P
    start: np.ndarray  # (batch + 1,): where each row's present features start in idx
    fill: np.ndarray  # (batch,): how far each row's are written
    idx: np.ndarray  # (feat x batch,): the present features of every row
    val: np.ndarray  # (feat x batch,): their values
    kept: np.ndarray  # (rows + 1, latents): BatchTopK's pre-activations of the unit's rows, in the order taken
    kept_weight: np.ndarray  # (rows + 1,): how many times each counts (the empty rows share the last)
    found: np.ndarray  # (rows x latents,): those above the pass's guess at the cut, each as often as its row counts
    slots: np.ndarray  # (2,): how many rows are kept, and how many values found


class ColumnScratch(NamedTuple):
    """One unit's buffers for `_columns`, batch-major: empty unless it runs."""

    keep: np.ndarray  # (batch + 1,): the non-empty rows
    largest: np.ndarray  # (batch + 1,)
    wt: np.ndarray  # (batch + 1,): how many times each counts
    Xc: np.ndarray  # (feat, batch + 1): their features, column by column
    C: np.ndarray  # (d, batch + 1)
    PRE: np.ndarray  # (latents, batch + 1)
    A: np.ndarray  # (latents, batch + 1): the activations
    G: np.ndarray  # (d, batch + 1): the error's gradient


class Weights(NamedTuple):
    W_enc: np.ndarray  # (inst, d, latents)
    b_enc: np.ndarray  # (inst, latents)
    W_dec: np.ndarray  # (inst, latents, d)
    b_dec: np.ndarray  # (inst, d)
    threshold: np.ndarray  # (inst, latents); unused but by jumprelu


class Source(NamedTuple):
    """Instance i reads source instance i % len(F)."""

    F: np.ndarray  # (sources, feat, d): the true directions
    probs: np.ndarray  # (sources, feat)
    seed: int
    data_code: int  # KernelDraw.code
    set_mode: int
    set_size: int
    batch: int
    normalize: bool  # every example scaled to unit norm, as the source run's were
    magnitudes: np.ndarray  # (feat,): KernelDraw.magnitudes (empty but for CONSTANT)
    bias: np.ndarray  # (d,): added to every activation (a SAELens model's; 0 for runs)


class Rule(NamedTuple):
    kind: int  # KIND_CODES
    factored: bool  # pre-activations through P = F W_enc (see _rows)
    columns: bool  # batch-major (see _columns)
    settings: np.ndarray  # (inst,): l1, k or l0
    k_aux: int
    aux_weight: float
    dead_steps: int
    bandwidth: float
    beta1: float
    beta2: float
    eps: float
    warmup: int  # steps over which the setting ramps up from 0 (see saes/training.py `warmed`)
    log_threshold: bool  # θ trained as log θ


@njit(nogil=True)  # a call, as _cut is: inlined at their six call sites the two cost 9 s of the kernel's compile
def _kth_largest(values, m, k):
    """The k-th largest of values[:m] (1 <= k <= m), reordering them in place: quickselect,
    median-of-three pivots."""
    lo, hi, target = 0, m - 1, m - k  # the target-th smallest
    while lo < hi:
        mid = (lo + hi) // 2
        a, b, c = values[lo], values[mid], values[hi]
        pivot = max(min(a, b), min(max(a, b), c))
        i, j = lo, hi
        while i <= j:
            while values[i] < pivot:
                i += 1
            while values[j] > pivot:
                j -= 1
            if i <= j:
                values[i], values[j] = values[j], values[i]
                i += 1
                j -= 1
        if target <= j:
            hi = j
        elif target >= i:
            lo = i
        else:
            return values[target]
    return values[target]


@njit(inline="always")
def _above(pre, copies, low, out, n):
    """Append a row's pre-activations above `low` to out[n:], each `copies` times (the row's
    weight); the new n."""
    for j in range(pre.shape[0]):
        if pre[j] > low:
            for _ in range(copies):
                out[n] = pre[j]
                n += 1
    return n


@njit(inline="always")
def _select(PRE, b, count, allowed, among, chosen, values):
    """Indices of the `count` largest positive entries of PRE[b] among the latents
    allowed[:among] (increasing) into chosen[:n] (all of them where fewer are positive), in
    index order; n. Ties at the cut go to the lower index. Only positive ones: TopK and
    AuxK use no other. values: scratch (latents,)."""
    m = 0
    for t in range(among):
        j = allowed[t]
        if PRE[b, j] > 0:
            chosen[m] = j
            values[m] = PRE[b, j]
            m += 1
    if m <= count:
        return m
    cut = _kth_largest(values, m, count)
    n = 0
    for t in range(m):
        if PRE[b, chosen[t]] > cut:
            chosen[n] = chosen[t]
            n += 1
    for t in range(among):
        j = allowed[t]
        if n < count and PRE[b, j] == cut:
            chosen[n] = j
            n += 1
    return n


@njit(inline="always")
def _block(W_dec, theta, rows, weight, PRE, C, present, xs, counts, batch, rule, setting, dead, n_dead, everyone,
           active, values, chosen, e, g, touched, dpres, Q, gW_encT, gb_enc, gW_dec, gb_dec, gtheta, fired, stats):  # fmt: skip
    """The block's rows from their pre-activations PRE[b]: activations, the loss (times batch)
    and the gradients, row b counted weight[b] times. One call per block, not per row: every
    array handed to a function costs numba two atomic reference counts, which per row had
    tripled the time. stats (d + 2,): its last entry AuxK's weight (see `_auxk_weight`), or a
    negative number: then only add the rows' Σ e and Σ |e|² into the others, nothing else
    (numba inlines no function of more than 30 arguments). theta: JumpReLU's thresholds, or
    for ReLU its decoder rows' norms."""
    d, latents = C.shape[1], PRE.shape[1]
    kind, factored = rule.kind, rule.factored
    aux = np.float32(stats[d + 1])
    loss = np.float32(0.0)
    for b in range(rows):
        w = weight[b]
        scale = np.float32(2.0 / (batch * d)) * w
        n = 0
        if kind == TOPK:
            for t in range(_select(PRE, b, int(setting), everyone, latents, chosen, values)):
                j = chosen[t]
                if PRE[b, j] > 0:
                    active[n] = j
                    values[n] = PRE[b, j]
                    n += 1
        elif kind == JUMPRELU:
            for j in range(latents):
                if PRE[b, j] > theta[j]:
                    active[n] = j
                    values[n] = PRE[b, j]
                    n += 1
        elif kind == BATCHTOPK:  # setting: the batch's cut (see _cut)
            for j in range(latents):
                if PRE[b, j] > 0 and PRE[b, j] >= setting:
                    active[n] = j
                    values[n] = PRE[b, j]
                    n += 1
        else:
            for j in range(latents):  # compacted without a branch
                active[n] = j
                values[n] = PRE[b, j]
                n += PRE[b, j] > 0
        for k in range(d):
            e[k] = -C[b, k]  # h' − h with h = c + b_dec and h' = a W_dec + b_dec
        for t in range(n):
            j = active[t]
            v = values[t]
            for k in range(d):
                e[k] += v * W_dec[j, k]
        square = np.float32(0.0)
        for k in range(d):
            square += e[k] * e[k]
        if aux < 0:
            for k in range(d):
                stats[k] += w * e[k]
            stats[d] += w * square
            continue
        for k in range(d):
            g[k] = scale * e[k]
            gb_dec[k] += g[k]
        loss += w * square / d
        penalty = np.float32(0.0)
        if kind == RELU:
            penalty = np.float32(setting / batch) * w
            for t in range(n):
                loss += w * setting * values[t] * theta[active[t]]
        elif kind == JUMPRELU:
            loss += w * setting * np.float32(n)
        # dL/dpre of each latent that gets one, applied to the encoder below
        m = 0
        for t in range(n):
            j = active[t]
            fired[j] = True
            v = values[t]
            dot = np.float32(0.0)
            for k in range(d):
                gW_dec[j, k] += v * g[k]
                dot += g[k] * W_dec[j, k]
            if kind == RELU:  # the L1 term's pull on the row's norm, applied in _update
                gtheta[j] += penalty * v
                dot += penalty * theta[j]
            touched[m] = j
            dpres[m] = dot
            m += 1
        if kind == JUMPRELU:  # the threshold's straight-through estimators, for pre near θ
            half = np.float32(rule.bandwidth / 2)
            inv = np.float32(1.0 / rule.bandwidth)
            for j in range(latents):
                if abs(PRE[b, j] - theta[j]) < half:
                    dot = np.float32(0.0)
                    for k in range(d):
                        dot += g[k] * W_dec[j, k]
                    gtheta[j] -= theta[j] * inv * dot + w * setting * inv / batch
        if (kind == TOPK or kind == BATCHTOPK) and n_dead > 0:  # AuxK: the dead latents' largest reconstruct the residual
            n = _select(PRE, b, rule.k_aux, dead, n_dead, chosen, values)
            for k in range(d):
                e[k] = -e[k]  # the residual h − h'
            for t in range(n):
                j = chosen[t]
                if PRE[b, j] > 0:
                    for k in range(d):
                        e[k] -= PRE[b, j] * W_dec[j, k]
            missed = np.float32(0.0)
            for k in range(d):
                missed += e[k] * e[k]
                g[k] = -aux * scale * e[k]
            loss += w * aux * missed / d
            for t in range(n):
                j = chosen[t]
                if PRE[b, j] > 0:
                    dot = np.float32(0.0)
                    for k in range(d):
                        gW_dec[j, k] += PRE[b, j] * g[k]
                        dot += g[k] * W_dec[j, k]
                    touched[m] = j
                    dpres[m] = dot
                    m += 1
        # the encoder: dW_enc[:, j] += dpre_j c, or per present feature into Q (factored)
        for t in range(m):
            j, dpre = touched[t], dpres[t]
            gb_enc[j] += dpre
            if factored:
                for u in range(counts[b]):
                    Q[present[b, u], j] += xs[b, u] * dpre
            else:
                for k in range(d):
                    gW_encT[j, k] += dpre * C[b, k]
    return loss


@njit(inline="always")
def _present(X, first, last, start, fill, idx, val):
    """The present features of rows first..last of X (feat, batch), row by row: row r's are
    idx[start[r − first]:start[r − first + 1]], their values in val. Built feature by feature,
    each pass along the contiguous rows: a row's own scan down the features would read one
    value every batch floats (on 64 features x 1,024 rows, 200 µs a step against 36)."""
    feat = X.shape[0]
    span = last - first
    for r in range(span):
        fill[r] = 0
    for f in range(feat):
        for r in range(span):
            fill[r] += X[f, first + r] != 0
    total = 0
    for r in range(span):
        start[r] = total
        total += fill[r]
        fill[r] = start[r]
    start[span] = total
    for f in range(feat):
        for r in range(span):
            x = X[f, first + r]
            if x != 0:
                idx[fill[r]] = f
                val[fill[r]] = x
                fill[r] += 1


@njit(inline="always")  # as a call, LLVM no longer knew its arrays apart and left the encoder's product scalar (1.9 -> 2.8 ms a step)
def _rows(W_enc, b_enc, W_dec, b_dec, theta, F, bias, X, first, last, batch, rule, setting, dead, n_dead, everyone, scratch, grads, stats, stage, fresh):
    """Loss of rows first..last of X (feat, batch), as a share of the batch mean, and their
    gradients added into grads (its gW_encT is dW_enc transposed, (latents, d)); in
    BatchTopK's PRE_PASS only their pre-activations, into scratch.kept (later passes read
    them from there), and those above `setting` (a guess at the cut) into scratch.found.

    Rows go in blocks of ROW_BLOCK. factored: pre = x P + base with P = F W_enc and
    base = b_enc + (bias − b_dec) W_enc (h = x F + bias), so a row's encoder costs its
    present features times latents instead of d times latents; otherwise the block's
    pre-activations are one product with W_enc, each row of W_enc read once per block.
    The rows' present features are found where X is `fresh`; an earlier pass of the step
    left them in scratch otherwise."""
    C, PRE, present, xs, counts, weight, active, values, chosen, norms, e, g, touched, dpres, P, base, Q, start, fill, idx, val, kept, kept_weight, found, slots = scratch
    gW_encT, gb_enc, gW_dec, gb_dec, gtheta, fired = grads
    feat = X.shape[0]
    d, latents = W_enc.shape
    factored = rule.factored
    stored = rule.kind == BATCHTOPK and stage != PRE_PASS
    if factored:
        for f in range(feat):
            for j in range(latents):
                P[f, j] = 0
                Q[f, j] = 0
            if not stored:
                for k in range(d):
                    w = F[f, k]
                    for j in range(latents):
                        P[f, j] += w * W_enc[k, j]
        for j in range(latents):
            base[j] = b_enc[j]
        for k in range(d):
            bk = bias[k] - b_dec[k]
            for j in range(latents):
                base[j] += bk * W_enc[k, j]
    if fresh:
        _present(X, first, last, start, fill, idx, val)
    loss = np.float32(0.0)
    b = 0  # rows in the block so far
    empty = 0
    slot = 0  # rows kept (PRE_PASS) or read back
    n_found = 0
    for r in range(first, last + 1):  # r == last: the empty rows, as one row of their count's weight
        take = False
        if r < last:
            lo = start[r - first]
            n = start[r - first + 1] - lo
            for t in range(n):
                present[b, t] = idx[lo + t]
                xs[b, t] = val[lo + t]
            if n == 0:
                empty += 1  # an empty row's output is the same as every other empty row's
            else:
                take = True
                weight[b] = 1
        elif empty > 0:
            n = 0
            take = True
            weight[b] = empty
        if take:
            counts[b] = n
            for k in range(d):
                C[b, k] = bias[k] - b_dec[k]
            for t in range(n):
                x = xs[b, t]
                f = present[b, t]
                for k in range(d):
                    C[b, k] += x * F[f, k]
            if stored:
                for j in range(latents):
                    PRE[b, j] = kept[slot, j]
                slot += 1
            elif factored:
                for j in range(latents):
                    PRE[b, j] = base[j]
                for t in range(n):
                    x = xs[b, t]
                    f = present[b, t]
                    for j in range(latents):
                        PRE[b, j] += x * P[f, j]
            else:
                for j in range(latents):
                    PRE[b, j] = b_enc[j]
            b += 1
        if b > 0 and (b == ROW_BLOCK or r == last):
            if not factored and not stored:
                # four rows of W_enc at a time: a row of PRE is loaded and stored once per four
                # products, not once per product (1,024 rows x 64 x 512: 1.4 ms against 0.8 here)
                quads = d - d % 4
                for k in range(0, quads, 4):
                    for row in range(b):
                        c0, c1, c2, c3 = C[row, k], C[row, k + 1], C[row, k + 2], C[row, k + 3]
                        for j in range(latents):
                            PRE[row, j] += c0 * W_enc[k, j] + c1 * W_enc[k + 1, j] + c2 * W_enc[k + 2, j] + c3 * W_enc[k + 3, j]
                for k in range(quads, d):
                    for row in range(b):
                        ck = C[row, k]
                        for j in range(latents):
                            PRE[row, j] += ck * W_enc[k, j]
            if stage == PRE_PASS:
                for row in range(b):
                    for j in range(latents):
                        kept[slot + row, j] = PRE[row, j]
                    n_found = _above(PRE[row], int(weight[row]), setting, found, n_found)
                    kept_weight[slot + row] = weight[row]
                slot += b
            else:
                loss += _block(
                    W_dec, theta, b, weight, PRE, C, present, xs, counts, batch, rule, setting, dead, n_dead, everyone,
                    active, values, chosen, e, g, touched, dpres, Q, gW_encT, gb_enc, gW_dec, gb_dec, gtheta, fired, stats,
                )  # fmt: skip
            b = 0
    if stage == PRE_PASS:
        slots[0], slots[1] = slot, n_found
        return np.float32(0.0)
    if factored:  # dW_enc[:, j] = Σ rows dpre_j (x F + bias − b_dec) = Fᵀ Q[:, j] + (bias − b_dec) Σ rows dpre_j
        for j in range(latents):
            for k in range(d):
                gW_encT[j, k] += (bias[k] - b_dec[k]) * gb_enc[j]
            for f in range(feat):
                q = Q[f, j]
                if q != 0:
                    for k in range(d):
                        gW_encT[j, k] += q * F[f, k]
    return loss / batch


@njit(fastmath=_FASTMATH, nogil=True)  # a call, once per unit and step, compiled apart from _unit
def _columns(W_enc, b_enc, W_dec, b_dec, theta, F, bias, X, first, last, batch, rule, setting, columns, grads):
    """What `_rows` computes, batch-major: each array (…, rows) and every loop innermost along
    the rows, which the compiler vectorises; for SAEs so small (d x latents <= COLUMNS_WIDTH)
    that per-row loops over d and the latents are mostly set-up. ReLU and JumpReLU only;
    theta as in `_block`.

    The non-empty rows of first..last are gathered into Xc; the empty ones share one more
    column, weighted by their count (wt)."""
    keep, largest, wt, Xc, C, PRE, A, G = columns
    gW_encT, gb_enc, gW_dec, gb_dec, gtheta, fired = grads
    feat = X.shape[0]
    d, latents = W_enc.shape
    relu = rule.kind == RELU
    span = last - first
    for r in range(span):
        largest[r] = 0
    for f in range(feat):
        for r in range(span):
            largest[r] = max(largest[r], abs(X[f, first + r]))
    n = 0
    for r in range(span):  # compacted without a branch
        keep[n] = first + r
        n += largest[r] > 0
    for t in range(n):
        wt[t] = 1
    cols = n
    if n < span:
        wt[n] = span - n
        cols = n + 1
    for f in range(feat):
        for t in range(n):
            Xc[f, t] = X[f, keep[t]]
        if cols > n:
            Xc[f, n] = 0
    # c = x F + bias − b_dec (d, cols); pre = c W_enc + b_enc (latents, cols); a = act(pre)
    for k in range(d):
        for t in range(cols):
            C[k, t] = bias[k] - b_dec[k]
        for f in range(feat):
            w = F[f, k]
            for t in range(cols):
                C[k, t] += w * Xc[f, t]
    loss = np.float32(0.0)
    for j in range(latents):
        for t in range(cols):
            PRE[j, t] = b_enc[j]
        for k in range(d):
            w = W_enc[k, j]
            for t in range(cols):
                PRE[j, t] += w * C[k, t]
        cut = np.float32(0.0) if relu else theta[j]
        sparsity = np.float32(0.0)
        for t in range(cols):
            on = PRE[j, t] > cut
            A[j, t] = PRE[j, t] if on else np.float32(0.0)
            sparsity += wt[t] * (A[j, t] if relu else np.float32(on))
        loss += setting * sparsity * (theta[j] if relu else np.float32(1.0))
    # e = a W_dec − c (h' − h), g = 2 e wt / (batch d)
    scale = np.float32(2.0 / (batch * d))
    for k in range(d):
        for t in range(cols):
            G[k, t] = -C[k, t]
        for j in range(latents):
            w = W_dec[j, k]
            for t in range(cols):
                G[k, t] += w * A[j, t]
        square = np.float32(0.0)
        total = np.float32(0.0)
        for t in range(cols):
            e = G[k, t]
            square += wt[t] * e * e
            G[k, t] = scale * wt[t] * e
            total += G[k, t]
        loss += square / d
        gb_dec[k] += total
    # per latent: dW_dec, then dL/dpre into A (its activations are spent), then the encoder
    penalty = np.float32(setting / batch) if relu else np.float32(0.0)
    half = np.float32(rule.bandwidth / 2)
    inv = np.float32(1.0 / rule.bandwidth)
    for j in range(latents):
        if relu:  # the L1 term's pull on the row's norm, applied in _update
            pull = np.float32(0.0)
            for t in range(cols):
                pull += wt[t] * A[j, t]
            gtheta[j] += pull * penalty
        for k in range(d):
            acc = np.float32(0.0)
            for t in range(cols):
                acc += A[j, t] * G[k, t]
            gW_dec[j, k] += acc
        cut = np.float32(0.0) if relu else theta[j]
        for t in range(cols):
            A[j, t] = 0
        for k in range(d):
            w = W_dec[j, k]
            for t in range(cols):
                A[j, t] += w * G[k, t]  # g · W_dec[j]
        if not relu:  # the threshold's straight-through estimators, for pre near θ
            pull = np.float32(0.0)
            for t in range(cols):
                near = abs(PRE[j, t] - cut) < half
                pull += theta[j] * inv * A[j, t] + wt[t] * setting * inv / batch if near else np.float32(0.0)
            gtheta[j] -= pull
        total = np.float32(0.0)
        count = 0
        weighted = penalty * theta[j] if relu else np.float32(0.0)
        for t in range(cols):
            on = PRE[j, t] > cut
            A[j, t] = A[j, t] + weighted * wt[t] if on else np.float32(0.0)
            total += A[j, t]
            count += on
        fired[j] |= count > 0
        gb_enc[j] += total
        for k in range(d):
            acc = np.float32(0.0)
            for t in range(cols):
                acc += A[j, t] * C[k, t]
            gW_encT[j, k] += acc
    return loss / batch


@njit(inline="always")
def _buffers(feat, d, latents, batch, factored, columns, kept_rows):
    """Per-unit scratch: X (feat, batch), a RowScratch and a ColumnScratch: _rows' C, PRE, present, xs, counts, weight, active, values, chosen,
    norms, e, g, touched, dpres, P, base, Q, start, fill, idx, val (idx and val, feat x batch, are
    empty if `columns`; the rest is small), kept (kept_rows x latents: 0 but for BatchTopK),
    kept_weight, found, slots; and _columns' keep, largest, wt, Xc, C, PRE, A, G (empty unless
    `columns`)."""
    table = feat if factored else 0
    cols = batch + 1 if columns else 0
    entries = 0 if columns else feat * batch
    return (
        np.empty((feat, batch), np.float32),
        RowScratch(
            np.empty((ROW_BLOCK, d), np.float32),
            np.empty((ROW_BLOCK, latents), np.float32),
            np.empty((ROW_BLOCK, feat), np.int64),
            np.empty((ROW_BLOCK, feat), np.float32),
            np.empty(ROW_BLOCK, np.int64),
            np.empty(ROW_BLOCK, np.float32),
            np.empty(latents, np.int64),
            np.empty(latents, np.float32),
            np.empty(latents, np.int64),
            np.empty(latents, np.float32),
            np.empty(d, np.float32),
            np.empty(d, np.float32),
            np.empty(2 * latents, np.int64),
            np.empty(2 * latents, np.float32),
            np.empty((table, latents), np.float32),
            np.empty(latents, np.float32),
            np.empty((table, latents), np.float32),
            np.empty(batch + 1, np.int64),
            np.empty(batch, np.int64),
            np.empty(entries, np.int32),
            np.empty(entries, np.float32),
            np.empty((kept_rows, latents), np.float32),
            np.empty(kept_rows, np.float32),
            np.empty(max(kept_rows - 1, 0) * latents, np.float32),
            np.zeros(2, np.int64),
        ),
        ColumnScratch(
            np.empty(cols, np.int64),
            np.empty(cols, np.float32),
            np.empty(cols, np.float32),
            np.empty((feat, cols), np.float32),
            np.empty((d, cols), np.float32),
            np.empty((latents, cols), np.float32),
            np.empty((latents, cols), np.float32),
            np.empty((d, cols), np.float32),
        ),
    )


@njit(inline="always")
def _norm(row):
    """A decoder row's length, at least 1e-12."""
    total = np.float32(0.0)
    for k in range(row.shape[0]):
        total += row[k] * row[k]
    return max(np.sqrt(total), np.float32(1e-12))


@njit(fastmath=_FASTMATH, nogil=True)
def _draw_unit(X, source, s, step, first):
    """Rows first … first + X.shape[1] of source instance s's batch of `step` into X."""
    key = step_key(source.seed, s, step)
    _draw_rows(X, source.probs[s], key, source.data_code, source.set_mode, source.set_size, source.batch, first, source.magnitudes)
    if source.normalize:
        _unit_columns(X)


@njit(fastmath=_FASTMATH, nogil=True)  # a call, not inlined: train_steps has two call sites, and inlining both doubled its compile time
def _unit(weights, source, rule, i, step, first, last, last_fired, everyone, dead, X, scratch, columns, grads, stats, stage, cut, fresh):
    """One pass (`stage`) over rows first..last of instance i's batch of `step`, drawn into X
    where `fresh` (a unit's earlier pass of the step left them there): the gradients into
    grads, their residuals' sums into stats where it asks (see `_block`), or BatchTopK's
    pre-activations (PRE_PASS). cut: BatchTopK's for the step (see `_cut`), or in its
    PRE_PASS the guess at it."""
    W_enc, b_enc, W_dec, b_dec, theta = weights
    sources = source.F.shape[0]
    s = i % sources
    # only this unit's rows of the step's draw, as a contiguous (feat, rows) array
    rows = last - first
    X = X.reshape(-1)[: X.shape[0] * rows].reshape(X.shape[0], rows)
    if fresh:
        _draw_unit(X, source, s, step, first)
    first, last = np.int64(0), rows
    setting = cut if rule.kind == BATCHTOPK else np.float32(rule.settings[i])
    if step + 1 < rule.warmup:
        setting *= np.float32((step + 1) / rule.warmup)
    per_latent = theta[i]
    if rule.kind == RELU:  # its L1 term weighs each activation by its decoder row's norm
        per_latent = scratch.norms
        for j in range(per_latent.shape[0]):
            per_latent[j] = _norm(W_dec[i, j])
    if rule.columns:
        return _columns(
            W_enc[i], b_enc[i], W_dec[i], b_dec[i], per_latent, source.F[s], source.bias, X, first, last, source.batch, rule,
            setting, columns, grads,
        )  # fmt: skip
    n_dead = np.int64(0)  # the dead latents, in order, into dead[:n_dead] (not a literal 0: see train_steps)
    for j in range(dead.shape[0]):
        if step - last_fired[i, j] >= rule.dead_steps:
            dead[n_dead] = j
            n_dead += 1
    return _rows(
        W_enc[i], b_enc[i], W_dec[i], b_dec[i], per_latent, source.F[s], source.bias, X, first, last, source.batch, rule,
        setting, dead, n_dead, everyone, scratch, grads, stats, stage, fresh,
    )  # fmt: skip


@njit(inline="always")
def _keep(rule, i, batch, latents):
    """How many of a batch's pre-activations BatchTopK keeps: k · batch, rounded (as saes/batchtopk.py)."""
    keep = int(np.round(np.float32(rule.settings[i]) * np.float32(batch)))
    return min(max(keep, 1), batch * latents)


@njit(nogil=True)  # a call, once per step: train_steps has two call sites
def _cut(buffers, lo, hi, keep, guess, candidates):
    """BatchTopK's cut for the instance whose rows units lo..hi − 1 kept: the keep-th largest
    pre-activation of its batch, each row counted as often as it occurs; 0 where fewer than
    keep are positive (then every positive one fires). Sought among those the PRE_PASS
    found above `guess` (GUESS times the last step's cut), and among every positive one
    where that leaves too few: exact either way."""
    n = 0
    for u in range(lo, hi):
        found, count = buffers[u][1].found, buffers[u][1].slots[1]
        candidates[n : n + count] = found[:count]
        n += count
    if n < keep and guess > 0:
        n = 0
        for u in range(lo, hi):
            kept, weight, slots = buffers[u][1].kept, buffers[u][1].kept_weight, buffers[u][1].slots
            for s in range(slots[0]):
                n = _above(kept[s], int(weight[s]), np.float32(0.0), candidates, n)
    if n < keep:
        return np.float32(0.0)
    return _kth_largest(candidates, n, keep)


@njit(inline="always")
def _zero(grads):
    """Explicit loops: as array expressions inside a prange, numba's parfor passes reordered them."""
    gW_encT, gb_enc, gW_dec, gb_dec, gtheta, fired = grads
    latents, d = gW_encT.shape
    for j in range(latents):
        for k in range(d):
            gW_encT[j, k] = 0
            gW_dec[j, k] = 0
        gb_enc[j] = 0
        gtheta[j] = 0
        fired[j] = False
    for k in range(d):
        gb_dec[k] = 0


@njit(fastmath=_FASTMATH, nogil=True)  # a call: inlined, it would be compiled into each parallel loop that runs it
def _update(weights, moments, rule, i, step, lr, grads, gW_enc, last_fired):
    """Adam on instance i from its summed gradients, then unit decoder rows (but ReLU's), θ >= 0 and the firing record."""
    W_enc, b_enc, W_dec, b_dec, theta = weights
    gW_encT, gb_enc, gW_dec, gb_dec, gtheta, fired = grads
    d, latents = W_enc.shape[1], W_enc.shape[2]
    # b_dec also enters every pre-activation, with −W_enc
    for k in range(d):
        total = np.float32(0.0)
        for j in range(latents):
            total += W_enc[i, k, j] * gb_enc[j]
            gW_enc[k, j] = gW_encT[j, k]
        gb_dec[k] -= total
    if rule.kind == RELU:  # its L1 term's pull on each row, gathered in gtheta (see the module's docstring)
        for j in range(latents):
            pull = gtheta[j] / _norm(W_dec[i, j])
            for k in range(d):
                gW_dec[j, k] += pull * W_dec[i, j, k]
    c1 = 1 - rule.beta1 ** (step + 1)
    c2 = np.sqrt(1 - rule.beta2 ** (step + 1))
    hyper = (lr, rule.beta1, rule.beta2, rule.eps, 0.0, True, c1, c2)
    mW_enc, vW_enc, mb_enc, vb_enc, mW_dec, vW_dec, mb_dec, vb_dec, mtheta, vtheta = moments
    _adam(W_enc[i].reshape(-1), gW_enc.reshape(-1), mW_enc[i].reshape(-1), vW_enc[i].reshape(-1), hyper)
    _adam(b_enc[i], gb_enc, mb_enc[i], vb_enc[i], hyper)
    _adam(W_dec[i].reshape(-1), gW_dec.reshape(-1), mW_dec[i].reshape(-1), vW_dec[i].reshape(-1), hyper)
    _adam(b_dec[i], gb_dec, mb_dec[i], vb_dec[i], hyper)
    if rule.kind == JUMPRELU and rule.log_threshold:  # Adam on log θ, whose gradient is θ ∂L/∂θ
        log = np.empty(latents, np.float32)
        for j in range(latents):
            gtheta[j] *= theta[i, j]
            log[j] = np.log(theta[i, j])
        _adam(log, gtheta, mtheta[i], vtheta[i], hyper)
        for j in range(latents):
            theta[i, j] = np.exp(log[j])
    elif rule.kind == JUMPRELU:
        _adam(theta[i], gtheta, mtheta[i], vtheta[i], hyper)
        for j in range(latents):
            theta[i, j] = max(theta[i, j], np.float32(0.0))
    for j in range(latents):
        if rule.kind != RELU:
            norm = _norm(W_dec[i, j])
            for k in range(d):
                W_dec[i, j, k] /= norm
        if fired[j]:
            last_fired[i, j] = step


@njit(inline="always")
def _needs_auxk(rule, last_fired, i, step):
    """Whether instance i's step has an AuxK term: a TopK or BatchTopK SAE with a dead latent."""
    if rule.kind != TOPK and rule.kind != BATCHTOPK:
        return False
    for j in range(last_fired.shape[1]):
        if step - last_fired[i, j] >= rule.dead_steps:
            return True
    return False


@njit(inline="always")
def _auxk_weight(rule, stats, batch):
    """AuxK's weight divided by the variance of the residual about its batch mean, from
    stats = (Σ e, Σ |e|², …) over the batch: Gao et al.'s normalised MSE, the divisor a
    constant (their residual is detached). 0 where the residual does not vary."""
    d = stats.shape[0] - 2
    spread = stats[d]
    for k in range(d):
        spread -= stats[k] * stats[k] / batch
    variance = spread / (batch * d)
    return np.float32(rule.aux_weight / variance) if variance > 0 else np.float32(0.0)


@njit(inline="always")
def _gradients(d, latents):
    """gW_encT (dW_enc transposed), gb_enc, gW_dec, gb_dec, gtheta, and which latents fired: a
    plain tuple, as train_steps builds one in a prange, where numba's parfor pass fails on a
    NamedTuple."""
    return (
        np.zeros((latents, d), np.float32),
        np.zeros(latents, np.float32),
        np.zeros((latents, d), np.float32),
        np.zeros(d, np.float32),
        np.zeros(latents, np.float32),
        np.zeros(latents, np.bool_),
    )


@njit(fastmath=_FASTMATH, nogil=True)  # a call, so that the parallel loop that runs it stays small to compile
def _train_instance(weights, moments, source, rule, first_step, lr, losses, last_fired, i):
    """Instance i, all its rows on this thread, for len(losses) steps."""
    d, latents = weights.W_enc.shape[1], weights.W_enc.shape[2]
    feat, batch = source.F.shape[1], source.batch
    batchtop = rule.kind == BATCHTOPK
    buffers = [_buffers(feat, d, latents, batch, rule.factored, rule.columns, batch + 1 if batchtop else 0)]
    X, scratch, columns = buffers[0]
    candidates = np.empty(batch * latents if batchtop else 0, np.float32)
    grads = _gradients(d, latents)
    gW_enc = np.empty((d, latents), np.float32)
    everyone = np.arange(latents)
    dead = np.empty(latents, np.int64)
    stats = np.zeros(d + 2, np.float64)
    cut = np.float32(0.0)
    for s in range(losses.shape[0]):
        step = first_step + s
        fresh = np.bool_(True)
        if batchtop:
            guess = GUESS * cut
            _unit(weights, source, rule, i, step, np.int64(0), batch, last_fired, everyone, dead, X, scratch, columns, grads, stats, np.int64(PRE_PASS), guess, fresh)
            fresh = False
            cut = _cut(buffers, np.int64(0), np.int64(1), _keep(rule, i, batch, latents), guess, candidates)
        aux = np.float32(0.0)
        if _needs_auxk(rule, last_fired, i, step):  # a pass for the residual's variance first
            stats[:] = 0
            stats[d + 1] = -1
            _unit(weights, source, rule, i, step, np.int64(0), batch, last_fired, everyone, dead, X, scratch, columns, grads, stats, np.int64(STATS_PASS), cut, fresh)
            fresh = False
            aux = _auxk_weight(rule, stats, batch)
        stats[d + 1] = aux
        _zero(grads)
        losses[s, i] = _unit(
            weights, source, rule, i, step, np.int64(0), batch, last_fired, everyone, dead, X, scratch, columns, grads, stats, np.int64(GRADIENT_PASS), cut, fresh,
        )  # fmt: skip
        _update(weights, moments, rule, i, first_step + s, lr, grads, gW_enc, last_fired)


@njit(parallel=True, cache=True, fastmath=_FASTMATH, nogil=True)
def train_steps(weights, moments, source, rule, first_step, lr, losses, last_fired):
    """Train every instance for len(losses) steps from `first_step`, in place.
    losses: out, (steps, inst); last_fired: (inst, latents), the last step each latent fired."""
    instances, d, latents = weights.W_enc.shape
    feat, batch = source.F.shape[1], source.batch
    steps = losses.shape[0]
    chunks = max(1, ROW_UNITS // instances)
    # Every call out of a prange passes its indices as int64: prange's index is unsigned, and a
    # callee given uint64 in one loop and int64 in another is compiled once for each (as one
    # given a literal, True or 0, at one call site and a bool or int64 at another)
    if chunks == 1:
        for i in prange(instances):
            _train_instance(weights, moments, source, rule, first_step, lr, losses, last_fired, np.int64(i))
        return
    # few instances: each one's rows in `chunks` parts, a synchronised step at a time
    units = instances * chunks
    size = (batch + chunks - 1) // chunks
    parts = np.zeros(units, np.float32)
    gW_encT, gb_enc = np.zeros((units, latents, d), np.float32), np.zeros((units, latents), np.float32)
    gW_dec, gb_dec = np.zeros((units, latents, d), np.float32), np.zeros((units, d), np.float32)
    gtheta, fired = np.zeros((units, latents), np.float32), np.zeros((units, latents), np.bool_)
    batchtop = rule.kind == BATCHTOPK
    buffers = [_buffers(feat, d, latents, batch, rule.factored, rule.columns, size + 1 if batchtop else 0) for _ in range(units)]
    candidates = np.empty(batch * latents if batchtop else 0, np.float32)
    cuts = np.zeros(instances, np.float32)
    drawn = np.full(units, -1, np.int64)  # the step whose rows each unit holds
    everyone = np.arange(latents)
    deads = np.empty((units, latents), np.int64)
    gW_enc = np.empty((instances, d, latents), np.float32)
    stats = np.zeros((units, d + 2), np.float64)
    aux = np.zeros(instances, np.float32)
    for s in range(steps):
        step = first_step + s
        # PRE_PASS, for BatchTopK only: every row's pre-activations, for the batch's cut;
        # STATS_PASS, for TopK and BatchTopK: the residual's variance over each instance's whole
        # batch, for AuxK; GRADIENT_PASS. One parallel loop for all, as each parallel loop costs
        # seconds to compile (three took 90 s, two 64; the sum and update in it too ran slower)
        for stage in range(PRE_PASS if batchtop else STATS_PASS if rule.kind == TOPK else GRADIENT_PASS, GRADIENT_PASS + 1):
            for u in prange(units):
                i, part = np.int64(u // chunks), np.int64(u % chunks)
                grads = (gW_encT[u], gb_enc[u], gW_dec[u], gb_dec[u], gtheta[u], fired[u])
                X, scratch, columns = buffers[u]
                first, last = part * size, min(batch, (part + 1) * size)
                run = stage != STATS_PASS or _needs_auxk(rule, last_fired, i, step)
                if stage == STATS_PASS:
                    stats[u, :] = 0
                    stats[u, d + 1] = -1
                elif stage == GRADIENT_PASS:
                    _zero(grads)
                    stats[u, d + 1] = aux[i]
                if run:
                    fresh = drawn[u] != step
                    drawn[u] = step
                    cut = GUESS * cuts[i] if stage == PRE_PASS else cuts[i]
                    parts[u] = _unit(
                        weights, source, rule, i, step, first, last, last_fired, everyone, deads[u], X, scratch, columns, grads, stats[u],
                        np.int64(stage), cut, fresh,
                    )  # fmt: skip
            if stage == PRE_PASS:
                for i in range(instances):
                    cuts[i] = _cut(buffers, i * chunks, (i + 1) * chunks, _keep(rule, i, batch, latents), GUESS * cuts[i], candidates)
            if stage == STATS_PASS:
                for i in range(instances):
                    for other in range(i * chunks + 1, (i + 1) * chunks):
                        for k in range(d + 1):
                            stats[i * chunks, k] += stats[other, k]
                    aux[i] = _auxk_weight(rule, stats[i * chunks], batch) if _needs_auxk(rule, last_fired, i, step) else np.float32(0.0)
        for i in prange(instances):
            u = i * chunks
            loss = parts[u]
            for other in range(u + 1, u + chunks):
                loss += parts[other]
                for j in range(latents):
                    for k in range(d):
                        gW_encT[u, j, k] += gW_encT[other, j, k]
                        gW_dec[u, j, k] += gW_dec[other, j, k]
                    gb_enc[u, j] += gb_enc[other, j]
                    gtheta[u, j] += gtheta[other, j]
                    fired[u, j] |= fired[other, j]
                for k in range(d):
                    gb_dec[u, k] += gb_dec[other, k]
            losses[s, i] = loss
            grads = (gW_encT[u], gb_enc[u], gW_dec[u], gb_dec[u], gtheta[u], fired[u])
            _update(weights, moments, rule, np.int64(i), step, lr, grads, gW_enc[i], last_fired)
