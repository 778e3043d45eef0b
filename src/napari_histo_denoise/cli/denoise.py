"""``histo-denoise denoise``: denoise a TIFF/PNG/JPEG/zarr image from the command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..settings import MODEL_NAMES, PRECISIONS

#: Output suffixes and how they are written.
ZARR_SUFFIXES = (".zarr",)
TIFF_SUFFIXES = (".tif", ".tiff")
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``denoise`` subcommand."""
    parser = subparsers.add_parser(
        "denoise",
        help="denoise an image or whole slide (TIFF/SVS, PNG, JPEG, zarr) tile by tile",
        description="Denoise INPUT with trained (or bundled) weights and write OUTPUT (.zarr "
        "streams band by band with bounded memory; .tif/.tiff/.png/.jpg hold the result in "
        "memory). For a "
        "pyramid the full-resolution level is denoised.",
    )
    parser.add_argument("input", type=Path, help="image to denoise")
    parser.add_argument("-o", "--output", type=Path, required=True, help="where to write")
    parser.add_argument("--model", choices=MODEL_NAMES, default="basic")
    parser.add_argument(
        "--weights",
        type=Path,
        help="trained weights file (default: the weights bundled for --model, where there are)",
    )
    parser.add_argument("--tile-size", type=int, default=256, metavar="PX")
    parser.add_argument("--overlap", type=int, default=32, metavar="PX")
    parser.add_argument("--batch-size", type=int, default=None, help="default: automatic")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto")
    parser.add_argument(
        "--tissue-only",
        action="store_true",
        help="denoise only blocks with tissue (Otsu on a low-resolution level); background "
        "blocks are copied unchanged (needs a .zarr / .ome.zarr output)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def _bar(done: int, total: int, unit: str = "tiles") -> None:
    width = 30
    filled = width * done // max(total, 1)
    end = "\n" if done >= total else ""
    print(
        f"\rdenoising [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {unit}",
        end=end,
        file=sys.stderr,
        flush=True,
    )


def run(args: argparse.Namespace) -> int:
    """Read the input, denoise it, write the output."""
    from ..engine import denoise_to_zarr, iter_denoise
    from ..events import drain
    from ..io import read_image

    output: Path = args.output
    suffix = output.suffix.lower()
    if suffix not in ZARR_SUFFIXES + TIFF_SUFFIXES + PICTURE_SUFFIXES:
        raise ValueError(
            f"unsupported output {output.name!r}; use .zarr, .tif, .tiff, .png, .jpg or .jpeg"
        )
    if output.exists() and not args.overwrite:
        raise ValueError(f"{output} exists; pass --overwrite to replace it")
    if args.tissue_only and suffix not in ZARR_SUFFIXES:
        raise ValueError("--tissue-only writes an OME-Zarr pyramid: use -o NAME.ome.zarr")
    data, _meta = read_image(args.input)
    image = data[0] if isinstance(data, list) else data
    if suffix in ZARR_SUFFIXES and image.ndim == 3 and image.shape[-1] == 3:
        return _run_slide(args)
    options = {
        "tile_size": args.tile_size,
        "overlap": args.overlap,
        "batch_size": args.batch_size,
        "device": args.device,
        "precision": args.precision,
        "progress": None if args.quiet else _bar,
    }
    if suffix in ZARR_SUFFIXES:
        denoise_to_zarr(
            image, output, args.model, args.weights, overwrite=args.overwrite, **options
        )
    else:
        _write(output, drain(iter_denoise(image, args.model, args.weights, **options)))
    print(f"wrote {output}")
    return 0


def _write(path: Path, result) -> None:
    """Write a finished numpy result as TIFF or as a picture."""
    if path.suffix.lower() in TIFF_SUFFIXES:
        import tifffile

        rgb = result.ndim == 3 and result.shape[-1] in (3, 4)
        tifffile.imwrite(path, result, photometric="rgb" if rgb else "minisblack")
    else:
        from skimage import io as skio

        skio.imsave(path, result, check_contrast=False)


def _run_slide(args: argparse.Namespace) -> int:
    """RGB image or slide to .zarr: block by block into a resumable OME-Zarr pyramid."""
    from ..slides import denoise_slide

    denoise_slide(
        args.input,
        args.output,
        model=args.model,
        weights=args.weights,
        tissue_only=args.tissue_only,
        tile_size=args.tile_size,
        overlap=args.overlap,
        batch_size=args.batch_size,
        device=args.device,
        precision=args.precision,
        progress=None if args.quiet else lambda done, total: _bar(done, total, "pixels"),
        overwrite=args.overwrite,
    )
    print(f"wrote {args.output} (OME-Zarr pyramid)")
    return 0
