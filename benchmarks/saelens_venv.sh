#!/usr/bin/env bash
# The benchmark venv beside ours: SAELens (never a dependency of the package), on the same
# CPU torch, for benchmarks/saelens_side_by_side.py and the SyntheticModel interop checks.
#   bash benchmarks/saelens_venv.sh        # creates .bench-venv (git-ignored)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.bench-venv
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q torch==2.13.0   # the CPU build first: an unpinned torch pulls a CUDA build
"$VENV/bin/pip" install -q "sae-lens==6.54.12"
"$VENV/bin/pip" install -q -e .             # ours too, so one process can time both
"$VENV/bin/python" -c "import sae_lens, superposition; print('sae-lens', sae_lens.__version__)"
