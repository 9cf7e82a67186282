"""Ours beside SAELens's synthetic trainer, on the same synthetic model and the same SAE.

    .bench-venv/bin/python benchmarks/saelens_side_by_side.py [--steps 1000]   # bash benchmarks/saelens_venv.sh first

For each size, SAELens builds a SyntheticModel (Zipf firing 0.4 to 0.005, exponent 0.5,
magnitude 1, random directions, no bias) and saves it; SAELens's `train_toy_sae` trains
its SAE on that model's generator, and `superposition sae --data DIR` trains ours on the
same model read from disk (saes/saelens.py), one after the other in this process's
machine: the same width, k, steps, batch (1,024) and Adam lr (3e-4, SAELens's); no
resampling on ours (SAELens has none). Kinds: BatchTopK at k = the true L0, and ReLU
(L1: SAELens's default 1.0 on its loss; ours twice, at our default 0.3/d and at 1/d,
which is SAELens's objective on our loss: theirs sums the squared error over d_in, ours
takes its mean).

Printed per (size, kind): training steps per second (theirs: the wall time of
train_toy_sae; ours: train_seconds in metrics.json), and MCC, F1 and explained variance
(theirs: eval_sae_on_synthetic_data on 100,000 samples; ours: metrics.json on 10,000).
With --seeds N each side trains N SAEs per row (seeds 0 … N - 1, one after the other):
the median steps/s, the mean scores and the MCC's standard deviation.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from sae_lens import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig, StandardTrainingSAE, StandardTrainingSAEConfig
from sae_lens.synthetic import SyntheticModel, SyntheticModelConfig, ZipfianFiringProbabilityConfig, eval_sae_on_synthetic_data, train_toy_sae

SIZES = {"256 in 32, width 128": (256, 32, 128), "1,024 in 64, width 512": (1024, 64, 512)}
LR, BATCH = 3e-4, 1024


def theirs(model: SyntheticModel, kind: str, dims: int, width: int, k: float, steps: int, seed: int) -> dict:
    torch.manual_seed(seed)
    if kind == "batchtopk":
        sae = BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(d_in=dims, d_sae=width, k=k))
    else:
        sae = StandardTrainingSAE(StandardTrainingSAEConfig(d_in=dims, d_sae=width))
    started = time.perf_counter()
    train_toy_sae(sae, model.feature_dict, model.activation_generator, training_samples=steps * BATCH, batch_size=BATCH, lr=LR)
    seconds = time.perf_counter() - started
    result = eval_sae_on_synthetic_data(sae, model.feature_dict, model.activation_generator, num_samples=100_000)
    return {"steps/s": steps / seconds, "mcc": result.mcc, "f1": result.classification.f1_score, "ve": result.explained_variance, "l0": result.sae_l0}


def ours(directory: Path, kind: str, width: int, k: float, steps: int, seed: int, l1: float | None = None) -> dict:
    out = directory / f"ours-{kind}-{l1}-{seed}"
    setting = ["--k", str(k)] if kind == "batchtopk" else ["--l1", str(l1)] if l1 is not None else []
    subprocess.run(
        [sys.executable, "-m", "superposition", "sae", "--data", str(directory / "model"), "--kind", kind, *setting, "--latents", str(width),
         "--steps", str(steps), "--lr", str(LR), "--batch-size", str(BATCH), "--no-resample", "--seed", str(seed), "--out", str(out), "--no-figures", "--quiet"],
        check=True, capture_output=True,
    )  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    row = metrics["instances"][0]
    return {"steps/s": steps / metrics["train_seconds"], "mcc": row["mcc"], "f1": row["f1"], "ve": row["variance_explained"], "l0": row["l0"], "engine": metrics["engine"]}

def summary(runs: list[dict]) -> dict:
    """Steps/s: the median over seeds; scores: the mean (MCC also its spread)."""
    mean = {key: statistics.fmean(r[key] for r in runs) for key in ("mcc", "f1", "ve", "l0")}
    spread = statistics.stdev(r["mcc"] for r in runs) if len(runs) > 1 else 0.0
    return {**mean, "mcc_sd": spread, "steps/s": statistics.median(r["steps/s"] for r in runs), "engine": runs[0].get("engine")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=1, help="SAEs per side and row, seeds 0 … seeds - 1 (the same SyntheticModel)")
    args = parser.parse_args()
    seeds = range(args.seeds)
    print("| size | kind | SAELens steps/s | ours steps/s | ratio | SAELens MCC / F1 / VE / L0 | ours MCC / F1 / VE / L0 |")
    print("|---|---|---|---|---|---|---|")
    for name, (features, dims, width) in SIZES.items():
        with tempfile.TemporaryDirectory() as scratch:
            directory = Path(scratch)
            config = SyntheticModelConfig(
                num_features=features, hidden_dim=dims, seed=0, bias=0.0,
                firing_probability=ZipfianFiringProbabilityConfig(exponent=0.5, max_prob=0.4, min_prob=0.005),
            )  # fmt: skip
            model = SyntheticModel(config, device="cpu")
            model.save(directory / "model")
            probs = model.activation_generator.firing_probabilities
            k = round(float(probs[:width].sum()), 2)  # the top `width` features' expected L0
            for kind in ("batchtopk", "relu"):
                a = summary([theirs(model, kind, dims, width, k, args.steps, seed) for seed in seeds])
                # ReLU twice: our default L1, and SAELens's objective (its L1 of 1 on an error summed over d_in is 1/d on our mean)
                for label, l1 in [("", None)] + ([(" (l1 = 1/d, SAELens's objective)", 1 / dims)] if kind == "relu" else []):
                    b = summary([ours(directory, kind, width, k, args.steps, seed, l1) for seed in seeds])
                    spread = (lambda r: f" ± {r['mcc_sd']:.3f}") if args.seeds > 1 else (lambda r: "")
                    scores = lambda r: f"{r['mcc']:.3f}{spread(r)} / {r['f1']:.3f} / {r['ve']:.3f} / {r['l0']:.1f}"
                    print(f"| {name} | {kind}{f' k={k}' if kind == 'batchtopk' else label} | {a['steps/s']:.0f} | {b['steps/s']:.0f} ({b['engine']}) | "
                          f"{b['steps/s'] / a['steps/s']:.2f}x | {scores(a)} | {scores(b)} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
