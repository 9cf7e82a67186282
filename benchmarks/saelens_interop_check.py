"""That SAELens reads a model we write: a toy run on synthetic data (trees, exclusive
siblings, a rank-2 copula, linear magnitudes) written with
`superposition export saelens`, loaded by SAELens's SyntheticModel.load_from_disk and
sampled by SAELens; its features' rates against ours, its trees obeyed, its feature
dictionary our W. Run in the benchmark venv (bash benchmarks/saelens_venv.sh):

    .bench-venv/bin/python benchmarks/saelens_interop_check.py
"""

import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from sae_lens.synthetic import SyntheticModel

import superposition as sp
from superposition.saes import saelens

ROWS = 200_000

with tempfile.TemporaryDirectory() as scratch:
    keys = dict(features=12, hidden=4, data="synthetic", sparsity=[0.7], roots=2, branching=2, exclusive=True,
                correlation_rank=2, correlation_scale=0.3, magnitude="normal", magnitude_mean=2.0, magnitude_mean_end=1.0, steps=200)  # fmt: skip
    sp.train(sp.Config(**keys)).save(Path(scratch) / "run")
    subprocess.run([sys.executable, "-m", "superposition", "export", "saelens", str(Path(scratch) / "run"), "--out", str(Path(scratch) / "model")], check=True)
    theirs = SyntheticModel.load_from_disk(Path(scratch) / "model")
    torch.manual_seed(0)
    hidden, features = theirs.sample_with_features(ROWS)
    features = features.to_dense() if features.is_sparse else features
    on = features != 0
    ours = saelens.SAELensSource(saelens.read(Path(scratch) / "model"), "cpu")
    x = ours.inputs(1, ROWS, 0)[0]
    run = sp.load_run(Path(scratch) / "run")
    assert torch.equal(theirs.feature_dict.feature_vectors.detach(), run.params["W"][0]), "feature dictionary"
    for child, parent in enumerate([-1, -1, 0, 0, 1, 1]):
        if parent >= 0:
            assert not (on[:, child] & ~on[:, parent]).any(), f"SAELens fired child {child} without parent {parent}"
    assert on[:, 2:4].sum(1).max() <= 1 and on[:, 4:6].sum(1).max() <= 1, "exclusive siblings"
    rate_theirs, rate_ours = on.double().mean(0), (x != 0).double().mean(0)
    se = (2 * rate_theirs * (1 - rate_theirs) / ROWS).sqrt()
    z = ((rate_ours - rate_theirs) / se).abs()
    print("rate, SAELens:", [round(v, 4) for v in rate_theirs.tolist()])
    print("rate, ours:   ", [round(v, 4) for v in rate_ours.tolist()])
    print(f"largest difference: {float(z.max()):.2f} standard errors")
    both = (on[:, 0] & on[:, 1]).double().mean() - rate_theirs[0] * rate_theirs[1]
    both_ours = ((x[:, 0] != 0) & (x[:, 1] != 0)).double().mean() - rate_ours[0] * rate_ours[1]
    print(f"covariance of the roots' firing (the copula): SAELens {float(both):+.4f}, ours {float(both_ours):+.4f}")
    assert float(z.max()) < 4, "rates differ"
    print("SAELens loads and samples our model as we draw it")
