"""OME-TIFF: a tiled pyramidal file (levels as SubIFDs), written tile by tile."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

from ..files import atomic_output, check_target
from .pyramid import as_levels, downsample2, is_rgb, pyramid_depth


def _tiles(level: da.Array, tile: int) -> Iterator[np.ndarray]:
    """Yield the tiles of ``level`` row by row, computing one band of tile rows at a time."""
    for y in range(0, level.shape[0], tile):
        band = np.asarray(level[y : y + tile].compute())
        for x in range(0, level.shape[1], tile):
            yield band[:, x : x + tile]


def write_ome_tiff(
    data: Any,
    path: str | Path,
    *,
    mpp: float | None = None,
    n_levels: int | None = None,
    tile: int = 512,
    compression: str | None = "zlib",
    overwrite: bool = False,
) -> Path:
    """Write an image or pyramid to a tiled, pyramidal OME-TIFF (levels as SubIFDs), tile by tile.

    Parameters
    ----------
    data : array-like or list of array-like
        ``(Y, X)`` or ``(Y, X, C)``, or a pyramid (level 0 first), written as given. For a
        single array the lower levels are computed lazily from it (for a huge single array
        that re-reads level 0 per level: write a pyramid, e.g. an OME-Zarr's levels, instead).
    path : str or Path
        The file to create (``.ome.tif`` by convention).
    mpp : float, optional
        Microns per pixel of level 0: stored as OME ``PhysicalSizeX/Y`` and as the TIFF
        resolution tags (per level).
    n_levels : int, optional
        Pyramid depth for a single array (default as :func:`write_ome_zarr`).
    tile : int
        TIFF tile edge (a multiple of 16).
    compression : str or None
        Lossless by default (``"zlib"``); any tifffile compression name.
    overwrite : bool
        Replace ``path`` if it exists (otherwise a FileExistsError).

    Returns
    -------
    Path
        ``path``. Written under ``<path>.partial`` and renamed when complete; memory holds
        one band of tile rows of one level at a time.
    """
    import tifffile

    if tile % 16:
        raise ValueError(f"tile must be a multiple of 16, got {tile}")
    path = Path(path)
    check_target(path, overwrite)
    levels = as_levels(data)
    if len(levels) == 1:
        for _ in range(1, pyramid_depth(levels[0].shape, n_levels)):
            levels.append(downsample2(levels[-1]))
    rgb = is_rgb(levels[0])
    metadata: dict[str, Any] = {"axes": "YXS" if rgb else "YX" if levels[0].ndim == 2 else "YXC"}
    if mpp:
        metadata.update(
            PhysicalSizeX=mpp, PhysicalSizeY=mpp, PhysicalSizeXUnit="µm", PhysicalSizeYUnit="µm"
        )
    with (
        atomic_output(path) as partial,
        tifffile.TiffWriter(partial, bigtiff=True, ome=True) as tif,
    ):
        for i, level in enumerate(levels):
            factor = levels[0].shape[1] / level.shape[1]
            options: dict[str, Any] = {
                "shape": level.shape,
                "dtype": level.dtype,
                "tile": (tile, tile),
                "photometric": "rgb" if rgb else "minisblack",
                "planarconfig": "contig",
                "compression": compression,
            }
            if mpp:
                res = 1e4 / (mpp * factor)
                options.update(resolution=(res, res), resolutionunit="CENTIMETER")
            if i == 0:
                options.update(subifds=len(levels) - 1, metadata=metadata)
            else:
                options.update(subfiletype=1, metadata=None)
            tif.write(_tiles(level, tile), **options)
    return path
