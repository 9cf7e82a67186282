"""Training on a finite set (issue 12): the compiled sparse step beside autograd.

    python benchmarks/finite_speed.py [--steps 300]   (paper-size problems: a tenth of it)

For each problem, the same config (tied ReLU model, unit-norm examples, full batch,
AdamW) is trained by our fused engine (dataset_fused.py: sparse inputs, only the
outputs a ReLU lets through) and by our reference engine (torch autograd on the dense
set: the loop of the ARENA exercise and of the public replications), one after the
other, in one process. The kernel is compiled (or loaded from its cache) before the
clock starts. Printed: milliseconds per step per instance, the ratio, and the largest
difference between the two engines' weights at the end (summation order differs; Adam
turns the rounding of a near-zero gradient into a step of up to ~lr, so it grows with
the steps, while the median difference stays ~1e-6).

The state of the model changes the sparse step's cost (how many outputs are active),
so each problem first trains WARM steps with the fused engine and both engines go on
from there.
"""

import argparse
import time

import torch

import superposition as sp
from superposition.training import loop as training

PROBLEMS = {  # features, sparsity, T, hidden
    "ARENA T=200": (1_000, 0.99, 200, 2),
    "ARENA T=2,000": (1_000, 0.99, 2_000, 2),
    "paper T=1,000": (10_000, 0.999, 1_000, 2),
    "paper T=10,000": (10_000, 0.999, 10_000, 2),
    "paper m=3 T=3,000": (10_000, 0.999, 3_000, 3),  # m >= 3: the dense pass, not the tree
    "paper m=5 T=3,000": (10_000, 0.999, 3_000, 5),
}
WARM = 2_000


def config(features: int, sparsity: float, T: int, hidden: int, steps: int, engine: str) -> sp.Config:
    return sp.Config(
        features=features, hidden=hidden, sparsity=[sparsity], importance_decay=1.0, dataset_size=T, batch_size=T,
        normalize=True, steps=steps, lr=1e-3, weight_decay=1e-2, engine=engine, device="cpu", eval_batch_size=100,
    )  # fmt: skip


def timed(cfg: sp.Config, params: dict) -> tuple[float, dict]:
    """Seconds per step of `cfg` from `params` (a copy is trained)."""
    import numpy as np

    from superposition.models import loss_weights
    from superposition.training import dataset

    own = {k: v.clone() for k, v in params.items()}
    examples = dataset.training_set(cfg)
    importance = loss_weights(cfg)
    maker = training._fused_dataset_stepper if cfg.engine == "fused" else training._reference_dataset_stepper
    step = maker(own, examples, [0], importance, cfg)
    step(0, 1)  # compile or load, allocate
    started = time.perf_counter()
    step(1, cfg.steps)
    seconds = (time.perf_counter() - started) / cfg.steps
    assert np.isfinite(own["W"].detach().numpy()).all()
    return seconds, {k: v.detach() for k, v in own.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(1)  # one instance, one core, for both engines
    print(f"{'problem':>18} | {'reference ms/step':>17} | {'fused ms/step':>13} | {'ratio':>6} | steps | max |Δ| weights")
    for name, (features, sparsity, T, hidden) in PROBLEMS.items():
        steps = args.steps if features < 10_000 else max(1, args.steps // 10)
        warm = training.train(config(features, sparsity, T, hidden, WARM, "fused")).params
        reference, ref_params = timed(config(features, sparsity, T, hidden, steps, "reference"), warm)
        fused, fused_params = timed(config(features, sparsity, T, hidden, steps, "fused"), warm)
        gap = max(float((ref_params[k] - fused_params[k]).abs().max()) for k in warm)
        print(f"{name:>18} | {reference * 1e3:17.3f} | {fused * 1e3:13.3f} | {reference / fused:5.1f}x | {steps:5d} | {gap:.1e}")


if __name__ == "__main__":
    main()
