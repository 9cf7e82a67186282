"""The fused engine on a finite training set: sparse inputs in, sparse outputs out.

At the size of Henighan et al. (2023), 10,000 features at S = 0.999, an example has ~10
features present, and a dense step (features x rows x hidden for the decoder alone)
mostly multiplies zeros. The outputs are simple too once trained: most features are not
represented, so their output is about b_j > 0 (≈ E[x_j]) for every example, and a
represented feature's output is zero for most. Here a step costs what is present and
what is neither:

  h_t = Σ_f x_tf W_f                    over the features present in example t
  pre_tj = d_j · h_t + b_j              through a k-d tree over the h_t: a box where
                                        b_j + max of d_j · h <= 0 is skipped, a box where
                                        b_j + min > 0 is summed in closed form (its count,
                                        Σ h, Σ h hᵀ); only boxes the line d_j · h = -b_j
                                        crosses are opened, point by point
  loss, dL/dpre                         first as if every target were 0, over the active
                                        pairs; then corrected over the present features:
                                        (pre - x)² = pre² - 2 x pre + x², and a present
                                        feature whose output is 0 adds x²
  dW_f = Σ_t x_tf dh_t (+ the decoder's gradient when tied)

Both box tests are exact, not guesses: the bounds and the pre-activation are summed in
the same order without fast-math, and rounding is monotone, so a pair a bound decides
has that sign in float32 as well. d_j is the decoder's column j: W_j when tied, W_out[:, j]
otherwise. The tree is rebuilt at the start of every call (CHUNK steps) and of every
minibatch; between rebuilds of a full batch only its boxes are refitted to the moved
points.

The tree pays at m = 2, the study's own size, and is walked node by node (_active_pairs).
In 3 or more dimensions most features' planes cross most boxes, and _dense_pairs takes
every pair instead, vectorised; so does m = 1.

Instances train in parallel, each on one thread (lanes, as in fused.py).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .fused import _adam

LEAF = 8  # points per leaf of the tree


@njit(inline="always")
def _hidden(row_ptr, cols, vals, rows, W, H, hid):
    """H[r] = x_t W for the examples t = rows[r] (CSR)."""
    batch = H.shape[0]
    for r in range(batch):
        t = rows[r]
        for k in range(hid):
            H[r, k] = 0
        for q in range(row_ptr[t], row_ptr[t + 1]):
            f, x = cols[q], vals[q]
            for k in range(hid):
                H[r, k] += x * W[f, k]


@njit(inline="always")
def leaves(batch):
    """Leaves of the tree over `batch` points: a power of two, each leaf about LEAF points."""
    count = 1
    while count * LEAF < batch:
        count *= 2
    return count


@njit(inline="always")
def _build(H, order, start, end, nl, hid):
    """Split the points at the median of their widest coordinate, down to nl leaves (heap order:
    node k has children 2k and 2k + 1, leaves are nl … 2 nl - 1); order holds the leaves' points."""
    batch = H.shape[0]
    for r in range(batch):
        order[r] = r
    start[1], end[1] = 0, batch
    for node in range(1, nl):
        s, e = start[node], end[node]
        mid = (s + e) // 2
        if e - s > 1:
            best, width = 0, np.float32(-1.0)
            for k in range(hid):
                low, high = np.float32(np.inf), np.float32(-np.inf)
                for q in range(s, e):
                    v = H[order[q], k]
                    low, high = min(low, v), max(high, v)
                if high - low > width:
                    best, width = k, high - low
            keys = np.empty(e - s, np.float32)
            for q in range(s, e):
                keys[q - s] = H[order[q], best]
            ranked = np.argsort(keys, kind="mergesort")
            points = order[s:e].copy()
            for q in range(e - s):
                order[s + q] = points[ranked[q]]
        start[2 * node], end[2 * node] = s, mid
        start[2 * node + 1], end[2 * node + 1] = mid, e


@njit(inline="always")
def _refit(H, start, end, nl, box, hid):
    """Every node's bounding box of its points' current positions, and its points' count,
    sum and second moment Σ h hᵀ (float64: sums of up to all the points)."""
    lo, hi, count, first, second, _, _ = box
    for leaf in range(nl, 2 * nl):
        lo[leaf], hi[leaf], first[leaf], second[leaf] = np.inf, -np.inf, 0, 0
        count[leaf] = end[leaf] - start[leaf]
        for p in range(start[leaf], end[leaf]):
            for k in range(hid):
                v = H[p, k]
                lo[leaf, k] = min(lo[leaf, k], v)
                hi[leaf, k] = max(hi[leaf, k], v)
                first[leaf, k] += v
                for l in range(hid):
                    second[leaf, k, l] += v * H[p, l]
    for node in range(nl - 1, 0, -1):
        left, right = 2 * node, 2 * node + 1
        count[node] = count[left] + count[right]
        for k in range(hid):
            lo[node, k] = min(lo[left, k], lo[right, k])
            hi[node, k] = max(hi[left, k], hi[right, k])
            first[node, k] = first[left, k] + first[right, k]
            for l in range(hid):
                second[node, k, l] = second[left, k, l] + second[right, k, l]


@njit  # not inlined into the two copies of the step: the first compile took 79 s inlined, 51 s not
def _active_pairs(H, start, end, nl, box, D, b, imp, scale, dH, gD, gb, walk):
    """Loss (targets taken as 0) and gradients of every pair with pre > 0, at m = 2.

    A node whose whole box has pre > 0 for feature j is summed in closed form from its
    points' count N, sum S1 and second moment S2: Σ pre² = N b² + 2 b d·S1 + dᵀ S2 d, and
    its share of each point's dh, g (b + d·h) d, is left at the node as (g b d, g d dᵀ) and
    handed down to its points once, after every feature.

    The tree is walked node by node, each node taking every feature whose line crosses its
    parent: a feature-major walk (one feature down the whole tree, then the next) loaded a
    node's box for every feature that reached it and branched three ways on each, 2.3x
    slower at paper size. The sums are the feature-major walk's, in its order: a node's
    shares and a point's dh over the features in order j, a feature's over the nodes in
    depth-first order, right child first."""
    lo, hi, count, first, second, shift, slope = box
    index, bias, d0_of, d1_of, full, cross, upper_of, lower_of, towards, bias_grad, losses = walk
    feat = D.shape[0]
    zero = np.float32(0.0)
    shift[:] = 0
    slope[:] = 0
    towards[:] = 0
    bias_grad[:] = 0
    losses[:] = 0
    # row `level` of (index, bias, d0_of, d1_of): the features whose lines cross the node's parent
    for j in range(feat):
        index[0, j], bias[0, j], d0_of[0, j], d1_of[0, j] = j, b[j], D[j, 0], D[j, 1]
    size = np.zeros(index.shape[0], np.int64)
    size[0] = feat
    node, level = 1, 0
    while True:
        lo0, lo1, hi0, hi1 = lo[node, 0], lo[node, 1], hi[node, 0], hi[node, 1]
        for q in range(size[level]):  # the bounds, vectorised
            d0, d1 = d0_of[level, q], d1_of[level, q]
            upper = lower = bias[level, q]
            upper += max(d0 * lo0, d0 * hi0)
            lower += min(d0 * lo0, d0 * hi0)
            upper += max(d1 * lo1, d1 * hi1)
            lower += min(d1 * lo1, d1 * hi1)
            upper_of[q], lower_of[q] = upper, lower
        n_full = n_cross = 0
        for q in range(size[level]):  # sorted without a branch: which way it goes is a coin toss
            full[n_full], cross[n_cross] = q, q
            n_full += lower_of[q] > 0
            n_cross += (upper_of[q] > 0) & (lower_of[q] <= 0)
        if n_full:  # every point of the node is active
            N, f0, f1 = count[node], first[node, 0], first[node, 1]
            S00, S01, S10, S11 = second[node, 0, 0], second[node, 0, 1], second[node, 1, 0], second[node, 1, 1]
            shift0 = shift1 = slope00 = slope01 = slope10 = slope11 = 0.0
            for r in range(n_full):
                q = full[r]
                j, bj, d0, d1 = index[level, q], bias[level, q], d0_of[level, q], d1_of[level, q]
                weight = imp[j]
                g_scale = scale * weight
                linear = d0 * f0 + d1 * f1
                quadratic = d0 * S00 * d0 + d0 * S01 * d1 + d1 * S10 * d0 + d1 * S11 * d1
                losses[j] += weight * (N * bj * bj + 2 * bj * linear + quadratic)
                bias_grad[j] += g_scale * (N * bj + linear)
                towards[j, 0] += g_scale * (bj * f0 + S00 * d0 + S01 * d1)
                towards[j, 1] += g_scale * (bj * f1 + S10 * d0 + S11 * d1)
                shift0 += g_scale * bj * d0
                shift1 += g_scale * bj * d1
                slope00 += g_scale * d0 * d0
                slope01 += g_scale * d0 * d1
                slope10 += g_scale * d1 * d0
                slope11 += g_scale * d1 * d1
            shift[node, 0], shift[node, 1] = shift0, shift1
            slope[node, 0, 0], slope[node, 0, 1], slope[node, 1, 0], slope[node, 1, 1] = slope00, slope01, slope10, slope11
        if node < nl:
            for r in range(n_cross):
                q = cross[r]
                index[level + 1, r], bias[level + 1, r] = index[level, q], bias[level, q]
                d0_of[level + 1, r], d1_of[level + 1, r] = d0_of[level, q], d1_of[level, q]
            if n_cross:
                size[level + 1] = n_cross
                node, level = 2 * node + 1, level + 1
                continue
        else:  # a leaf the line crosses: point by point
            for r in range(n_cross):
                q = cross[r]
                j, bj, d0, d1 = index[level, q], bias[level, q], d0_of[level, q], d1_of[level, q]
                weight = imp[j]
                g_scale = scale * weight
                loss_j, gb_j, t0, t1 = losses[j], bias_grad[j], towards[j, 0], towards[j, 1]
                for p in range(start[node], end[node]):
                    h0, h1 = H[p, 0], H[p, 1]
                    pre = max(bj + d0 * h0 + d1 * h1, zero)  # an inactive pair adds 0: no branch
                    loss_j += weight * pre * pre
                    g = g_scale * pre
                    gb_j += g
                    t0 += g * h0
                    t1 += g * h1
                    dH[p, 0] += g * d0
                    dH[p, 1] += g * d1
                losses[j], bias_grad[j], towards[j, 0], towards[j, 1] = loss_j, gb_j, t0, t1
        # on to the next node depth first, right child first: up past the left children done
        while node > 1 and node % 2 == 0:
            node, level = node // 2, level - 1
        if node == 1:
            break
        node -= 1
    loss = 0.0
    for j in range(feat):
        loss += losses[j]
        gb[j] += bias_grad[j]
        gD[j, 0] += towards[j, 0]
        gD[j, 1] += towards[j, 1]
    # hand the nodes' shares down to the leaves, then to their points
    for node in range(1, nl):
        for child in (2 * node, 2 * node + 1):
            for k in range(2):
                shift[child, k] += shift[node, k]
                for l in range(2):
                    slope[child, k, l] += slope[node, k, l]
    for leaf in range(nl, 2 * nl):
        for p in range(start[leaf], end[leaf]):
            for k in range(2):
                share = shift[leaf, k]
                for l in range(2):
                    share += slope[leaf, k, l] * H[p, l]
                dH[p, k] += share
    return loss


TILE = 4  # points (features) that share one pass over a chunk of features (points): p0-p3 below
CHUNK_PAIRS = 1024  # features (points) per chunk: the tile's buffers stay in L1


@njit  # not inlined into the two copies of the step: 4 s less to compile
def _dense_pairs(H, D, b, imp, scale, dH, gD, gb, hid):
    """What _active_pairs computes, over every pair, for m != 2: a k-d tree's boxes in 3-5
    dimensions are crossed by most features' planes (paper size, T = 3,000: 33 ms a step
    at m = 3, 64 ms at m = 5, against 9 ms at m = 2), and a plain pass the compiler
    vectorises costs 0.6-0.9 ns a pair.

    Two passes, each vectorised along one axis and summing along the other in order, so no
    sum is reassociated and any vector width gives the same bits: per feature (loss, gb,
    gD) with the features in the vector and TILE points at a time, then per point (dH) with
    the points in the vector and TILE features at a time. Both pad to whole tiles: a
    padded point starts at -inf, a padded feature has b = -inf and d = 0, so ReLU zeroes
    them. Every sum is float32: the loss too, which only the history records (the tree
    sums it, and the shares it hands down, in float64)."""
    batch, feat = H.shape[0], D.shape[0]
    points, features = -(-batch // TILE) * TILE, -(-feat // TILE) * TILE
    HT = np.zeros((hid, points), np.float32)  # (hidden, point): a row is contiguous
    HT[:, :batch] = H.T
    start = np.full(points, -np.inf, np.float32)  # a padded point's pre-activation: never active
    start[:batch] = 0
    DT = np.zeros((hid, features), np.float32)
    DT[:, :feat] = D.T
    bias = np.full(features, -np.inf, np.float32)
    bias[:feat] = b
    importance, weight = np.zeros(features, np.float32), np.zeros(features, np.float32)
    importance[:feat] = imp
    weight[:feat] = scale * imp  # d loss / d pre = weight * pre
    dHT, gDT = np.zeros((hid, points), np.float32), np.zeros((hid, features), np.float32)
    losses, bias_grads = np.zeros(features, np.float32), np.zeros(features, np.float32)
    p0, p1 = np.empty(CHUNK_PAIRS, np.float32), np.empty(CHUNK_PAIRS, np.float32)  # the tile's pre-activations
    p2, p3 = np.empty(CHUNK_PAIRS, np.float32), np.empty(CHUNK_PAIRS, np.float32)
    zero = np.float32(0.0)
    for j0 in range(0, features, CHUNK_PAIRS):  # per feature: features in the vector
        n = min(CHUNK_PAIRS, features - j0)
        bj, wj, ij = bias[j0 : j0 + n], weight[j0 : j0 + n], importance[j0 : j0 + n]
        lj, sj = losses[j0 : j0 + n], bias_grads[j0 : j0 + n]
        for t in range(0, points, TILE):
            s0, s1, s2, s3 = start[t], start[t + 1], start[t + 2], start[t + 3]
            for j in range(n):
                p0[j], p1[j], p2[j], p3[j] = bj[j] + s0, bj[j] + s1, bj[j] + s2, bj[j] + s3
            for k in range(hid):
                x0, x1, x2, x3 = HT[k, t], HT[k, t + 1], HT[k, t + 2], HT[k, t + 3]
                dk = DT[k, j0 : j0 + n]
                for j in range(n):
                    p0[j] += dk[j] * x0
                    p1[j] += dk[j] * x1
                    p2[j] += dk[j] * x2
                    p3[j] += dk[j] * x3
            for j in range(n):
                r0, r1, r2, r3 = max(p0[j], zero), max(p1[j], zero), max(p2[j], zero), max(p3[j], zero)
                lj[j] = lj[j] + ij[j] * r0 * r0 + ij[j] * r1 * r1 + ij[j] * r2 * r2 + ij[j] * r3 * r3
                p0[j], p1[j], p2[j], p3[j] = wj[j] * r0, wj[j] * r1, wj[j] * r2, wj[j] * r3
                sj[j] = sj[j] + p0[j] + p1[j] + p2[j] + p3[j]
            for k in range(hid):
                x0, x1, x2, x3 = HT[k, t], HT[k, t + 1], HT[k, t + 2], HT[k, t + 3]
                gk = gDT[k, j0 : j0 + n]
                for j in range(n):
                    gk[j] = gk[j] + p0[j] * x0 + p1[j] * x1 + p2[j] * x2 + p3[j] * x3
    for t0 in range(0, points, CHUNK_PAIRS):  # per point: points in the vector
        n = min(CHUNK_PAIRS, points - t0)
        s = start[t0 : t0 + n]
        for j in range(0, features, TILE):
            b0, b1, b2, b3 = bias[j], bias[j + 1], bias[j + 2], bias[j + 3]
            for t in range(n):
                p0[t], p1[t], p2[t], p3[t] = b0 + s[t], b1 + s[t], b2 + s[t], b3 + s[t]
            for k in range(hid):
                d0, d1, d2, d3 = DT[k, j], DT[k, j + 1], DT[k, j + 2], DT[k, j + 3]
                hk = HT[k, t0 : t0 + n]
                for t in range(n):
                    p0[t] += d0 * hk[t]
                    p1[t] += d1 * hk[t]
                    p2[t] += d2 * hk[t]
                    p3[t] += d3 * hk[t]
            w0, w1, w2, w3 = weight[j], weight[j + 1], weight[j + 2], weight[j + 3]
            for t in range(n):
                p0[t], p1[t] = w0 * max(p0[t], zero), w1 * max(p1[t], zero)
                p2[t], p3[t] = w2 * max(p2[t], zero), w3 * max(p3[t], zero)
            for k in range(hid):
                d0, d1, d2, d3 = DT[k, j], DT[k, j + 1], DT[k, j + 2], DT[k, j + 3]
                dk = dHT[k, t0 : t0 + n]
                for t in range(n):
                    dk[t] = dk[t] + p0[t] * d0 + p1[t] * d1 + p2[t] * d2 + p3[t] * d3
    dH += dHT[:, :batch].T
    gD += gDT[:, :feat].T
    gb += bias_grads[:feat]
    loss = 0.0
    for j in range(feat):
        loss += losses[j]
    return loss


@njit(inline="always")
def _lay_out(row_ptr, cols, vals, rows, laid):
    """Copy the examples `rows` out of the set, in that order (the tree's): the step then
    reads them front to back, where in the set's own order they lie scattered (paper size,
    T = 30,000: 3.6 MB, read at random, made the present features' pass 3x slower)."""
    ptr, own_cols, own_vals, _ = laid
    ptr[0] = q = 0
    for r in range(rows.shape[0]):
        t = rows[r]
        for e in range(row_ptr[t], row_ptr[t + 1]):
            own_cols[q], own_vals[q] = cols[e], vals[e]
            q += 1
        ptr[r + 1] = q


@njit(inline="always")
def _present(row_ptr, cols, vals, rows, H, D, b, imp, scale, dH, gD, gb, abs_target, hid):
    """The correction for the targets that are not 0: the present features."""
    loss = 0.0
    dh = np.empty(hid, np.float32)
    for r in range(rows.shape[0]):
        t = rows[r]
        for k in range(hid):
            dh[k] = dH[r, k]
        for q in range(row_ptr[t], row_ptr[t + 1]):
            f, y = cols[q], abs(vals[q]) if abs_target else vals[q]
            pre = b[f]
            for k in range(hid):
                pre += D[f, k] * H[r, k]
            if pre > 0:
                loss += imp[f] * (y * y - 2 * y * pre)
                g = -scale * imp[f] * y
                gb[f] += g
                for k in range(hid):
                    gD[f, k] += g * H[r, k]
                    dh[k] += g * D[f, k]
            else:
                loss += imp[f] * y * y
        for k in range(hid):
            dH[r, k] = dh[k]
    return loss


@njit(inline="always")
def _encoder_gradient(row_ptr, cols, vals, rows, dH, gW, hid):
    gW[:] = 0
    for r in range(rows.shape[0]):
        t = rows[r]
        for q in range(row_ptr[t], row_ptr[t + 1]):
            f, x = cols[q], vals[q]
            for k in range(hid):
                gW[f, k] += x * dH[r, k]


@njit  # not inlined into train_steps: compiling that with two copies of the step took 60 s, this 30
def _step(W, D, b, imp, row_ptr, cols, vals, rows, rebuild, tree, H, dH, gW, gD, gb, abs_target):
    """Loss (the batch's mean) and gradients gW (encoder), gD (decoder, (feat, hid)), gb, on
    the examples `rows`, which a rebuild reorders in place."""
    # m = 2 is the study's own size: a copy of the step where hid is a constant, whose loops
    # the compiler unrolls: 1.5x faster at T = 2,000, and the same arithmetic in the same order
    if H.shape[1] == 2:
        return _step_of(W, D, b, imp, row_ptr, cols, vals, rows, rebuild, tree, H, dH, gW, gD, gb, abs_target, 2)
    return _step_of(W, D, b, imp, row_ptr, cols, vals, rows, rebuild, tree, H, dH, gW, gD, gb, abs_target, H.shape[1])


@njit(inline="always")
def _step_of(W, D, b, imp, row_ptr, cols, vals, rows, rebuild, tree, H, dH, gW, gD, gb, abs_target, hid):
    order, start, end, walk, box, laid = tree
    ptr, own_cols, own_vals, each = laid
    nl = start.shape[0] // 2
    batch = rows.shape[0]
    scale = np.float32(2.0 / (batch * D.shape[0]))
    # lay the batch out in the tree's order: a leaf's points are then contiguous (m != 2 keeps
    # that order too, in which the dense pass sums the points)
    if rebuild:
        _hidden(row_ptr, cols, vals, rows, W, H, hid)
        _build(H, order, start, end, nl, hid)
        rows[:] = rows[order]
        H[:] = H[order]
        _lay_out(row_ptr, cols, vals, rows, laid)
    else:
        _hidden(ptr, own_cols, own_vals, each, W, H, hid)
    dH[:] = 0
    gD[:] = 0
    gb[:] = 0
    if hid == 2:
        _refit(H, start, end, nl, box, hid)
        loss = _active_pairs(H, start, end, nl, box, D, b, imp, scale, dH, gD, gb, walk)
    else:
        loss = _dense_pairs(H, D, b, imp, scale, dH, gD, gb, hid)
    loss += _present(ptr, own_cols, own_vals, each, H, D, b, imp, scale, dH, gD, gb, abs_target, hid)
    _encoder_gradient(ptr, own_cols, own_vals, each, dH, gW, hid)
    return loss / (batch * D.shape[0])


@njit(inline="always")
def _tree(batch, feat, hid, entries):
    """order, start, end, the walk's buffers (m = 2 only), per node: box lo, hi, count, Σ h,
    Σ h hᵀ, and the handed-down gradient shares (shift, slope), and room for the batch's
    `entries` present features, laid out in the tree's order."""
    nl = leaves(batch)
    nodes = 2 * nl
    box = (
        np.empty((nodes, hid), np.float32),
        np.empty((nodes, hid), np.float32),
        np.zeros(nodes, np.int64),
        np.empty((nodes, hid)),
        np.empty((nodes, hid, hid)),
        np.empty((nodes, hid)),
        np.empty((nodes, hid, hid)),
    )
    # per level of the tree, the features crossing the node walked at that level; per
    # feature, its sums so far
    levels, width = (int(np.log2(nl)) + 1, feat) if hid == 2 else (0, 0)
    walk = (
        np.empty((levels, width), np.int64),
        np.empty((levels, width), np.float32),
        np.empty((levels, width), np.float32),
        np.empty((levels, width), np.float32),
        np.empty(width, np.int64),
        np.empty(width, np.int64),
        np.empty(width, np.float32),
        np.empty(width, np.float32),
        np.empty((width, 2), np.float32),
        np.empty(width),
        np.empty(width),
    )
    laid = (np.empty(batch + 1, np.int64), np.empty(entries, np.int32), np.empty(entries, np.float32), np.arange(batch))
    return np.empty(batch, np.int64), np.zeros(nodes, np.int64), np.zeros(nodes, np.int64), walk, box, laid


@njit(inline="always")
def _entries(row_ptr, rows):
    """Present features in the examples `rows` of the set."""
    total = 0
    for t in rows:
        total += row_ptr[t + 1] - row_ptr[t]
    return total


@njit(cache=True)
def gradients(W, W_out, b, imp, row_ptr, cols, vals, rows, tied, abs_target=False):
    """Loss and (dW, dW_out, db) of one instance on the examples `rows` of a CSR set: for tests."""
    feat, hid = W.shape
    D = W if tied else W_out.T.copy()
    batch = rows.shape[0]
    H, dH = np.empty((batch, hid), np.float32), np.empty((batch, hid), np.float32)
    gW, gD, gb = np.empty((feat, hid), np.float32), np.empty((feat, hid), np.float32), np.empty(feat, np.float32)
    rebuild = batch >= 0  # a bool, not the literal True: _step as train_steps compiled it, not a second compile
    loss = _step(W, D, b, imp, row_ptr, cols, vals, rows.copy(), rebuild, _tree(batch, feat, hid, _entries(row_ptr, rows)), H, dH, gW, gD, gb, abs_target)
    if tied:
        gW += gD
    return loss, gW, gD.T.copy(), gb


@njit(parallel=True, cache=True, nogil=True)
def train_steps(weights, moments, dataset, batches, model, optimiser, first_step, lrs, losses, lanes):
    """Train every instance for len(lrs) steps from `first_step`, in place. dataset: (row_ptr
    (inst, T + 1) into cols, vals); batches: (inst, steps, batch) example indices per step, or
    (inst, 0, 0) for the full set every step. Thread w trains the instances of lanes[w]."""
    for w in prange(lanes.shape[0]):
        for i in lanes[w]:
            if i >= 0:
                _train_instance(weights, moments, dataset, batches, model, optimiser, first_step, lrs, losses, i)


@njit(inline="always")
def _train_instance(weights, moments, dataset, batches, model, optimiser, first_step, lrs, losses, i):
    W, W_out, b = weights[0][i], weights[1][i], weights[2][i]
    row_ptr, cols, vals = dataset[0][i], dataset[1], dataset[2]
    feat, hid = W.shape
    full = batches.shape[1] == 0
    batch = row_ptr.shape[0] - 1 if full else batches.shape[2]
    rows = np.arange(batch)  # the examples of the step, in the tree's order after a rebuild
    tied = model.tied
    D = W if tied else np.empty((feat, hid), np.float32)
    gW_out = np.empty((hid, feat), np.float32)
    H, dH = np.empty((batch, hid), np.float32), np.empty((batch, hid), np.float32)
    gW, gD, gb = np.empty((feat, hid), np.float32), np.empty((feat, hid), np.float32), np.empty(feat, np.float32)
    # a minibatch gets room for its size of the longest examples: it may hold one twice (across an epoch's end)
    entries = _entries(row_ptr, rows) if full else batch * (row_ptr[1:] - row_ptr[:-1]).max()
    tree = _tree(batch, feat, hid, entries)
    for s in range(lrs.shape[0]):
        step = first_step + s
        if not tied:
            for j in range(feat):
                for k in range(hid):
                    D[j, k] = W_out[k, j]
        if not full:
            rows[:] = batches[i, s]
        losses[s, i] = _step(
            W, D, b, model.importance[i], row_ptr, cols, vals, rows, s == 0 or not full, tree, H, dH, gW, gD, gb, model.abs_target
        )
        c1 = 1 - optimiser.beta1 ** (step + 1)
        c2 = np.sqrt(1 - optimiser.beta2 ** (step + 1))
        hyper = (lrs[s], optimiser.beta1, optimiser.beta2, optimiser.eps, optimiser.weight_decay, optimiser.decoupled, c1, c2)
        if tied:
            gW += gD
        else:
            for j in range(feat):
                for k in range(hid):
                    gW_out[k, j] = gD[j, k]
            _adam(W_out.reshape(-1), gW_out.reshape(-1), moments.mW_out[i].reshape(-1), moments.vW_out[i].reshape(-1), hyper)
        _adam(W.reshape(-1), gW.reshape(-1), moments.mW[i].reshape(-1), moments.vW[i].reshape(-1), hyper)
        _adam(b, gb, moments.mb[i], moments.vb[i], hyper)
