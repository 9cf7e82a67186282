"""Our trainer beside the plain loop people write today, on the same machine, in turns.

    python benchmarks/speed.py [--steps 2000] [--seeds 0,1,2] [--configs B1,B2,B3,B4] [--markdown FILE]
                               [--device cuda --engine compiled] [--jax-python PYTHON]

For each config and seed it runs ../shared/bench/naive_reference.py and
benchmarks/ours.py one after the other (never at once: two torch processes on 2
cores slow each other down), each in a fresh process, and prints a table:
steps/s of each, the ratio, the final loss (mean over the last 10% of steps, the
naive script's measure) and each process's peak resident memory. Where occhio is
installed (`pip install -e '.[bench]'`, or another interpreter given by
--occhio-python) its ModelGrid runs in turn too (benchmarks/occhio_grid.py); with
--jax-python, so does ../shared/bench/jax_reference.py (the loop compiled whole by
jax.jit over lax.scan: the peer to beat on a GPU; its steps/s exclude its compilation).
On a GPU: `--device cuda --engine compiled` (issue 13).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
NAIVE = HERE.parent.parent / "shared" / "bench" / "naive_reference.py"
JAX = NAIVE.with_name("jax_reference.py")
# target: our speed-up over the naive loop on the CPU (issue 3); on a GPU, issue 13's (B3 has
# none there: only the JAX loop's speed)
CONFIGS = {
    "B1": {"instances": 10, "features": 5, "hidden": 2, "target": 10, "gpu_target": 20},
    "B2": {"instances": 10, "features": 20, "hidden": 5, "target": 10, "gpu_target": 20},
    "B3": {"instances": 20, "features": 100, "hidden": 20, "target": 5, "gpu_target": None},
    "B4": {"instances": 100, "features": 20, "hidden": 5, "target": 5, "gpu_target": 20},
}


def run(script: Path, config: dict, steps: int, seed: int, extra: list[str], python: str = sys.executable) -> dict:
    """Run one benchmark process; return its JSON line plus its peak RSS (from wait4)."""
    args = [
        python, str(script),
        "--features", str(config["features"]), "--hidden", str(config["hidden"]),
        "--instances", str(config["instances"]), "--steps", str(steps), "--seed", str(seed), *extra,
    ]  # fmt: skip
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(args, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(process.pid, 0)  # wait4, not wait: it gives this child's rusage
        out.seek(0)
        err.seek(0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{script.name} failed: {err.read().strip()}")
        result = json.loads(out.read().strip().splitlines()[-1])
    result["peak_rss_mib"] = usage.ru_maxrss / 1024
    return result


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def gpu_name(device: str) -> str:
    if device != "cuda":
        return ""
    import torch

    return f" ({torch.cuda.get_device_name()})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--markdown", type=Path, help="Also write the table to this file.")
    ap.add_argument("--occhio-python", help="Interpreter with occhio installed (default: this one, if it has occhio).")
    ap.add_argument("--jax-python", help="Interpreter with jax and optax: run jax_reference.py in turn too.")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--engine", default="fused", help="Our engine (fused on the CPU, compiled on CUDA).")
    a = ap.parse_args()
    occhio = a.occhio_python or (sys.executable if importlib.util.find_spec("occhio") else None)
    seeds = [int(s) for s in a.seeds.split(",")]
    device, jax = a.device, a.jax_python
    lines = [
        f"Machine: {cpu_name()}, {os.cpu_count()} cores; torch threads as each script sets them; "
        f"batch 1024, {a.steps} steps, seeds {a.seeds}; device {device}{gpu_name(device)}; our engine {a.engine}.",
        "",
        "| config | instances | n → m | naive steps/s | ours steps/s | ratio (target) | naive loss | ours loss | worst instance loss ratio | naive peak MiB | ours peak MiB |"
        + (" occhio steps/s | ours / occhio | occhio loss (eval) |" if occhio else "")
        + (" jax steps/s | ours / jax | jax loss |" if jax else ""),
        "|---|---|---|---|---|---|---|---|---|---|---|" + ("---|---|---|" if occhio else "") + ("---|---|---|" if jax else ""),
    ]
    for name in a.configs.split(","):
        config = CONFIGS[name]
        naive, ours, grid, compiled = [], [], [], []
        for seed in seeds:  # in turns, so drift in the machine's speed hits all alike
            naive.append(run(NAIVE, config, a.steps, seed, ["--device", device]))
            ours.append(run(HERE / "ours.py", config, a.steps, seed, ["--device", device, "--engine", a.engine]))
            if occhio:
                grid.append(run(HERE / "occhio_grid.py", config, a.steps, seed, [], occhio))
            if jax:
                compiled.append(run(JAX, config, a.steps, seed, [], jax))
        speed_naive = statistics.median(r["steps_per_second"] for r in naive)
        speed_ours = statistics.median(r["steps_per_second"] for r in ours)
        # mean over seeds of each instance's final loss, then compare instance by instance
        per_instance = lambda runs: [statistics.mean(v) for v in zip(*(r["final_loss"] for r in runs))]  # noqa: E731
        loss_naive, loss_ours = per_instance(naive), per_instance(ours)
        worst = max(o / n for o, n in zip(loss_ours, loss_naive))
        goal = config["gpu_target" if device == "cuda" else "target"]
        target = f" (≥ {goal}x)" if goal else ""
        lines.append(
            f"| {name} | {config['instances']} | {config['features']} → {config['hidden']} "
            f"| {speed_naive:,.0f} | {speed_ours:,.0f} | {speed_ours / speed_naive:.1f}x{target} "
            f"| {statistics.mean(loss_naive):.5f} | {statistics.mean(loss_ours):.5f} | {worst:.3f} "
            f"| {max(r['peak_rss_mib'] for r in naive):.0f} | {max(r['peak_rss_mib'] for r in ours):.0f} |"
        )
        if occhio:
            speed_grid = statistics.median(r["steps_per_second"] for r in grid)
            lines[-1] += (
                f" {speed_grid:,.0f} | {speed_ours / speed_grid:.1f}x "
                f"| {statistics.mean(statistics.mean(r['final_loss']) for r in grid):.5f} |"
            )
        if jax:
            speed_jax = statistics.median(r["steps_per_second"] for r in compiled)
            lines[-1] += (
                f" {speed_jax:,.0f} | {speed_ours / speed_jax:.2f}x "
                f"| {statistics.mean(statistics.mean(r['final_loss']) for r in compiled):.5f} |"
            )
        print(lines[-1], flush=True)
    table = "\n".join(lines)
    print()
    print(table)
    if a.markdown:
        a.markdown.write_text(table + "\n")


if __name__ == "__main__":
    main()
