"""What keeping checkpoints costs a run: the seed's 20 -> 5 model, 5 instances, 10,000 steps on
the fused engine, without checkpoints and with 50 (each copied out between kernel calls),
alternating in one process. `python benchmarks/checkpoint_cost.py`"""

import time

import superposition as sp

BASE = dict(features=20, hidden=5, sparsity=[0, 0.7, 0.9, 0.99, 0.999], steps=10_000, engine="fused", device="cpu")
sp.train(sp.Config(**{**BASE, "steps": 100}), progress=False)  # the kernel loads once, outside the timing
times: dict[str, list[float]] = {"none": [], "50": []}
for _ in range(3):
    for name, keys in (("none", {}), ("50", {"checkpoints": 50})):
        started = time.perf_counter()
        sp.train(sp.Config(**BASE, **keys), progress=False)
        times[name].append(time.perf_counter() - started)
for name, seconds in times.items():
    print(f"checkpoints {name:>4}: {sorted(seconds)[1]:.3f} s (median of {len(seconds)})")
