"""SAE training time with one core taken by another process, by thread count (issue 25, item 12).

    python benchmarks/loaded_threads.py [--steps 2000]

For each SAE job below, the fused engine's training loop (train_seconds, the kernel
loaded from its cache) with numba's threads forced to 1 and to 2, and with the
package's own choice (fused.free_cores: the cores no other process runs on), on an idle machine and beside a busy loop that keeps one core
occupied (a second Python process spinning). Run it on an otherwise idle machine.
"""

import argparse
import multiprocessing
import time

import numba

import superposition as sp
from superposition.kernels import fused

JOBS = {
    "pentagon (1 inst, 2 x 10)": {"instances": 1, "features": 5, "dims": 2, "latents": 10, "density": 0.1},
    "1 inst, 8 x 64": {"instances": 1, "features": 32, "dims": 8, "latents": 64, "density": 0.05},
    "1 inst, 16 x 128": {"instances": 1, "features": 64, "dims": 16, "latents": 128, "density": 0.02},
    "1 inst, 64 x 512": {"instances": 1, "features": 256, "dims": 64, "latents": 512, "density": 0.01},
    "2 inst, 16 x 128": {"instances": 2, "features": 64, "dims": 16, "latents": 128, "density": 0.02},
    "16 inst, 2 x 10 (S1)": {"instances": 16, "features": 5, "dims": 2, "latents": 10, "density": 0.1},
}


def spin() -> None:
    while True:
        pass


def seconds(job: dict, steps: int, threads: int | None) -> float:
    """train_seconds of one job on `threads` threads; None: the package's own choice."""
    available, choose = numba.get_num_threads(), fused.free_cores
    if threads is not None:
        numba.set_num_threads(threads)
        fused.free_cores = lambda cores: cores  # the threads given, whatever else runs
    try:
        sae = sp.train_sae(data="dictionary", steps=steps, device="cpu", engine="fused", resample=False, progress=False, **job)
    finally:
        numba.set_num_threads(available)
        fused.free_cores = choose
    return sae.metrics["train_seconds"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()
    print(f"numba threads available: {numba.get_num_threads()}; {args.steps} steps per job")
    for job in JOBS.values():
        seconds(job, 10, None)  # load every kernel specialisation before timing
    for load in ("idle", "one core busy"):
        busy = None
        if load != "idle":
            busy = multiprocessing.Process(target=spin, daemon=True)
            busy.start()
            time.sleep(0.5)
        print(f"\n{load}: seconds of the training loop, 1 thread / 2 threads / the package's choice (threads it chose)")
        for name, job in JOBS.items():
            one, two, auto = (seconds(job, args.steps, t) for t in (1, 2, None))
            chosen = fused.free_cores(numba.get_num_threads())
            print(f"  {name:28s} {one:7.3f} / {two:7.3f} / {auto:7.3f} ({chosen})  two/one {two / one:5.2f}")
        if busy is not None:
            busy.terminate()
            busy.join()


if __name__ == "__main__":
    main()
