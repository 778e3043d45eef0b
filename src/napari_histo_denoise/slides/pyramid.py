"""Pyramids: levels as dask arrays, 2x2 means, and how deep a pyramid goes."""

from __future__ import annotations

import math
import os
from typing import Any

import dask.array as da
import numpy as np

from ..io import check_levels, read_image

#: Default chunk edge of written levels (and of the lazy levels made from arrays).
BLOCK_SIZE = 1024
#: Pyramids stop once the longest side of the last level is at most this many pixels.
MIN_LEVEL_SIDE = 1024


def downsample2(level: da.Array) -> da.Array:
    """Halve an image in Y and X by averaging 2x2 blocks (odd edges are replicated).

    Parameters
    ----------
    level : dask.array.Array
        ``(Y, X)`` or ``(Y, X, C)``.

    Returns
    -------
    dask.array.Array
        ``(ceil(Y/2), ceil(X/2)[, C])``, same dtype (integers are rounded).
    """
    pad = [(0, level.shape[0] % 2), (0, level.shape[1] % 2)] + [(0, 0)] * (level.ndim - 2)
    if any(p[1] for p in pad):
        level = da.pad(level, pad, mode="edge")
    even = [max(2, c - c % 2) for c in (level.chunksize[0], level.chunksize[1])]
    level = level.rechunk((*even, *level.shape[2:]))
    mean = da.coarsen(np.mean, level.astype(np.float32), {0: 2, 1: 2})
    if np.issubdtype(level.dtype, np.integer):
        info = np.iinfo(level.dtype)
        mean = da.clip(da.round(mean), info.min, info.max)
    return mean.astype(level.dtype)


def pyramid_depth(shape: tuple[int, ...], n_levels: int | None = None) -> int:
    """Number of levels of a pyramid for level-0 ``shape`` (``n_levels`` when given)."""
    if n_levels is not None:
        if n_levels < 1:
            raise ValueError(f"n_levels must be at least 1, got {n_levels}")
        return n_levels
    side, depth = max(shape[:2]), 1
    while side > MIN_LEVEL_SIDE:
        side, depth = math.ceil(side / 2), depth + 1
    return depth


def as_levels(data: Any) -> list[da.Array]:
    """Return ``data`` (an array, a list of levels, or an image path) as a list of dask levels."""
    if isinstance(data, (str, os.PathLike)):
        data, _ = read_image(data)
    levels = list(data) if isinstance(data, (list, tuple)) else [data]
    levels = [
        lv
        if isinstance(lv, da.Array)
        else da.from_array(lv, chunks=(BLOCK_SIZE, BLOCK_SIZE, *lv.shape[2:]))
        for lv in levels
    ]
    check_levels(levels, source="input image")
    return levels


def is_rgb(level: Any) -> bool:
    """Whether a level is RGB or RGBA (channels last)."""
    return level.ndim == 3 and level.shape[2] in (3, 4)
