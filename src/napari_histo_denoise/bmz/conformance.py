"""Whether a package passes bioimage.io's own test (what ``bioimageio test`` runs)."""

from __future__ import annotations

import os
from pathlib import Path

from .spec_calls import require, spec_call


def run_bmz_test(path: str | os.PathLike) -> tuple[bool, str]:
    """Run bioimage.io's own test of a model package (what ``bioimageio test`` runs).

    It checks the description against the specification and reproduces the test output
    from the test input with every weight format in the package.

    Returns
    -------
    passed : bool
        Whether every check passed.
    report : str
        The test's summary, as Markdown.
    """
    require("bioimageio.core", "test a bioimage.io package")
    from bioimageio.core import test_model

    summary = spec_call(test_model, Path(path))
    return summary.status == "passed", summary.format_md()


__all__ = ["run_bmz_test"]
