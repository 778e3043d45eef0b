"""``histo-denoise estimate-noise``: how noisy an image is, before denoising it."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``estimate-noise`` subcommand."""
    parser = subparsers.add_parser(
        "estimate-noise",
        help="estimate an image's noise (0-255 scale) from a few tissue tiles",
        description="Estimate the standard deviation of an image's noise on the 8-bit scale "
        "(scikit-image's estimate_sigma on a few tissue tiles, their median), the same "
        "estimate the napari widget shows. Under 2 the image looks clean: denoising may "
        "soften detail.",
    )
    parser.add_argument("image", help="image or slide file (PNG, JPEG, TIFF, SVS, OME-Zarr, ...)")
    parser.add_argument("--tiles", type=int, default=8, help="tissue tiles measured")
    parser.add_argument("--tile", type=int, default=256, help="tile side in pixels")
    parser.add_argument("--json", action="store_true", help="print the estimate as JSON")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print the estimate."""
    from ..io import read_image
    from ..noise_level import estimate_noise

    image, _ = read_image(args.image)
    estimate = estimate_noise(image, tiles=args.tiles, tile=args.tile)
    if args.json:
        record = {"sigma": estimate.sigma, "tiles": estimate.tiles}
        print(json.dumps(record | {"looks_clean": estimate.looks_clean}))
    else:
        print(f"{args.image}: {estimate.describe()}")
    return 0
