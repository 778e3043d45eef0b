"""``histo-denoise export-bmz``: trained weights as a bioimage.io model package (a ``.zip``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import DefaultsHelpFormatter


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``export-bmz`` subcommand."""
    from ..bmz import TEST_SIZE, WEIGHT_FORMATS

    parser = subparsers.add_parser(
        "export-bmz",
        help="write trained weights as a bioimage.io model package (Fiji, ilastik, QuPath)",
        description="Write WEIGHTS (basic or deep) as a bioimage.io model package (spec 0.5): "
        "the PyTorch state dict with this package's architecture, TorchScript and ONNX, the "
        "input/output description, a test input and this engine's output for it, a cover, "
        "the model card with the training totals and the data's licences. Check it with "
        "`bioimageio test PACKAGE` (or --test). Needs the bioimageio extra: "
        'pip install "napari-histo-denoise[bioimageio]".',
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument("weights", type=Path, help="weights file (.safetensors, .pt)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="package to write (.zip)")
    parser.add_argument("--name", help="the model's name in the package")
    parser.add_argument("--author", action="append", help="an author's name (repeat for several)")
    parser.add_argument(
        "--formats",
        nargs="+",
        choices=WEIGHT_FORMATS,
        default=list(WEIGHT_FORMATS),
        help="weight formats to include (pytorch_state_dict always)",
    )
    parser.add_argument(
        "--test-size", type=int, default=TEST_SIZE, metavar="PX", help="side of the test input"
    )
    parser.add_argument(
        "--test", action="store_true", help="then run bioimage.io's test of the package"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Export, print the package's size, and optionally test it."""
    from ..bmz import export_bmz, run_bmz_test

    def show(event) -> None:
        print(f"\rexporting: step {event.done}/{event.total}", end="", file=sys.stderr)

    path = export_bmz(
        args.weights,
        args.output,
        name=args.name,
        authors=args.author or ("napari-histo-denoise developers",),
        formats=args.formats,
        test_size=args.test_size,
        overwrite=args.overwrite,
        progress=show,
    )
    print(file=sys.stderr)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    if not args.test:
        return 0
    passed, report = run_bmz_test(path)
    print(report)
    return 0 if passed else 1
