"""The ``histo-denoise`` command line: one module per subcommand, each a thin face on the core.

Every subcommand module defines ``register(subparsers)``, which adds its parser and
sets ``run`` (a function of the parsed arguments returning an exit code). Heavy
imports (torch, dask) happen inside ``run`` so that ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__

#: Subcommand modules of this package, in the order ``--help`` lists them.
COMMANDS = (
    "demo",
    "denoise",
    "estimate_noise",
    "train",
    "evaluate",
    "ship_check",
    "export_bmz",
    "before_after",
    "summary",
    "bench",
    "fetch_data",
)

#: Errors that are the user's to fix: printed as one line, never as a traceback.
USER_ERRORS = (
    ValueError,
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    PermissionError,
)


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show an option's default in ``--help``, unless it is None or False (no value)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False, argparse.SUPPRESS):
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    """Return the ``histo-denoise`` parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="histo-denoise",
        description="Denoise histopathology images with the basic or deep U-Net autoencoder.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f".{name}", __name__).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``histo-denoise`` with ``argv`` (default: ``sys.argv[1:]``) and return its exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except USER_ERRORS as exc:
        print(f"histo-denoise {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"histo-denoise {args.command}: interrupted", file=sys.stderr)
        return 130
