"""``histo-denoise summary``: the model report of the seed specification, regenerated from code."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..settings import MODEL_NAMES

FORMATS = ("text", "json", "markdown")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``summary`` subcommand."""
    parser = subparsers.add_parser(
        "summary",
        help="print the architecture map, data flow, parameter breakdown and memory analysis",
        description="Print the model report (the seed specification's format) for one or both "
        "models. Activation memory is measured from a real forward pass on the meta device.",
    )
    parser.add_argument("model", choices=(*MODEL_NAMES, "both"))
    parser.add_argument("--batch-size", type=int, default=8, help="batch for the memory analysis")
    parser.add_argument(
        "--input-size",
        type=int,
        default=256,
        metavar="PX",
        help="tile height and width for the tables (a multiple of 16; default 256)",
    )
    parser.add_argument("--format", choices=FORMATS, default="text")
    parser.add_argument(
        "-o", "--output", type=Path, help="write the report here instead of stdout"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Build the summaries and print or write the report."""
    from ..summary import model_summary, render

    names = MODEL_NAMES if args.model == "both" else (args.model,)
    shape = (1, 3, args.input_size, args.input_size)
    summaries = [model_summary(n, input_shape=shape, batch_size=args.batch_size) for n in names]
    report = render(summaries, args.format)
    if args.output is None:
        print(report)
    else:
        args.output.write_text(report + "\n", encoding="utf-8")
        print(f"wrote {args.output}")
    return 0
