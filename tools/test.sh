#!/usr/bin/env bash
# Set up .venv/ if needed, then run the whole test suite (extra arguments go to pytest).
# As root on Debian it also installs chromium, which the Aim UI test drives headless.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium for the Aim UI test (apt-get)..."
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null
fi
exec .venv/bin/python -m pytest "$@"
