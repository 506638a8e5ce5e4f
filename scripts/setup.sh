#!/usr/bin/env bash
# Create .venv and install the workbench with its GUI and test extras (idempotent).
# torch 2.14 + torchvision 0.29 (CUDA builds from PyPI; they run fine on a CPU-only machine).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.workbench-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q "torch==2.14.*" "torchvision==0.29.*" -e ".[gui,test]"
  touch "$stamp"
fi
