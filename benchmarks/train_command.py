"""Wall time of `superposition train` with its defaults, and with --figures, and where it goes.

    python benchmarks/train_command.py [--repeats 5]

First the whole command, N times each way (alternating), each in a fresh process
with the numba cache warm (one unmeasured run fills it). Then, in one fresh process,
the same work phase by phase: the imports of the heavy libraries, training (loading
the compiled kernel from its cache, 10,000 steps of 5 instances, the evaluation),
writing the run's files, and drawing the three figures that --figures adds.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PHASES = r"""
import json, sys, tempfile, time
from pathlib import Path
marks = [("start", time.perf_counter())]
import torch; marks.append(("import torch", time.perf_counter()))
import numba; marks.append(("import numba", time.perf_counter()))
import superposition as sp
from superposition import cli, runs, kernel, runs)"
from superposition.kernels import fused
from superposition.training; marks import append(("import superposition (cli
from superposition.time import perf_counter()))
import matplotlib.figure; from superposition import plots; marks.append(("import matplotlib", time.perf_counter()))
config = sp.Config(device="cpu")
run = sp.train(config, progress=False); marks.append(("train 10,000 steps x 5 instances and evaluate", time.perf_counter()))
directory = Path(tempfile.mkdtemp())
run.write(directory, figures=False); marks.append(("write config, weights, metrics, history", time.perf_counter()))
plots.write_figures(run.config, run.params, directory); marks.append(("draw the three figures of --figures", time.perf_counter()))
print(json.dumps([(name, b - a) for (_, a), (name, b) in zip(marks, marks[1:])]))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    command = [sys.executable, "-m", "superposition", "train", "--quiet"]
    ways = {"defaults": [], "--figures": ["--figures"]}
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "run"
        subprocess.run([*command, "--out", str(out)], check=True, capture_output=True)  # fills the cache
        walls: dict[str, list[float]] = {way: [] for way in ways}
        for _ in range(args.repeats):
            for way, flags in ways.items():
                started = time.perf_counter()
                subprocess.run([*command, *flags, "--out", str(out)], check=True, capture_output=True)
                walls[way].append(time.perf_counter() - started)
        history = (out / "history.safetensors").stat().st_size
    phases = json.loads(subprocess.run([sys.executable, "-c", PHASES], check=True, capture_output=True, text=True).stdout)
    for way, seconds in walls.items():
        print(f"superposition train ({way}): median {statistics.median(seconds):.2f} s, runs {', '.join(f'{w:.2f}' for w in seconds)}")
    print(f"history.safetensors: {history} bytes for 10,000 steps x 5 instances ({history / 50_000:.3f} bytes per instance-step)")
    for name, seconds in phases:
        print(f"  {name:<48} {seconds:6.2f} s")
    print(f"  {'sum of the phases':<48} {sum(s for _, s in phases):6.2f} s")


if __name__ == "__main__":
    main()
