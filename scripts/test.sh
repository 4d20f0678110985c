#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite, browser tests included.
#
#   bash scripts/test.sh [pytest args]
#
# The browser tests drive Debian's chromium headless; as root this installs it with apt-get when
# it is missing (never a downloaded browser build). pytest's "no tests collected" (exit 5) is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) >/dev/null
fi
export RCSD_CACHE=${RCSD_CACHE:-$HOME/.cache/rcsd}
set +e
.venv/bin/python -m pytest "$@"
code=$?
set -e
if [ "$code" -eq 5 ]; then
    echo "pytest collected no tests: failing" >&2
    exit 1
fi
exit "$code"
