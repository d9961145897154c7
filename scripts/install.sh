#!/usr/bin/env bash
# Install napari-tubediff from this checkout on a fresh machine.
#   bash scripts/install.sh         the package with napari and PyQt6 (extra "all")
#   bash scripts/install.sh --dev   also the test tools (extra "dev") and, as root with
#                                   apt-get, the Xvfb/OpenGL/xcb packages headless Qt tests need
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
extras="all"
if [ "${1:-}" = "--dev" ]; then
  extras="all,dev"
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      xvfb xauth libgl1 libegl1 libgl1-mesa-dri libglib2.0-0 libfontconfig1 libdbus-1-3 \
      libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 \
      libxcb-render-util0 libxcb-xinerama0 libxcb-shape0 libxcb-xfixes0 libxcb-cursor0 >/dev/null
  elif ! command -v xvfb-run >/dev/null; then
    echo "note: xvfb-run not found; install Xvfb (Debian: xvfb xauth) to run the GUI tests headless" >&2
  fi
fi
# torch first: an existing build (CPU or CUDA, the user's choice) is kept; otherwise
# torch==2.13.0, pinned so that no newer multi-GB CUDA build is pulled in.
if ! "$PY" -c "import torch" 2>/dev/null; then
  "$PY" -m pip install -q "torch==2.13.0"
fi
"$PY" -m pip install -q -c .ci/constraints.txt -e ".[${extras}]"
