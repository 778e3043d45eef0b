"""Calls into the bioimage.io libraries: check they are installed, quiet them, close their files.

``bioimageio.spec`` (reading) and ``bioimageio.core`` with ``onnx`` (export) come with the
``bioimageio`` extra (:data:`EXTRA_HINT`); every module of this package imports them inside
its functions, after :func:`require`.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import warnings
from collections.abc import Iterator

#: Extra install hint for messages.
EXTRA_HINT = 'pip install "napari-histo-denoise[bioimageio]"'


def require(module: str, what: str) -> None:
    """Raise a WeightsError naming the extra to install unless ``module`` is importable.

    Parameters
    ----------
    module : str
        The module needed, e.g. ``"bioimageio.spec"``.
    what : str
        What it is needed for, completing "to ...", for the message.

    Raises
    ------
    WeightsError
        If ``module`` (or its top-level package) is not installed.
    """
    from ..checkpoint import WeightsError

    if (
        importlib.util.find_spec(module.split(".")[0]) is None
        or importlib.util.find_spec(module) is None
    ):
        raise WeightsError(f"to {what}, install {module}: {EXTRA_HINT}")


@contextlib.contextmanager
def spec_calls() -> Iterator[None]:
    """Quiet the bioimage.io libraries' own warnings, and close the files they leave open.

    Their readers leave files for the garbage collector to close (a ResourceWarning each);
    collecting while those warnings are ignored closes them here, not at a random later time.
    Do the work in a function called inside the block, so that its objects (a description
    holds its package's zip file open) are gone when the block ends: a
    :class:`~napari_histo_denoise.checkpoint.WeightsError` leaves without its traceback,
    whose frames would keep them.
    """
    from ..checkpoint import WeightsError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            yield
        except WeightsError as exc:
            exc.__context__ = None  # a library error it replaced, with the same frames
            raise exc.with_traceback(None) from None
        finally:
            gc.collect()


__all__ = ["EXTRA_HINT", "require", "spec_calls"]
