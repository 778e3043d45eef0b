"""What the no-harm figure means on each scored image: a slight blur against the model.

    python benchmarks/no_harm_reference.py --data DATA [--weights W]

No harm is PSNR(model(clean), clean) on the ship check's clean tissue crops (four 256 px
crops, seed 0). As a yardstick, the same figure for a Gaussian blur of 0.5 and 0.7 px, which
no one would call harmful, and for the weights (default: the best held), with the weights'
output also measured against the 0.7 px blur and with its mean colour shift removed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from skimage.filters import gaussian

from napari_histo_denoise.cli.ship_check import HELD_OUT, VALIDATION
from napari_histo_denoise.engine import denoise
from napari_histo_denoise.evaluation import tissue_crops
from napari_histo_denoise.metrics import psnr
from napari_histo_denoise.pretrained import best_basic_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="from histo-denoise fetch-data")
    parser.add_argument("--weights", type=Path, help="default: the best basic weights held")
    args = parser.parse_args()
    weights = args.weights or best_basic_weights()
    print(f"weights: {Path(weights).name}; PSNR against the clean crop (dB), min-max of 4 crops\n")
    heads = ("blur 0.5 px", "blur 0.7 px", "model", "model less its colour shift")
    print(f"| image | {' | '.join(heads)} | model vs blur 0.7 |")
    print("|---|---:|---:|---:|---:|---:|")
    for image in (HELD_OUT, VALIDATION):
        crops = [c for *_, c in tissue_crops([str(args.data / image)], 256, 4, seed=0)]
        columns: list[list[float]] = [[] for _ in range(5)]
        for clean in crops:
            out = np.asarray(denoise(clean.astype(np.float32), "basic", weights))
            blur = [gaussian(clean, s, channel_axis=-1) for s in (0.5, 0.7)]
            shift = (out - clean).reshape(-1, 3).mean(0)
            for column, value in zip(
                columns,
                (psnr(clean, blur[0]), psnr(clean, blur[1]), psnr(clean, out),
                 psnr(clean, out - shift), psnr(blur[1], out)),
                strict=True,
            ):  # fmt: skip
                column.append(value)
        cells = " | ".join(f"{min(c):.1f}-{max(c):.1f}" for c in columns)
        print(f"| {Path(image).name} | {cells} |")


if __name__ == "__main__":
    main()
