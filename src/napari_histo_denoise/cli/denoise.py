"""``histo-denoise denoise``: denoise an image or whole slide into a file, tile by tile."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..settings import BACKENDS, MODEL_NAMES, PRECISIONS
from . import DefaultsHelpFormatter


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``denoise`` subcommand."""
    parser = subparsers.add_parser(
        "denoise",
        help="denoise an image or whole slide (TIFF/SVS, PNG, JPEG, zarr) tile by tile",
        description="Denoise INPUT with trained (or bundled) weights and write OUTPUT, band by "
        "band with bounded memory: .ome.zarr (a resumable OME-Zarr pyramid), .ome.tif/.tif (a "
        "tiled pyramidal OME-TIFF with the pixel size), .zarr (one zarr array, any layout "
        "including stacks), or .png/.jpg. For a pyramid the full-resolution level is denoised.",
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument("input", type=Path, help="image to denoise")
    parser.add_argument("-o", "--output", type=Path, required=True, help="where to write")
    parser.add_argument(
        "--model",
        choices=MODEL_NAMES,
        help="architecture (default: a bioimage.io package's own, else basic)",
    )
    parser.add_argument(
        "--weights",
        type=Path,
        help="trained weights: a .safetensors/.pt file or a bioimage.io package (.zip) "
        "(default: the weights bundled for --model, where there are)",
    )
    parser.add_argument(
        "--tile-size", type=int, default=256, metavar="PX", help="tile side, a multiple of 16"
    )
    parser.add_argument(
        "--overlap", type=int, default=32, metavar="PX", help="pixels neighbouring tiles blend"
    )
    parser.add_argument(
        "--batch-size", type=int, default=None, help="tiles per forward pass (default: automatic)"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="auto: bf16 on CUDA and on CPUs with native bf16, else fp32",
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="what runs the model; auto: OpenVINO on the CPU where installed, else torch",
    )
    parser.add_argument(
        "--tissue-only",
        action="store_true",
        help="denoise only tiles with tissue (Otsu on a low-resolution level); tiles of "
        "background pass through unchanged",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def _bar(event) -> None:
    width = 30
    filled = width * event.done // max(event.total, 1)
    end = "\n" if event.done >= event.total else ""
    print(
        f"\rdenoising [{'#' * filled}{'.' * (width - filled)}] {event.done}/{event.total} "
        f"{event.unit}",
        end=end,
        file=sys.stderr,
        flush=True,
    )


def _with_header(header: str):
    """The progress bar, with ``header`` printed once before it.

    At the first event: the inputs, the output and the model have passed their checks then,
    and the work has started.
    """
    started = False

    def show(event) -> None:
        nonlocal started
        if not started:
            print(header, file=sys.stderr)
            started = True
        _bar(event)

    return show


def run(args: argparse.Namespace) -> int:
    """Denoise the input into the output; the core chooses the writer by the output's suffix."""
    from ..checkpoint import is_package
    from ..devices import resolve_run, uses_channels_last
    from ..pipeline import denoise_into, destination_kind

    destination_kind(args.output)  # an unsupported suffix fails before anything is read
    progress = None
    if not args.quiet:
        ran = resolve_run(args.device, args.precision, args.backend)
        device, precision, backend = ran["device"], ran["precision"], ran["backend"]
        layout = ", channels_last" if uses_channels_last(device, precision, backend) else ""
        progress = _with_header(f"denoising on {device} in {precision}, {backend}{layout}")
    model, weights = args.model or "basic", args.weights
    if args.model is None and weights is not None and is_package(weights):
        model, weights = weights, None  # the package names its architecture
    written = denoise_into(
        args.input,
        args.output,
        model=model,
        weights=weights,
        tile_size=args.tile_size,
        overlap=args.overlap,
        batch_size=args.batch_size,
        device=args.device,
        precision=args.precision,
        backend=args.backend,
        tissue_only=args.tissue_only,
        overwrite=args.overwrite,
        progress=progress,
    )
    print(f"wrote {written}")
    return 0
