#!/usr/bin/env bash
# Wheels of what the lent GPU machines' image lacks for `pip install -e '.[dev]'` (the image
# has torch, Triton, JAX, optax, numba, numpy, pandas, matplotlib, safetensors, rich,
# jaxtyping, pytest, hypothesis: ../.library/device/KINDS.md), for its Python 3.12 on
# x86-64 Linux, at this checkout's .venv's versions, into .whl (kept out of git), which
# benchmarks/gpu_session.sh installs there. Run it here, where pip reaches the registry.
set -eu
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude
names="pydantic pydantic_core annotated_types typing_inspection typer click
  dask distributed locket partd tblib zict tornado tzdata
  nbclient nbformat fastjsonschema jsonschema jsonschema_specifications referencing rpds_py
  jupyter_client jupyter_core platformdirs pyzmq traitlets ipykernel comm debugpy ipython
  ipython_pygments_lexers jedi parso matplotlib_inline nest_asyncio2 pexpect ptyprocess
  prompt_toolkit wcwidth stack_data asttokens executing pure_eval importlib_metadata lazy_importer"
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_26_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux_2_5_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
for name in $names; do
  version=$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('$name'))")
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d "${WHEELS:-.whl}" "$name==$version" 2>&1 | grep -v "is ignored" || true
done
du -sh "${WHEELS:-.whl}"
