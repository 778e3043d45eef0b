#!/usr/bin/env bash
# The release run as one device command: train the basic model with the release recipe,
# evaluate it, and leave the int8 weights (in parts of at most 16 MiB) and the report in $OUT.
#
#   here:        bash benchmarks/prepare_device.sh
#   device run:  bash benchmarks/gpu_release.sh 6        (carry .device; about 8 minutes)
#   dry run:     bash benchmarks/gpu_release.sh --dry-run (seconds, any machine, no GPU)
#
# DATA (default .device/data) and OUT (default release_out) may be set in the environment.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
site=/tmp/histo-denoise-site
if compgen -G ".device/wheels/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$site" .device/wheels/*.whl
    export PYTHONPATH="src:$site"
else
    export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
fi
out=${OUT:-release_out}
mkdir -p "$out"
if [ "${1:-}" = "--dry-run" ]; then
    args=(--dry-run)
else
    args=(--minutes "${1:-6}")
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || true
python3 benchmarks/release.py --data "${DATA:-.device/data}" --out "$out" \
    --scratch /tmp/histo-denoise-scratch "${args[@]}" 2>&1 | tee "$out/log.txt"
