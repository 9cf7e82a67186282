#!/usr/bin/env bash
# Issue 13's device check, prepared for a lent GPU machine; run from the repo's root:
#   bash benchmarks/gpu_wheels.sh                      here, once: wheels of what the image lacks
#   run: bash benchmarks/gpu_session.sh tests speed    carry [".whl"], timeout_s 580
#   run: bash benchmarks/gpu_session.sh profile        on the same warm machine (Inductor's cache)
#   run: bash benchmarks/gpu_session.sh suite          the whole `make test` there (~10 min)
# tests: tests/test_compiled.py, Inductor and CUDA-graph tests included. speed: the B1-B4
# table, one seed, 10,000 steps (a run's one CUDA-graph capture is counted): our compiled engine, naive_reference.py --device cuda and
# jax_reference.py in turn. profile: kernels per step and the busiest kernels.
# Everything also lands in $OUT.
set -u
export PYTHONUNBUFFERED=1
out=${OUT:-/tmp/gpu-session}
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee -a "$out/machine.txt"
PREFIX=$(python3 -c 'import sys; print(sys.prefix)')
python3 -c 'import superposition' 2>/dev/null ||
  python3 -m pip install -q --no-index --find-links .whl --no-build-isolation -e '.[dev]' 2>&1 | grep -v -i warning | tail -5
python3 -c 'import torch, jax, superposition; print("torch", torch.__version__, "jax", jax.__version__, "superposition", superposition.__version__)' \
  | tee -a "$out/machine.txt" || exit 3
for phase in "${@:-tests}"; do
  start=$(date +%s)
  case "$phase" in
    tests)
      timeout 220 python3 -m pytest -q -p no:cacheprovider -rs tests/test_compiled.py 2>&1 | tail -8 | tee "$out/tests.txt" ;;
    speed)
      timeout 330 python3 benchmarks/speed.py --device cuda --engine compiled --jax-python python3 \
        --steps 10000 --seeds 0 --markdown "$out/table.md" 2>&1 | tail -12 | tee "$out/speed.txt" ;;
    profile)
      (cd benchmarks && timeout 300 python3 profile_compiled.py --device cuda) > "$out/profile.txt" 2>&1
      grep -A 16 "^## " "$out/profile.txt" | cut -c1-160 ;;
    suite)
      touch "$PREFIX/.installed" "$PREFIX/.installed-dev"
      mkdir -p /tmp/noapt && printf '#!/bin/sh\nexit 1\n' > /tmp/noapt/apt-get && chmod +x /tmp/noapt/apt-get
      PATH=/tmp/noapt:$PATH PYTEST_ADDOPTS="--durations=20 -p no:cacheprovider" timeout "${SUITE_LIMIT:-560}" \
        make test VENV="$PREFIX" 2>&1 | tee "$out/make-test.log" | tail -40 ;;
    *) echo "unknown phase $phase: tests, speed, profile or suite"; exit 2 ;;
  esac
  echo "phase $phase: $(( $(date +%s) - start )) s"
done
