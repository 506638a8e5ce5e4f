#!/usr/bin/env bash
# Set up (if needed) and open the workbench window on its built-in demo:
# EfficientNet-Lite0 with ImageNet weights from an installed package + scikit-learn's handwritten digits,
# ready to press Train. No download.
# Pass --headless to train and export in the terminal instead.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/workbench demo "$@"
