"""Calls into the bioimage.io libraries: check they are installed, quiet them, close their files.

``bioimageio.spec`` (reading) and ``bioimageio.core`` with ``onnx`` (export) come with the
``bioimageio`` extra (:data:`EXTRA_HINT`); every module of this package imports them inside
its functions, after :func:`require`.
"""

from __future__ import annotations

import gc
import importlib.util
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

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


def spec_call(work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``work(*args, **kwargs)`` with the bioimage.io libraries quiet, and close their files.

    Their readers leave files for the garbage collector to close (a ResourceWarning each);
    collecting while those warnings are ignored closes them here, not at a random later time.
    ``work`` should hold what it opens (a description holds its package's zip file open) in
    its own frames, so that it is gone when ``work`` returns. A
    :class:`~napari_histo_denoise.checkpoint.WeightsError` leaves without its traceback,
    whose frames would keep those objects, and only after they are collected: a ``with``
    block cannot do this, as the exception it passes on keeps its traceback until the block
    has ended.

    Parameters
    ----------
    work : callable
        What calls the libraries.
    *args, **kwargs
        Its arguments.

    Returns
    -------
    object
        What ``work`` returns.
    """
    from ..checkpoint import WeightsError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return work(*args, **kwargs)
        except WeightsError as exc:
            failure = exc.with_traceback(None)
            failure.__context__ = None  # a library error it replaced, with the same frames
        finally:
            gc.collect()  # after the except clause, which drops the traceback
    raise failure from None


__all__ = ["EXTRA_HINT", "require", "spec_call"]
