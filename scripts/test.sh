#!/usr/bin/env bash
# Set up (if needed), run the static checks, then the whole test suite headless.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "ruff (lint, import order)…"
.venv/bin/ruff check --quiet .
echo "import-linter (layer contracts)…"
.venv/bin/lint-imports --no-cache > /dev/null || .venv/bin/lint-imports --no-cache
echo "mypy (workbench/, plugins/)…"
# plugins/ installs as `workbench_plugins`; mypy finds it under that name through this link (mypy_path).
mkdir -p build/ns && ln -sfn ../../plugins build/ns/workbench_plugins && ln -sfn ../../ui build/ns/workbench_ui
.venv/bin/mypy --no-error-summary
export QT_QPA_PLATFORM=offscreen HF_HUB_OFFLINE=1
exec .venv/bin/python -m pytest -q "$@"
