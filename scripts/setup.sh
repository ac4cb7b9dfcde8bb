#!/usr/bin/env bash
# Set up everything napari-nucleus-ai needs on a Debian/Ubuntu machine, idempotently:
#   1. the system libraries a real (headless) napari needs: Xvfb, Mesa OpenGL, xcb (apt; skipped
#      when already present or when not root and no sudo),
#   2. a virtual environment in .venv (override with VENV=path),
#   3. PyTorch: a CUDA build where an NVIDIA GPU is present, the CPU build elsewhere
#      (a local CPU wheel from $PIP_FIND_LINKS if there is one, else the PyTorch CPU index),
#   4. the plugin itself, editable, with a Qt binding and the test tools.
# Re-running it does only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}

APT_PKGS="xvfb xauth libgl1-mesa-dri libegl1 libxkbcommon-x11-0 libxcb-icccm4 libxcb-keysyms1 \
libxcb-image0 libxcb-render-util0 libxcb-xinerama0 libxcb-shape0 libxcb-randr0 libxcb-xfixes0 \
libxcb-xkb1 libxcb-cursor0 libdbus-1-3 libfontconfig1"

missing=""
if command -v dpkg-query >/dev/null 2>&1; then
  for p in $APT_PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
  done
fi
if [ -n "$missing" ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  if [ -z "$SUDO" ] || command -v sudo >/dev/null 2>&1; then
    echo "setup: installing system packages:$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
  else
    echo "setup: please install these system packages first:$missing" >&2
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV"
  "$PY" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip"
# pip's notes about local package folders that do not hold a package are noise here
quiet() { "$@" 2> >(grep -v "is ignored: it is neither" >&2); }

if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "setup: NVIDIA GPU found; installing PyTorch with CUDA"
    quiet $PIP install -q "torch>=2.2"
  else
    wheel=""
    for d in ${PIP_FIND_LINKS:-}; do
      for w in "$d"/torch-*+cpu-*.whl; do [ -e "$w" ] && wheel="$w"; done
    done
    if [ -n "$wheel" ]; then
      echo "setup: no NVIDIA GPU; installing the local CPU build $(basename "$wheel")"
      quiet $PIP install -q "$wheel"
    else
      echo "setup: no NVIDIA GPU; installing the CPU build of PyTorch"
      quiet $PIP install -q torch --index-url "${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"
    fi
  fi
fi

# Re-install the plugin only when its requirements changed.
stamp="$VENV/.napari-nucleus-ai-setup"
want=$(cat pyproject.toml | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing napari-nucleus-ai (editable) with Qt and test tools"
  quiet $PIP install -q -e ".[all,testing]"
  echo "$want" > "$stamp"
fi
echo "setup: ready ($("$VENV/bin/python" -c 'import torch, napari; print("torch", torch.__version__, "| napari", napari.__version__)'))"

# --backbones: a second environment for the published backbones (timm's DenseNet-121, ResNeXt-50,
# EfficientNet). timm imports torchvision, and torchvision must match torch exactly, which the CPU
# torch above has no torchvision for; so these live in their own venv (several GB: torch here is
# the build that has a matching torchvision on PyPI). Override the pins with BACKBONES_TORCH.
if [ "${1:-}" = "--backbones" ]; then
  BVENV=${BACKBONES_VENV:-.venv-backbones}
  case "$(uname -m)" in
    aarch64|arm64) pins_default="torch==2.9.1 torchvision==0.24.1" ;;
    *) pins_default="torch==2.14.1 torchvision==0.29.1" ;;
  esac
  pins=${BACKBONES_TORCH:-$pins_default}
  [ -x "$BVENV/bin/python" ] || { echo "setup: creating $BVENV"; "$PY" -m venv "$BVENV"; }
  BPIP="$BVENV/bin/python -m pip"
  if ! "$BVENV/bin/python" -c "import timm, torchvision" >/dev/null 2>&1; then
    echo "setup: installing $pins and timm into $BVENV"
    quiet $BPIP install -q $pins "timm>=0.9"
  fi
  bstamp="$BVENV/.napari-nucleus-ai-setup"
  if [ ! -f "$bstamp" ] || [ "$(cat "$bstamp")" != "$want" ]; then
    quiet $BPIP install -q -e ".[all,backbones,testing]" $pins
    echo "$want" > "$bstamp"
  fi
  echo "setup: backbones ready ($("$BVENV/bin/python" -c 'import torch, torchvision, timm; print("torch", torch.__version__, "| torchvision", torchvision.__version__, "| timm", timm.__version__)'))"
fi
