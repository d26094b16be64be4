#!/usr/bin/env bash
# Set up .venv/ if needed, then run the whole test suite (extra arguments go to pytest).
# As root on Debian it also installs chromium, which the Aim UI test drives headless, and slurm-wlm + munge,
# which the launcher tests start as a two-node cluster (tools/local_slurm.sh; stopped when the tests end).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
missing=""
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v slurmctld >/dev/null 2>&1 || missing="$missing slurm-wlm"
command -v munged >/dev/null 2>&1 || missing="$missing munge"
if [ -n "$missing" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing$missing for the Aim UI and Slurm launcher tests (apt-get)..."
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing) \
        >/dev/null
fi
exec .venv/bin/python -m pytest "$@"
