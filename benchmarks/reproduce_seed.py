"""Wall time of `superposition reproduce seed` (what `make demo` runs), numba cache warm.

    python benchmarks/reproduce_seed.py [--repeats 3]

The preset trains 2 nets x 2 procedures (warm start, fresh) x 5 seeds x 5 sparsities:
100 instance-runs of 10,000 steps. One unmeasured run fills the numba cache, then N
runs in fresh processes; the preset's own wall time (reproduction.json) is printed
beside the process's, so imports and figures can be told apart from training.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    command = [sys.executable, "-m", "superposition", "reproduce", "seed", "--quiet"]
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "seed"
        subprocess.run([*command, "--out", str(out)], check=True, capture_output=True)
        walls, inside = [], []
        for _ in range(args.repeats):
            started = time.perf_counter()
            subprocess.run([*command, "--out", str(out)], check=True, capture_output=True)
            walls.append(time.perf_counter() - started)
            inside.append(json.loads((out / "reproduction.json").read_text())["wall_seconds"])
    print(f"reproduce seed: median {statistics.median(walls):.1f} s, runs {', '.join(f'{w:.1f}' for w in walls)}")
    print(f"  of which the preset itself (training, metrics, figures): median {statistics.median(inside):.1f} s")


if __name__ == "__main__":
    main()
