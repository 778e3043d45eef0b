#!/usr/bin/env bash
# Prepare what a GPU device run carries (run here, where PyPI is reachable):
#   .device/wheels  the packages the device's image lacks, as Python 3.12 wheels
#   .device/data    the training and validation images (histo-denoise fetch-data)
# Usage: bash benchmarks/prepare_device.sh [DATA]   (DATA: an existing fetch-data folder to copy)
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned to what the tests run with; --no-deps: each one the image lacks is named.
wheels=(dask==2026.8.0 partd==1.4.2 locket==1.0.0 zarr==3.1.6 numcodecs==0.16.6
        donfig==0.8.1.post1 google-crc32c==1.9.0 imagecodecs==2026.3.6 PyWavelets==1.9.0)
rm -rf .device/wheels
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .device/wheels "${wheels[@]}"

if [ $# -ge 1 ]; then
    rm -rf .device/data && mkdir -p .device/data
    cp -r "$1/train" "$1/val" .device/data/
else
    histo-denoise fetch-data .device/data
fi
du -sh .device/wheels .device/data
