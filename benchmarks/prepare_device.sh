#!/usr/bin/env bash
# Prepare what a GPU device run carries besides the repository (run here, where PyPI is
# reachable); with the release candidate the working tree stays under the 64 MiB a run takes:
#   .device/wheels  the packages the device's image lacks, as Python 3.12 wheels
#   .device/data    the training images and the validation image, the CMU-1 slide as a
#                   lossless PNG (so that the 26 MB imagecodecs wheel can stay behind)
# Usage: bash benchmarks/prepare_device.sh [DATA]   (DATA: an existing fetch-data folder to copy)
# The classical baselines need PyWavelets and bm3d, which do not fit beside the candidate:
# gpu_release.sh scores none of them, and `histo-denoise evaluate` scores them here.
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned to what the tests run with; --no-deps: each one the image lacks is named.
wheels=(dask==2026.8.0 partd==1.4.2 locket==1.0.0 donfig==0.8.1.post1)
if [ $# -ge 1 ] && [[ "$(realpath "$1")/" == "$(realpath -m .device)/"* ]]; then
    echo "DATA must not lie inside .device (it is made anew): $1" >&2
    exit 2
fi
rm -rf .device
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    -d .device/wheels "${wheels[@]}"

if [ $# -ge 1 ]; then
    mkdir -p .device/data && cp -r "$1/train" .device/data/
    svs="$1/val/cmu1_small_region.svs"
else
    histo-denoise fetch-data .device/data
    svs=.device/data/val/cmu1_small_region.svs
fi
mkdir -p .device/data/val
python3 - "$svs" .device/data/val/cmu1_small_region.png <<'PY'
import sys

import numpy as np
from PIL import Image

from napari_histo_denoise.training import load_images

(level0,), _ = load_images([sys.argv[1]])
pixels = np.asarray(level0)[..., :3]
Image.fromarray(pixels).save(sys.argv[2], compress_level=9)
assert np.array_equal(np.asarray(Image.open(sys.argv[2])), pixels), "PNG differs from the slide"
PY
rm -f .device/data/val/cmu1_small_region.svs
du -sh .device/*
