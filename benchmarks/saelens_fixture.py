"""Write tests/fixtures/saelens-synthetic: a small SAELens SyntheticModel, saved by SAELens
itself, and beside it what SAELens computes from it (`saelens_reference.safetensors`): its
per-feature magnitudes and, over 200,000 of its own samples, each feature's firing rate and
the mean and second moment of its hidden activations. tests/test_saelens.py reads the
model as an SAE source and checks our draws against these.

    .bench-venv/bin/python benchmarks/saelens_fixture.py     # (bash benchmarks/saelens_venv.sh first)
"""

from pathlib import Path

import torch
from safetensors.torch import save_file
from sae_lens.synthetic import (
    FoldedNormalMagnitudeConfig,
    HierarchyConfig,
    LinearMagnitudeConfig,
    LowRankCorrelationConfig,
    SyntheticModel,
    SyntheticModelConfig,
    ZipfianFiringProbabilityConfig,
)

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "saelens-synthetic"
SAMPLES = 200_000

config = SyntheticModelConfig(
    num_features=24,
    hidden_dim=8,
    firing_probability=ZipfianFiringProbabilityConfig(exponent=0.5, max_prob=0.4, min_prob=0.02),
    hierarchy=HierarchyConfig(total_root_nodes=2, branching_factor=3, max_depth=1, mutually_exclusive_portion=1.0, compensate_probabilities=True),
    correlation=LowRankCorrelationConfig(rank=3, correlation_scale=0.1),
    mean_firing_magnitudes=LinearMagnitudeConfig(start=2.0, end=1.0),
    std_firing_magnitudes=FoldedNormalMagnitudeConfig(mean=0.3, std=0.2),
    bias=0.5,
    seed=7,
)
model = SyntheticModel(config, device="cpu")
model.save(OUT)
loaded = SyntheticModel.load_from_disk(OUT)
torch.manual_seed(0)
hidden, features = loaded.sample_with_features(SAMPLES)
features = features.to_dense() if features.is_sparse else features
generator = loaded.activation_generator
save_file(
    {
        "mean_firing_magnitudes": generator.mean_firing_magnitudes.float().contiguous(),
        "std_firing_magnitudes": generator.std_firing_magnitudes.float().contiguous(),
        "firing_rate": (features != 0).float().mean(0),
        "hidden_mean": hidden.mean(0),
        "hidden_square": (hidden**2).mean(0),
    },
    OUT / "saelens_reference.safetensors",
)
print(f"wrote {OUT}")
