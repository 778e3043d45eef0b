#!/usr/bin/env bash
# The release run as one device command: train the basic model with the release recipe,
# evaluate it, and leave the int8 weights (in parts of at most 16 MiB) and the report in $OUT.
#
#   here:        bash benchmarks/prepare_device.sh
#   device run:  bash benchmarks/gpu_release.sh 6 [release.py options]   (carry .device)
#   dry run:     bash benchmarks/gpu_release.sh --dry-run                 (seconds, no GPU)
#
# A device run trains MINUTES (6: about 7 minutes in all on an H200), going on from the
# release candidate (release_candidate/, with --lr 5e-4 --clean-fraction 0.25), and scores no classical baseline (their packages stay
# behind; `histo-denoise evaluate` scores them on a CPU). Options after MINUTES go to
# release.py and win over these.
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
data=${DATA:-.device/data}
out=${OUT:-release_out}
mkdir -p "$out"
vals=("$data"/val/*)  # the one validation image: the slide, or the PNG prepare_device.sh made
[ -f "${vals[0]}" ] || { echo "no validation image in $data/val" >&2; exit 2; }
val=val/$(basename "${vals[0]}")
if [ "${1:-}" = "--dry-run" ]; then
    args=(--dry-run)
else
    args=(--minutes "${1:-6}" --baselines none)
    init=release_candidate/basic.int8.safetensors
    # a warm restart: a lower peak learning rate, a quarter of the patches clean
    [ -f "$init" ] && args+=(--init-weights "$init" --lr 5e-4 --clean-fraction 0.25)
fi
args+=("${@:2}")
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || true
python3 benchmarks/release.py --data "$data" --val "$val" --out "$out" \
    --scratch /tmp/histo-denoise-scratch "${args[@]}" 2>&1 | tee "$out/log.txt"
