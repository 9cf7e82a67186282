"""Check, with the real sae-lens, that `superposition export saelens SAE_DIR` writes what
`sae_lens.SAE.load_from_disk` loads and that it encodes and decodes as ours does. Run in the
benchmark venv (`bash benchmarks/saelens_venv.sh`), never in the package's:

    .bench-venv/bin/python benchmarks/saelens_sae_check.py
"""

import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from sae_lens import SAE

import superposition as sp

SETTINGS = {"relu": {"l1": [0.01]}, "topk": {"k": [2]}, "jumprelu": {"l0": [0.01]}, "batchtopk": {"k": [1.5]}, "matryoshka": {"k": [1.5]}}

with tempfile.TemporaryDirectory() as scratch:
    for kind, setting in SETTINGS.items():
        sae = sp.train_sae(data="dictionary", features=16, dims=8, density=0.1, kind=kind, steps=300, device="cpu", **setting)
        sae.save(Path(scratch) / kind, figures=False)
        out = Path(scratch) / f"{kind}-lens"
        subprocess.run([sys.executable, "-m", "superposition", "export", "saelens", str(Path(scratch) / kind), "--out", str(out)], check=True, capture_output=True)
        loaded = SAE.load_from_disk(str(out), device="cpu")
        h = torch.rand(1, 512, 8) * (torch.rand(1, 512, 8) < 0.3)
        with torch.no_grad():
            theirs, ours = loaded.encode(h[0]), sae.encode(h)[0]
            error = (theirs - ours).abs().max().item()
            rebuilt = (loaded.decode(theirs) - sae.forward(h)[0]).abs().max().item()
        print(f"{kind:10s} -> {type(loaded).__name__:12s} active {int((ours > 0).sum()):5d}  max |encode difference| {error:.2e}  max |decode difference| {rebuilt:.2e}")
        assert error < 1e-5 and rebuilt < 1e-5, kind
print("every export loads in SAELens and computes as ours")
