"""What a first run pays: each engine's one-time compile, on a cold cache and then warm.

    python benchmarks/first_compile.py

Each job runs twice as a fresh `superposition` process, with numba's and Inductor's
caches pointed at a new empty directory: the first run compiles and fills the cache,
the second loads from it. The difference is the compile. Run on an idle machine;
the jobs run one after another.
"""

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLI = [sys.executable, "-m", "superposition"]
SMALL = ["--steps", "100", "--device", "cpu", "--quiet"]
JOBS = {
    "fused (toy models)": ["train", *SMALL, "--engine", "fused"],
    "fused, finite data": ["train", *SMALL, "--engine", "fused", "--features", "100", "--hidden", "2", "--sparsity", "0.99", "--dataset-size", "100"],
    "SAE fused": ["sae", "--data", "dictionary", "--features", "8", "--dims", "2", *SMALL, "--engine", "fused"],
    "compiled (torch.compile, Inductor)": ["train", *SMALL, "--engine", "compiled"],
}


def wall(args: list[str], out: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([*CLI, *args, "--out", str(out)], check=True, env=env, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    print("job: cold (compiles) / warm (cache) seconds of the whole command")
    for name, args in JOBS.items():
        with tempfile.TemporaryDirectory() as scratch:
            env = {**os.environ, "NUMBA_CACHE_DIR": f"{scratch}/numba", "TORCHINDUCTOR_CACHE_DIR": f"{scratch}/inductor"}
            cold = wall(args, Path(scratch) / "a", env)
            warm = wall(args, Path(scratch) / "b", env)
        print(f"  {name:36s} {cold:6.1f} / {warm:5.1f}  (compile about {cold - warm:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
