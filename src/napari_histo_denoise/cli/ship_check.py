"""``histo-denoise ship-check``: score weights by the rule for shipping them as the default."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..settings import BACKENDS, PRECISIONS
from . import DefaultsHelpFormatter

#: The held-out source in a ``fetch-data`` folder (never trained on by the release recipe).
HELD_OUT = Path("train/stardist_histo_he.jpg")
#: The validation slide in a ``fetch-data`` folder (also bundled as the sample).
VALIDATION = Path("val/cmu1_small_region.svs")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``ship-check`` subcommand."""
    parser = subparsers.add_parser(
        "ship-check",
        formatter_class=DefaultsHelpFormatter,
        help="score weights by the shipping rule: beat TV, wavelet and NLM; no harm >= 36 dB",
        description="Score a weights file on the held-out stardist image and the CMU-1 "
        "validation slide of a fetch-data folder at Gaussian sigma 15, 25 and 50 and one "
        "Poisson-Gaussian level beside TV, wavelet and NLM (and CBM3D where 'bm3d' is "
        "installed), measure no harm (clean crops in, PSNR of the output against them), and "
        "print the rule line by line with pass or fail. Exit status 0: passes, 1: fails.",
    )
    parser.add_argument("weights", type=Path, help="weights file (.safetensors)")
    parser.add_argument(
        "--data",
        type=Path,
        default=Path("data"),
        help="folder written by 'histo-denoise fetch-data' (the held-out and validation images)",
    )
    parser.add_argument("--crops", type=int, default=4, help="256 px tissue crops per image")
    parser.add_argument("--seed", type=int, default=0, help="seed of the crops and the noise")
    parser.add_argument(
        "--baselines",
        nargs="+",
        metavar="NAME",
        help="baselines to score: tv, wavelet and nlm (the rule's) and cbm3d (default: every "
        "available one)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument(
        "--precision", default="fp32", choices=PRECISIONS, help="precision the model runs in"
    )
    parser.add_argument("--backend", default="auto", choices=BACKENDS, help="what runs the model")
    parser.add_argument("--json", type=Path, help="also write every figure as JSON here")
    parser.add_argument("-o", "--output", type=Path, help="also write the Markdown report here")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the check, print the report and return 0 when the weights pass the rule."""
    from ..acceptance import ship_check

    images = [args.data / HELD_OUT, args.data / VALIDATION]
    missing = [str(p) for p in images if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{', '.join(missing)} not found: write them with "
            f"'histo-denoise fetch-data {args.data}' (or give --data)"
        )
    if not args.weights.is_file():
        raise FileNotFoundError(f"weights file {args.weights} not found")
    result = ship_check(
        args.weights,
        images[0],
        images[1:],
        crops=args.crops,
        seed=args.seed,
        baselines=args.baselines,
        device=args.device,
        precision=args.precision,
        backend=args.backend,
        progress=lambda message: print(f"scoring: {message}", file=sys.stderr, flush=True),
    )
    text = result.to_markdown()
    print(text, end="")
    if args.output is not None:
        args.output.write_text(text, encoding="utf-8")
    if args.json is not None:
        args.json.write_text(json.dumps(result.to_dict(), indent=1) + "\n", encoding="utf-8")
    return 0 if result.passed else 1
