#!/usr/bin/env bash
# One command: set up (idempotent), lint, and run the whole test suite under a virtual display.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k localizations`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${VENV:-.venv}
lint_dirs=$(ls -d src tests benchmarks 2>/dev/null)
"$VENV/bin/ruff" check $lint_dirs
"$VENV/bin/ruff" format --check $lint_dirs
# the package's layers (pyproject.toml [tool.importlinter]): imports only go down
"$VENV/bin/lint-imports" --no-cache
export NAPARI_NUCLEUS_AI_DEVICE=${NAPARI_NUCLEUS_AI_DEVICE:-cpu}
# The timm backbones need torch + a matching torchvision: their tests run first, in their own
# environment (scripts/setup.sh --backbones; several GB). BACKBONES=0 skips them.
if [ "${BACKBONES:-1}" != 0 ]; then
  bash scripts/setup.sh --backbones >/dev/null
  echo "test: the timm backbones, in ${BACKBONES_VENV:-.venv-backbones}"
  "${BACKBONES_VENV:-.venv-backbones}/bin/python" -m pytest -q -p no:cacheprovider \
    tests/test_backbones.py tests/test_bioimageio.py::test_backbone_exports_and_round_trips
fi
xvfb-run -a -s "-screen 0 1920x1200x24" "$VENV/bin/python" -m pytest "$@"
