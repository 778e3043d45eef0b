"""``histo-denoise evaluate``: PSNR/SSIM of a model beside the noisy input and baselines."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..settings import PRECISIONS


def _crop(text: str) -> int | None:
    if text.lower() in ("none", "0"):
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a multiple of 16 or 'none', got {text!r}"
        ) from None


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` subcommand."""
    parser = subparsers.add_parser(
        "evaluate",
        help="measure PSNR/SSIM of weights against the noisy input, TV, wavelet, NLM and CBM3D",
        description="Add Gaussian (or Poisson-Gaussian) noise with fixed per-crop seeds to "
        "clean images, denoise them with the model and the classical baselines, and print "
        "per-source PSNR/SSIM tables (Markdown). CBM3D runs only when the optional 'bm3d' "
        "package is installed.",
    )
    parser.add_argument(
        "--weights",
        type=Path,
        help="weights file (.safetensors/.pt); omit to score baselines only",
    )
    parser.add_argument(
        "--images", nargs="+", required=True, help="clean image files or folders (not trained on)"
    )
    parser.add_argument(
        "--sigmas", nargs="+", type=float, default=[15, 25, 50], help="noise sigmas (0-255 scale)"
    )
    parser.add_argument(
        "--noise",
        choices=["gaussian", "poisson-gaussian"],
        default="gaussian",
        help="noise added (poisson-gaussian: each sigma is the std at mid-grey)",
    )
    parser.add_argument(
        "--crop", type=_crop, default=256, help="crop side (multiple of 16) or 'none' for whole"
    )
    parser.add_argument("--crops-per-image", type=int, default=1)
    parser.add_argument(
        "--baselines",
        nargs="*",
        metavar="NAME",
        help="baselines to run: cbm3d, nlm, tv, wavelet (default: every available one; "
        "'--baselines' alone runs none)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tile-size", type=int, default=256)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS)
    parser.add_argument("--json", type=Path, help="also write every row and mean as JSON here")
    parser.add_argument("-o", "--output", type=Path, help="write the Markdown report here")
    parser.add_argument(
        "--figures",
        action="store_true",
        help="also draw the figures beside --output (NAME.md): NAME_psnr.png (PSNR against "
        "sigma) and NAME_<source>.jpg (each source's first crop: clean, noisy and every "
        "method at every sigma, with its PSNR), shown at the end of the report",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the evaluation and print or write the report."""
    from ..evaluation import evaluate

    if args.figures and args.output is None:
        raise ValueError("--figures are written beside the report: give -o/--output")
    tty = sys.stderr.isatty()

    def progress(done: int, total: int) -> None:
        if tty:
            print(f"\revaluated {done}/{total} (crop, sigma) pairs", end="", file=sys.stderr)

    report = evaluate(
        args.weights,
        args.images,
        sigmas=args.sigmas,
        baselines=True if args.baselines is None else args.baselines,
        crop=args.crop,
        crops_per_image=args.crops_per_image,
        seed=args.seed,
        noise=args.noise,
        tile_size=args.tile_size,
        device=args.device,
        precision=args.precision,
        progress=progress,
        keep_images=args.figures,
    )
    if tty:
        print(file=sys.stderr)
    text = report.to_markdown()
    if args.json is not None:
        args.json.write_text(json.dumps(report.to_dict(), indent=1) + "\n", encoding="utf-8")
    if args.output is None:
        print(text, end="")
        return 0
    written = [args.output]
    if args.figures:
        from ..quality_figures import figures_markdown, write_figures

        figures = write_figures(report, args.output)
        text += "\n" + figures_markdown(report, figures)
        written += figures
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {', '.join(map(str, written))}")
    return 0
