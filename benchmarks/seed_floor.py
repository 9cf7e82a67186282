"""How fast `superposition reproduce seed` could be on this machine: a lower bound.

    python benchmarks/seed_floor.py

Counts the preset's work from its own settings (experiments/seed.py): instance-steps,
the multiply-adds of the five batch-long products per step (fewer where the kernel
trains only the non-empty rows), and the random numbers drawn. Then prices them
generously on this machine's 2 cores:

- multiply-adds at one core's single-precision matrix-product peak, as MKL reaches it
  on 2048 x 2048 matrices (the kernel's 1024 x 20 x 5 products cannot get there);
- the draw at the kernel's own measured cost per number (the data stream that every
  engine shares), without the seed's row scaling;
- nothing at all for Adam, the losses, compaction, threads, metrics or figures; of
  what is not training, only the imports (timed in a fresh process).

Printed beside them: what the kernel's dense step costs today, and torch's batched
product at the kernel's shape.
"""

import subprocess
import sys
import time

import numba
import numpy as np
import torch
from numba import njit
from profile_fused import per_call

from superposition.kernels import fused
from superposition.experiments import seed

CORES = 2


@njit
def draw_steps(probs, batch, steps, data_code):
    """The kernel's own draw for `steps` steps, in one compiled call (no Python, no allocation per step)."""
    X = np.empty((probs.shape[0], batch), np.float32)
    for s in range(steps):
        fused._draw(X, probs, fused.step_key(0, 0, s), data_code, 0, 1)
    return X


def main() -> None:
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    s = seed.SETTINGS
    feat, hid, batch, steps = s["features"], s["hidden"], s["batch_size"], s["steps"]
    runs = len(seed.MODELS) * len(seed.PROCEDURES) * seed.REPLICATES  # instance-runs per sparsity
    densities = np.array([1 - x for x in s["sparsity"]], np.float32)
    stream = fused.Stream(densities[:, None].repeat(feat, 1), 0, 0, fused.SEED, 0, 1, batch, False)
    empty = fused.empty_share(stream)
    rows = np.where(empty >= fused.EMPTY_ROWS, 1 - empty, 1.0)  # share of each step's rows trained
    macs = runs * steps * 5 * feat * hid * batch * rows.sum()
    draws = runs * steps * len(densities) * feat * batch

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    peak = 2048**3 / per_call(lambda: torch.mm(a, b), 10)
    x, w = torch.rand(25, batch, feat), torch.randn(25, feat, hid)
    bmm = 25 * batch * feat * hid / per_call(lambda: torch.bmm(x, w), 2000)
    probs = np.full(feat, 0.3, np.float32)
    draw = per_call(lambda: draw_steps(probs, batch, 2_000, fused.PAPER), 5) / (2_000 * feat * batch)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import superposition.cli, superposition.experiments.seed"], check=True)
    imports = time.perf_counter() - started

    print(f"work: {runs * steps * len(densities):,} instance-steps, {macs:.3g} multiply-adds, {draws:.3g} random numbers")
    print(f"one core: matrix-product peak {peak / 1e9:.1f} G multiply-adds/s (2048 x 2048 sgemm); torch.bmm at the kernel's shape {bmm / 1e9:.1f} G/s")
    print(f"one core: the draw {draw * 1e9:.2f} ns per number (its hash alone, no row scaling)")
    products, drawing = macs / (CORES * peak), draws * draw / CORES
    print(f"lower bound on {CORES} cores: products {products:.1f} s + draws {drawing:.1f} s + imports {imports:.1f} s = {products + drawing + imports:.1f} s")


if __name__ == "__main__":
    main()
