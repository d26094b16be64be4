#!/usr/bin/env bash
# The GPU check (`python tools/bench.py gpu`) on a bare device machine (one H200); its log, its JSON line and
# nvidia-smi's report go to $OUT (runs/gpu_check without it). Any arguments go to the check.
#
# That machine's python3 has torch with CUDA and transformers, but not tyro, torchdata or torchao (nor perhaps
# a typing-extensions as new as typeguard's), and it reaches no registry. So, once, here (the wheels go to
# .whl/, which git is told to ignore):
#     tools/gpu_check.sh fetch
# then the device tool's call (the check ends within ~8 minutes; this script stops it at 570 s regardless):
#     run(command="bash tools/gpu_check.sh", timeout_s=600, carry=[".whl"])
# Without CUDA it ends at once with the check's one-line refusal and exit status 1.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
wheels=(tyro==1.0.17 docstring-parser==0.18.0 typeguard==4.6.1 typing-extensions==4.16.0 torchdata==0.11.0
    torchao==0.18.0)
if [ "${1:-}" = fetch ]; then
    exclude=$(git rev-parse --git-path info/exclude)
    mkdir -p "$(dirname "$exclude")"
    grep -qxF /.whl/ "$exclude" 2>/dev/null || echo /.whl/ >>"$exclude"
    "$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl "${wheels[@]}"
    exit 0
fi
if [ -d .whl ] && nvidia-smi -L >/dev/null 2>&1; then  # the device machine: elsewhere .venv has them
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
out=${OUT:-runs/gpu_check}
mkdir -p "$out"
nvidia-smi >"$out/nvidia-smi.txt" 2>&1 || true
status=0
timeout 570 "$python" tools/bench.py gpu "$@" 2>&1 | tee "$out/gpu_check.log" || status=$?
grep '^{"bench": "gpu-check"' "$out/gpu_check.log" >"$out/gpu_check.json" || true
exit "$status"
