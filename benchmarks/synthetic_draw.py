"""How fast `synthetic` data draws: a SynthSAEBench-shaped config (Zipf firing 0.4 to 5e-4
with exponent 0.5, trees of 4 children down 3 levels with exclusive siblings, compensated
and scaled, a rank-25 copula, normal magnitudes with linear means and folded-normal
spreads) at n features, 1,024 rows per batch, with the counter stream's hash as one numba
loop (ours) and as torch's passes over int64 tensors (what it was), alternating in one
process. Printed: milliseconds per batch, median of the repeats.

    python benchmarks/synthetic_draw.py [--features 2048 4096] [--repeats 5]
"""

import argparse
import statistics
import time

import torch

import superposition as sp
from superposition.data import batch, stream


def config(n: int) -> sp.Config:
    return sp.Config(
        features=n, hidden=96, data="synthetic", firing="zipf", firing_max=0.4, firing_min=5e-4, zipf_exponent=0.5,
        roots=max(1, n // 128), branching=4, depth=3, exclusive=True, compensate=True, scale_children=True, correlation_rank=25,
        magnitude="normal", magnitude_mean=5.0, magnitude_mean_end=4.0, magnitude_std=0.5, magnitude_std_spread=0.5,
    )  # fmt: skip


def timed(c: sp.Config, repeats: int) -> float:
    p, ids = torch.tensor(c.feature_probability), torch.arange(1)
    batch(c, p, ids, 0, 1024)
    times = []
    for step in range(repeats):
        started = time.perf_counter()
        batch(c, p, ids, step, 1024)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--features", type=int, nargs="+", default=[2048, 4096])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    numba_path = stream._on_numba
    for n in args.features:
        c = config(n)
        rows = {"numba": [], "torch": []}
        for _ in range(3):
            stream._on_numba = numba_path
            rows["numba"].append(timed(c, args.repeats))
            stream._on_numba = lambda keys: False
            rows["torch"].append(timed(c, args.repeats))
        stream._on_numba = numba_path
        ours, before = statistics.median(rows["numba"]), statistics.median(rows["torch"])
        print(f"{n} features: {ours:.0f} ms per batch with the numba hash, {before:.0f} ms with torch's ({before / ours:.1f}x)")


if __name__ == "__main__":
    main()
