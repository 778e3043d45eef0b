"""``histo-denoise before-after``: a noisy / denoised / clean picture of a real tissue crop.

By default the crop comes from the bottom half of the bundled CMU-1 slide (nuclei and
stroma; the bundled weights never saw that slide) and is denoised with the bundled
weights: the README's picture. Any image, position, noise level and weights can be
given instead. The three panels are shown at full resolution (one image pixel per
picture pixel) and labelled with their PSNR against the clean crop.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..samples import SAMPLE, SAMPLE_CROP_AT


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``before-after`` subcommand."""
    parser = subparsers.add_parser(
        "before-after",
        help="picture of a noisy, a denoised and the clean crop side by side, with PSNR",
        description="Add Gaussian noise (fixed seed) to a crop of a clean image, denoise it "
        "through the tiled engine and write noisy | denoised | clean at full resolution, "
        "labelled with PSNR. Defaults: the bundled weights and a crop of the bundled CMU-1 "
        "slide's bottom half.",
    )
    parser.add_argument(
        "--image", type=Path, help="clean image (level 0 of a slide); default the bundled CMU-1"
    )
    parser.add_argument(
        "--at",
        nargs=2,
        type=int,
        metavar=("Y", "X"),
        help=f"top-left corner of the crop (default {SAMPLE_CROP_AT[0]} {SAMPLE_CROP_AT[1]} for "
        "the bundled slide, else the image's centre)",
    )
    parser.add_argument("--crop", type=int, default=384, help="side of the crop in pixels")
    parser.add_argument("--sigma", type=float, default=25.0, help="noise std (0-255 scale)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise")
    parser.add_argument("--model", choices=("basic", "deep"), default="basic")
    parser.add_argument("--weights", type=Path, help="weights file (default: the bundled ones)")
    parser.add_argument("--tile-size", type=int, default=256)
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "-o", "--output", type=Path, default=Path("before_after.jpg"), help=".jpg or .png"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Cut, add noise, denoise, write the picture and print the PSNRs."""
    from ..checkpoint import file_sha256
    from ..engine import denoise
    from ..figures import image_grid, write_image
    from ..metrics import psnr
    from ..pretrained import bundled_weights
    from ..samples import noisy_crop

    weights = args.weights or bundled_weights(args.model)
    image = args.image or SAMPLE
    size = args.crop
    clean, noisy, (y, x) = noisy_crop(size, args.sigma, args.seed, args.image, args.at)
    denoised = denoise(
        noisy, args.model, weights, tile_size=args.tile_size, device=args.device
    ).compute()

    scores = [psnr(clean, noisy), psnr(clean, denoised)]
    labels = [
        f"noisy (Gaussian, sigma {args.sigma:g}): {scores[0]:.2f} dB",
        f"denoised ({args.model}): {scores[1]:.2f} dB",
        "clean",
    ]
    footer = (
        f"{image.name}, {size} x {size} px at y {y}, x {x} (level 0), full resolution; "
        f"weights {Path(weights).name} (SHA-256 {file_sha256(weights)[:12]})"
    )
    picture = image_grid([[noisy, denoised, clean]], column_labels=labels, footer=footer)
    write_image(args.output, picture)
    print(f"PSNR against the clean crop: noisy {scores[0]:.2f} dB, denoised {scores[1]:.2f} dB")
    print(f"wrote {args.output}")
    return 0
