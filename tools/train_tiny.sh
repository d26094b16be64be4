#!/usr/bin/env bash
# The main job: set up .venv/ if needed, then train the tiny model on the default corpus on the CPU
# (extra arguments go to experiments/olmo_tiny.py, e.g. --max_duration=100).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
exec .venv/bin/python experiments/olmo_tiny.py "$@"
