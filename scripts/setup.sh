#!/usr/bin/env bash
# Create .venv and install the workbench with its GUI and test extras (idempotent).
# torch 2.14 + torchvision 0.29 (CUDA builds from PyPI; they run fine on a CPU-only machine).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  free_mib=$(df -Pm . | awk 'NR==2 {print $4}')
  if [ "${free_mib:-0}" -lt 10000 ]; then
    echo "setup: only ${free_mib} MiB free on this disk; the environment (torch's CUDA build) takes ~7 GB" \
         "and the tests write ~2 GB at a time." >&2
  fi
  "$PY" -m venv .venv || { rm -rf .venv; echo "setup: could not create .venv with $PY (disk full?)" >&2; exit 1; }
fi
stamp=.venv/.workbench-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q "torch==2.14.*" "torchvision==0.29.*" -e ".[gui,test]"
  touch "$stamp"
fi
