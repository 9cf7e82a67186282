"""occhio's ModelGrid on naive_reference.py's problem, printing the same JSON line.

    python benchmarks/occhio_grid.py --features 20 --hidden 5 --instances 10 --steps 2000

Needs occhio (`pip install occhio`, an optional extra: `pip install -e '.[bench]'`).
One grid axis, density 20^-linspace(0, 1, instances); TiedLinearRelu models,
importance 0.9^i, AdamW lr 1e-3 wd 0.01, batch 1024. ModelGrid keeps no per-model
loss history, so "final_loss" here is each model's loss on a fresh batch of 8,192
after training (divided by the number of features, to match the others' mean), not
the mean over the last 10% of training steps that the other two scripts report.
"""

import argparse
import json
import time

import torch
from occhio import ModelGrid, ToyModel
from occhio.autoencoder import TiedLinearRelu
from occhio.distributions.sparse import SparseUniform
from occhio.model_grid import Axis


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--features", type=int, default=20)
    ap.add_argument("--hidden", type=int, default=5)
    ap.add_argument("--instances", type=int, default=10)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    torch.manual_seed(a.seed)
    importance = 0.9 ** torch.arange(a.features, dtype=torch.float32)
    density = (20 ** -torch.linspace(0, 1, a.instances)).tolist()

    generator = torch.Generator().manual_seed(a.seed)  # ModelGrid wants every distribution seeded

    def create_model(params):
        return ToyModel(
            SparseUniform(a.features, p_active=params["density"], generator=generator),
            TiedLinearRelu(a.features, a.hidden, generator=generator),
            importances=importance,
        )

    grid = ModelGrid(create_model, axes=[Axis(label="density", values=density)])
    start = time.perf_counter()
    grid.fit(n_epochs=a.steps, batch_size=1024, learning_rate=1e-3, weight_decay=0.01)
    seconds = time.perf_counter() - start
    losses = []
    with torch.no_grad():
        for model in grid.models.ravel():
            x = model.distribution.sample(8192)
            x_hat, _ = model.ae(x)
            losses.append(model.ae.loss(x, x_hat, importance).item() / a.features)
    print(json.dumps({"steps_per_second": a.steps / seconds, "seconds": seconds, "final_loss": losses}))


if __name__ == "__main__":
    main()
