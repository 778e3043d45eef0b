"""The blind noise estimate against the true sigma, on H&E crops of the bundled CMU-1 slide.

    python benchmarks/noise_estimate.py [--crops 4] [--size 512]

For each true sigma (0, 5, 15, 25, 50 on the 8-bit scale) and noise kind (Gaussian, and
Poisson-Gaussian of that std at mid-grey), noise with a fixed seed is added to each crop and
:func:`napari_histo_denoise.noise_level.estimate_noise` (8 tiles of 256 px) estimates it. The
table gives the mean and the range over the crops; sigma 0 is the slide's own noise floor.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from napari_histo_denoise.evaluation import tissue_crops
from napari_histo_denoise.noise import parse_noise
from napari_histo_denoise.noise_level import estimate_noise

SLIDE = Path(__file__).resolve().parents[1] / "src/napari_histo_denoise/data/cmu1_small_region.svs"
SIGMAS = (0, 5, 15, 25, 50)
KINDS = ("gaussian", "poisson-gaussian")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crops", type=int, default=4)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    crops = [c for *_, c in tissue_crops([str(SLIDE)], args.size, args.crops, seed=1)]
    print(f"{len(crops)} tissue crops of {args.size} px from {SLIDE.name}; mean [min-max]\n")
    print("| true sigma | " + " | ".join(f"estimate, {k}" for k in KINDS) + " |")
    print("|---:|" + "---:|" * len(KINDS))
    for sigma in SIGMAS:
        cells = []
        for kind in KINDS:
            values = [
                estimate_noise(parse_noise(f"{kind}:{sigma}")(c, i) if sigma else c).sigma
                for i, c in enumerate(crops)
            ]
            cells.append(f"{np.mean(values):.1f} [{min(values):.1f}-{max(values):.1f}]")
        print(f"| {sigma} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
