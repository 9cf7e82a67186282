"""Where a step of the compiled engine goes: kernels per step and the busiest kernels.

    python benchmarks/profile_compiled.py [--device cuda] [--configs B1,B2,B3,B4] [--steps 1000]

For each configuration of benchmarks/speed.py: steps/s of the compiled engine after its
warm-up, then torch.profiler over one call of 100 steps (one CUDA graph replay on a GPU):
the number of kernels launched per step and the kernels that take the most device time.
"""

from __future__ import annotations

import argparse
import time

import torch
from ours import problem
from speed import CONFIGS
from torch.profiler import ProfilerActivity, profile

from superposition.training import compiled
from superposition import data
from superposition.models import init_params, loss_weights
from superposition.training.steps import CHUNK


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--steps", type=int, default=1000)
    a = ap.parse_args()
    for name in a.configs.split(","):
        shape = CONFIGS[name]
        config = problem(shape["features"], shape["hidden"], shape["instances"], 1024, a.steps, 0, a.device, "compiled")
        device = torch.device(a.device)
        params = {k: v.to(device) for k, v in init_params(config, torch.Generator().manual_seed(0)).items()}
        probs, importance = data.feature_probability(config, device), loss_weights(config, device)
        run = compiled.fresh_stepper(params, probs, importance, config, 0)
        run(0, CHUNK)  # compile, capture
        start = time.perf_counter()
        for first in range(CHUNK, a.steps, CHUNK):
            run(first, CHUNK)
        rate = (a.steps - CHUNK) / (time.perf_counter() - start)
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with profile(activities=activities) as trace:
            run(0, CHUNK)
            if device.type == "cuda":
                torch.cuda.synchronize()
        events = trace.key_averages()
        kernels = sum(e.count for e in events if e.device_type == torch.autograd.DeviceType.CUDA)
        print(f"## {name}: {shape['instances']} x {shape['features']} -> {shape['hidden']} on {a.device}: {rate:,.0f} steps/s; "
              f"{kernels / CHUNK:.1f} kernels per step")  # fmt: skip
        sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
        print(events.table(sort_by=sort, row_limit=12, max_name_column_width=60))


if __name__ == "__main__":
    main()
