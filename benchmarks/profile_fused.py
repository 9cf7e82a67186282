"""Where the fused engine's time goes, per instance and step, for B1-B4's shapes.

    python benchmarks/profile_fused.py

Times the kernel's parts on one core (numba's jitted entry points, many calls):
the data draw, the forward+backward pass, and a whole training step, and turns
the backward pass into multiply-adds per second (5 passes of feat x hid x batch).
"""

import time

import numba
import numpy as np

from superposition.kernels import fused

SHAPES = {"B1": (5, 2), "B2": (20, 5), "B3": (100, 20), "B4": (20, 5)}
BATCH = 1024


def per_call(fn, repeats: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    numba.set_num_threads(1)
    print("| shape n → m | draw µs | forward+backward µs | whole step µs | multiply-adds/s in backprop |")
    print("|---|---|---|---|---|")
    seen = set()
    for feat, hid in SHAPES.values():
        if (feat, hid) in seen:
            continue
        seen.add((feat, hid))
        rng = np.random.default_rng(0)
        probs = np.full(feat, 0.3, np.float32)
        W = (rng.standard_normal((feat, hid)) * 0.3).astype(np.float32)
        b = np.zeros(feat, np.float32)
        imp = (0.9 ** np.arange(feat)).astype(np.float32)
        X = fused.sample(probs, 0, 0, 0, BATCH, 0)
        repeats = max(20, 200_000 // (feat * hid))
        draw = per_call(lambda: fused.sample(probs, 0, 0, 0, BATCH, 0, 0, 1), repeats)
        backprop = per_call(lambda: fused.gradients(W, np.zeros((1, 1), np.float32), b, imp, X, True, False, True), repeats)
        weights = fused.Weights(W[None].copy(), np.zeros((1, 1, 1), np.float32), b[None].copy())
        moments = fused.Moments(*(np.zeros_like(a) for a in (weights.W, weights.W, weights.W_out, weights.W_out, weights.b, weights.b)))
        stream = fused.Stream(probs[None], seed=0, first_instance=0, data_code=0, set_mode=0, set_size=1, batch=BATCH, normalize=False)
        model = fused.Model(imp[None], tied=True, hidden_relu=False, relu_out=True, abs_target=False)
        optimiser = fused.Optimiser(0.9, 0.999, 1e-8, 0.01, True)
        lanes, sparse = fused.plan(stream, 1)
        steps = 50
        losses = np.empty((steps, 1), np.float32)
        lrs = np.full(steps, 1e-3, np.float32)
        whole = per_call(
            lambda: fused.train_steps(weights, moments, stream, model, optimiser, 0, lrs, losses, lanes, sparse),
            max(2, repeats // steps),
        ) / steps
        macs = 5 * feat * hid * BATCH
        print(
            f"| {feat} → {hid} | {draw * 1e6:.1f} | {backprop * 1e6:.1f} | {whole * 1e6:.1f} "
            f"| {macs / backprop / 1e9:.1f} G |"
        )


if __name__ == "__main__":
    main()
