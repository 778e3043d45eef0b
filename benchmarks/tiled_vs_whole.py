"""Tiled vs whole-image output of a trained model: how close the engine's tiling comes.

    python benchmarks/tiled_vs_whole.py --weights basic.safetensors [--size 1024]

Adds Gaussian noise (sigma 25, seed 0) to a crop of the bundled CMU-1 slide, denoises it once
as a whole image (one forward pass, eval mode, fp32 CPU) and once through the engine (tile 256,
overlap 32), and prints the PSNR of the tiled result against the whole-image result and the
relative error ||tiled - whole|| / ||whole - mean(whole)||.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from napari_histo_denoise.checkpoint import load_model
from napari_histo_denoise.engine import denoise
from napari_histo_denoise.io import read_image
from napari_histo_denoise.metrics import psnr
from napari_histo_denoise.noise import add_gaussian_noise

SAMPLE = (
    Path(__file__).resolve().parents[1] / "src/napari_histo_denoise/data/cmu1_small_region.svs"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True)
    parser.add_argument("--size", type=int, default=1024, help="crop side, a multiple of 16")
    parser.add_argument("--tile-size", type=int, default=256)
    parser.add_argument("--overlap", type=int, default=32)
    args = parser.parse_args()

    levels, _ = read_image(SAMPLE)
    slide = np.asarray(levels[0] if isinstance(levels, list) else levels)[..., :3]
    crop = slide[: args.size, : args.size].astype(np.float32) / 255
    noisy = add_gaussian_noise(crop, 25, seed=0).astype(np.float32)
    model, _ = load_model(args.weights)

    start = time.perf_counter()
    with torch.inference_mode():
        whole = model(torch.from_numpy(noisy).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
    whole_s = time.perf_counter() - start
    start = time.perf_counter()
    tiled = denoise(
        noisy, model, tile_size=args.tile_size, overlap=args.overlap, device="cpu"
    ).compute()
    tiled_s = time.perf_counter() - start

    rel = np.linalg.norm(tiled - whole) / np.linalg.norm(whole - whole.mean())
    print(f"crop {args.size} x {args.size}, tile {args.tile_size}, overlap {args.overlap}")
    print(f"whole image {whole_s:.1f} s, tiled {tiled_s:.1f} s")
    print(f"PSNR tiled vs whole: {psnr(whole, tiled):.2f} dB; relative error {rel:.2e}")
    print(f"PSNR vs clean: whole {psnr(crop, whole):.2f} dB, tiled {psnr(crop, tiled):.2f} dB")


if __name__ == "__main__":
    main()
