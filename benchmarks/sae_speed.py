"""SAE training speed: our `superposition sae` beside the plain loop people write.

    python benchmarks/sae_speed.py [--steps 1000] [--repeats 3]

The problems S1-S3 of issue 11, each run by ../shared/bench/naive_sae.py (autograd,
torch.optim.Adam, decoder rows renormalised every step) and by our command with the
same data, SAE, loss and optimiser (no resampling, as the plain loop has none), one
after the other in this process's machine, alternating. Printed per problem: the
training loop's steps per second (naive: its own timer; ours: train_seconds from
metrics.json, after the compiled kernel was loaded from its cache), the whole
command's wall time (Python start, imports, training, scoring, writing), and the
median MMCS over instances after the same number of steps.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NAIVE = Path(__file__).resolve().parents[2] / "shared" / "bench" / "naive_sae.py"
PROBLEMS = {
    "S1": {"instances": 16, "features": 5, "dims": 2, "latents": 10, "density": 0.1, "l1": 0.05, "batch-size": 1024},
    "S2": {"instances": 8, "features": 64, "dims": 16, "latents": 128, "density": 0.02, "l1": 0.01, "batch-size": 1024},
    "S3": {"instances": 1, "features": 512, "dims": 256, "latents": 1024, "density": 0.01, "l1": 0.01, "batch-size": 256},
}


def flags(problem: dict) -> list[str]:
    return [part for key, value in problem.items() for part in (f"--{key}", str(value))]


def naive(problem: dict, steps: int) -> tuple[float, float, float]:
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, str(NAIVE), *flags(problem), "--steps", str(steps), "--device", "cpu"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    wall = time.perf_counter() - started
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result["steps_per_second"], wall, statistics.median(result["mmcs"])


def ours(problem: dict, steps: int, scratch: Path) -> tuple[float, float, float]:
    out = scratch / "sae"
    command = [sys.executable, "-m", "superposition", "sae", "--data", "dictionary", *flags(problem)]
    command += ["--steps", str(steps), "--no-resample", "--device", "cpu", "--no-figures", "--quiet", "--out", str(out)]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    wall = time.perf_counter() - started
    metrics = json.loads((out / "metrics.json").read_text())
    return steps / metrics["train_seconds"], wall, statistics.median(row["mmcs"] for row in metrics["instances"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        ours(PROBLEMS["S1"], 10, Path(scratch))  # fills the numba cache
        print("| problem | naive steps/s | ours steps/s | loop speed-up | naive command s | ours command s | naive MMCS | ours MMCS |")
        print("|---|---|---|---|---|---|---|---|")
        for name, problem in PROBLEMS.items():
            runs = {"naive": [], "ours": []}
            for _ in range(args.repeats):
                runs["naive"].append(naive(problem, args.steps))
                runs["ours"].append(ours(problem, args.steps, Path(scratch)))
            n = [statistics.median(column) for column in zip(*runs["naive"])]
            o = [statistics.median(column) for column in zip(*runs["ours"])]
            print(f"| {name} | {n[0]:.0f} | {o[0]:.0f} | {o[0] / n[0]:.1f}x | {n[1]:.2f} | {o[1]:.2f} | {n[2]:.3f} | {o[2]:.3f} |")


if __name__ == "__main__":
    main()
