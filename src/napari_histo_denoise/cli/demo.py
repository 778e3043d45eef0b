"""``histo-denoise demo``: the whole job on the bundled sample data, headless.

Adds Gaussian noise to a crop from the bottom of the bundled CMU-1 H&E slide, denoises
it through the tiled engine with the bundled pretrained basic weights (or ``--weights``),
writes the images and prints PSNR/SSIM beside a classical baseline. Where no weights are
bundled (or with ``--train``) it first trains the basic model briefly on clean tissue
(scikit-image's IHC sample and the top of the slide, which the test crop never overlaps).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..samples import SAMPLE


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` subcommand."""
    parser = subparsers.add_parser(
        "demo",
        help="denoise a noisy crop of the bundled slide, print PSNR (trains where needed)",
        description="Denoise a noisy crop of the bundled CMU-1 slide with the bundled basic "
        "weights (or --weights), write before/after PNGs and print PSNR and SSIM beside a TV "
        "baseline. Without bundled weights, or with --train, first train the basic model "
        "briefly on the bundled samples (never on the test crop).",
    )
    parser.add_argument("-o", "--output", type=Path, default=Path("demo_output"))
    parser.add_argument(
        "--weights",
        type=Path,
        help="denoise with these weights (e.g. release_candidate/basic.int8.safetensors)",
    )
    parser.add_argument(
        "--train", action="store_true", help="train briefly even where weights are bundled"
    )
    parser.add_argument(
        "--steps", type=int, default=200, help="training steps with --train (default 200)"
    )
    parser.add_argument("--sigma", type=float, default=25.0, help="noise std on the 0-255 scale")
    parser.add_argument("--crop", type=int, default=512, help="side of the test crop in pixels")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Denoise (training first where needed), write the images and print the figures."""
    import imageio.v3 as iio
    import numpy as np
    from skimage.restoration import denoise_tv_chambolle
    from skimage.util import img_as_float, img_as_ubyte

    from ..checkpoint import load_model
    from ..engine import denoise
    from ..io import read_image
    from ..metrics import psnr, ssim
    from ..noise import add_gaussian_noise
    from ..pretrained import bundled, bundled_weights

    levels, _ = read_image(SAMPLE)
    slide = np.asarray((levels[0] if isinstance(levels, list) else levels)[..., :3])
    split = slide.shape[0] // 2  # train on the top half, test on the bottom half
    if not 32 <= args.crop <= min(split, slide.shape[1]):
        raise ValueError(f"--crop must be between 32 and {min(split, slide.shape[1])} pixels")
    if args.steps < 1:
        raise ValueError("--steps must be at least 1")
    if args.weights is not None and args.train:
        raise ValueError("--weights and --train exclude each other: denoise with one or train")
    top, left = split + (split - args.crop) // 2, (slide.shape[1] - args.crop) // 2
    clean = img_as_float(slide[top : top + args.crop, left : left + args.crop])
    noisy = add_gaussian_noise(clean, args.sigma, seed=args.seed)

    weights, trained = args.weights, None
    if weights is None and not args.train and bundled("basic") is not None:
        weights = bundled_weights("basic")
    if weights is None:
        trained = _train(slide[:split], args)
        model = trained.model
    else:
        model, meta = load_model(weights)
        total = meta.get("lineage", {}).get("total")
        behind = (
            f"{total['steps']:,} training steps in {total['chunks']} runs"
            if total
            else f"its last run: {meta.get('steps', '?')} training steps"
        )
        print(f"denoising with {weights} ({behind})")

    started = time.perf_counter()
    denoised = denoise(noisy.astype(np.float32), model, device=args.device).compute()
    seconds = time.perf_counter() - started
    baseline = denoise_tv_chambolle(noisy, weight=0.08, channel_axis=-1)

    args.output.mkdir(parents=True, exist_ok=True)
    if trained is not None:
        trained.save(args.output / "demo_basic.safetensors")  # with its history and curves
    images = {"clean": clean, "noisy": noisy, "denoised": denoised, "tv_baseline": baseline}
    for name, image in images.items():
        iio.imwrite(args.output / f"{name}.png", img_as_ubyte(np.clip(image, 0, 1)))
    side_by_side = np.concatenate([clean, noisy, denoised], axis=1)
    iio.imwrite(args.output / "before_after.png", img_as_ubyte(np.clip(side_by_side, 0, 1)))

    print(f"denoised a {args.crop} x {args.crop} crop in {seconds:.1f} s")
    print(f"{'image':<14}{'PSNR (dB)':>10}{'SSIM':>8}")
    for name in ("noisy", "tv_baseline", "denoised"):
        image = images[name]
        print(f"{name:<14}{psnr(clean, image):>10.2f}{ssim(clean, image):>8.3f}")
    weights_files = "demo_basic.safetensors, .json, .curves.png"
    extra = "" if trained is None else f" and the weights ({weights_files})"
    print(
        f"wrote {', '.join(f'{n}.png' for n in images)}, before_after.png{extra} to {args.output}/"
    )
    return 0


def _train(top_of_slide, args: argparse.Namespace):
    """Train the basic model briefly on the IHC sample and the top of the slide."""
    from skimage import data

    from ..training import train
    from .progress_line import ProgressLine

    print(f"training the basic model for {args.steps} steps (IHC sample, top of CMU-1)")
    bar = ProgressLine(sys.stdout)
    started = time.perf_counter()
    result = train(
        [data.immunohistochemistry(), top_of_slide],
        "basic",
        noise=f"gaussian:{max(5, args.sigma - 10):g}-{args.sigma + 10:g}",
        steps=args.steps,
        # Small patches: on a CPU, 200 steps of 32 x 32 take about 1.5 minutes and already
        # beat the noisy input (64 x 64 patches need about four times as long for the same).
        patch_size=32,
        batch_size=8,
        lr=3e-3,
        device=args.device,
        seed=args.seed,
        progress=bar.show,
    )
    bar.close()
    print(f"trained in {time.perf_counter() - started:.0f} s")
    return result
