#!/usr/bin/env bash
# Build the one-folder desktop bundle from this checkout, or smoke-check a built one.
#   bash scripts/bundle.sh            build env (build/bundle-venv) + bundle -> dist/model-surgery-workbench/
#   bash scripts/bundle.sh --check    run the built bundle through packaging/check_bundle.py
#   bash scripts/bundle.sh --check DIR   the same for a bundle elsewhere
# The build environment is a regular (non-editable) install of the project with the GUI extra and
# PyInstaller: an editable install maps plugins/ to workbench_plugins through an import hook that
# PyInstaller cannot follow, and the bundle would miss every built-in plugin.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=$ROOT/build/bundle-venv
DIST=$ROOT/dist
NAME=model-surgery-workbench
PY=${PYTHON:-python3}
# The same torch pair as scripts/setup.sh (the CUDA builds from PyPI; they run on CPU-only machines too).
TORCH_PINS=("torch==2.14.*" "torchvision==0.29.*")
PYINSTALLER_PINS=("pyinstaller>=6.10" "pyinstaller-hooks-contrib>=2024.8")

check() {
  local bundle=${1:-$DIST/$NAME}
  # The check drives the bundle from the test environment, which has the photos (scikit-image).
  local checker=$ROOT/.venv/bin/python
  [ -x "$checker" ] || { bash scripts/setup.sh; }
  exec "$checker" packaging/check_bundle.py "$bundle"
}

if [ "${1:-}" = "--check" ]; then
  check "${2:-}"
fi
if [ $# -gt 0 ]; then
  echo "error: bundle.sh: unknown argument '$1' (use no argument to build, or --check [BUNDLE_DIR])" >&2
  exit 2
fi

started=$(date +%s)
if [ ! -x "$VENV/bin/python" ]; then
  free_mib=$(df -Pm . | awk 'NR==2 {print $4}')
  if [ "${free_mib:-0}" -lt 20000 ]; then
    echo "bundle: only ${free_mib} MiB free; the build environment (~6.2 GB) and the bundle (~4.4 GB) need ~11 GB" >&2
  fi
  "$PY" -m venv "$VENV" || { rm -rf "$VENV"; echo "bundle: could not create $VENV with $PY" >&2; exit 1; }
fi
stamp=$VENV/.deps-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ "$0" -nt "$stamp" ]; then
  echo "bundle: installing the build environment in $VENV (torch, the GUI extra, PyInstaller)…"
  "$VENV/bin/python" -m pip install -q --upgrade pip "setuptools>=69" wheel
  # Dependencies first, from a wheel of this checkout (pip reuses what its cache already holds).
  "$VENV/bin/python" -m pip install -q "${TORCH_PINS[@]}" "${PYINSTALLER_PINS[@]}" "$ROOT[gui]"
  touch "$stamp"
fi
# The project itself on every build: a regular install of the current sources (never editable).
# setuptools builds in build/lib and never removes a file deleted from the sources: start clean.
rm -rf "$ROOT/build/wheel" "$ROOT/build/lib"
"$VENV/bin/python" -m pip wheel -q --no-deps --no-build-isolation -w "$ROOT/build/wheel" "$ROOT"
"$VENV/bin/python" -m pip install -q --no-deps --force-reinstall "$ROOT"/build/wheel/*.whl

echo "bundle: running PyInstaller (10-15 minutes on 2 cores)…"
# The console script, not `python -m`: the working directory must not shadow the installed packages.
"$VENV/bin/pyinstaller" packaging/workbench.spec --noconfirm --log-level WARN \
  --distpath "$DIST" --workpath "$ROOT/build/pyinstaller"
size=$(du -sh "$DIST/$NAME" | cut -f1)
echo "bundle: built in $(( $(date +%s) - started )) s: $DIST/$NAME/$NAME ($size)"
echo "bundle: check it with: bash scripts/bundle.sh --check"
