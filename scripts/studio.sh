#!/usr/bin/env bash
# Set up (if needed) and launch the studio on http://127.0.0.1:8501 with the embedded default model.
#
#   bash scripts/studio.sh [--port 8501] [--address 127.0.0.1]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/rcsd app "$@"
