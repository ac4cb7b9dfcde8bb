#!/usr/bin/env bash
# One command: set up (idempotent) and run the demo. Extra arguments go to `napari-nucleus-ai demo`,
# e.g. `bash scripts/demo.sh --screenshot demo.png`. Without a display it runs under xvfb-run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${VENV:-.venv}
if [ -z "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
  exec xvfb-run -a -s "-screen 0 1920x1200x24" "$VENV/bin/napari-nucleus-ai" demo "$@"
fi
exec "$VENV/bin/napari-nucleus-ai" demo "$@"
