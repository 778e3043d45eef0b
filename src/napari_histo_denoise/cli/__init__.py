"""The ``histo-denoise`` command line: one module per subcommand, each a thin face on the core.

Every subcommand module defines ``register(subparsers)``, which adds its parser and
sets ``run`` (a function of the parsed arguments returning an exit code). Heavy
imports (torch, dask) happen inside ``run`` so that ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import re
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
        if (
            action.default is None
            or action.default is False
            or action.default == argparse.SUPPRESS
        ):
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
    parser.set_defaults(commands=subparsers.choices)
    return parser


def in_cli_words(message: str, parser: argparse.ArgumentParser) -> str:
    """Say the core's Python names the way the command line spells them.

    ``overwrite=True`` becomes ``--overwrite``, ``tile_size=512`` ``--tile-size 512``, and
    ``tile_size`` or a leading ``overlap must`` the option's flag: only names of this
    subcommand's options, and only where they cannot be ordinary words (a ``name=``, a name
    with an underscore, or the subject of the sentence).
    """
    for action in parser._actions:  # argparse keeps no public list of a parser's options
        if not action.option_strings or action.dest == "help":
            continue
        flag, dest = max(action.option_strings, key=len), re.escape(action.dest)
        if isinstance(action, argparse._StoreTrueAction):
            message = re.sub(rf"\b{dest}=True\b", flag, message)
        message = re.sub(rf"\b{dest}=", f"{flag} ", message)
        if "_" in action.dest:
            message = re.sub(rf"\b{dest}\b", flag, message)
        message = re.sub(rf"^{dest}(?= must)", flag, message)
    return message


def main(argv: list[str] | None = None) -> int:
    """Run ``histo-denoise`` with ``argv`` (default: ``sys.argv[1:]``) and return its exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except USER_ERRORS as exc:
        message = in_cli_words(str(exc), args.commands[args.command])
        print(f"histo-denoise {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"histo-denoise {args.command}: interrupted", file=sys.stderr)
        return 130
