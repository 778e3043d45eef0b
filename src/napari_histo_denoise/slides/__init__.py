"""Whole slides: pyramids, OME-Zarr and OME-TIFF writers, tissue masks, slide denoising.

A whole slide never sits in memory. :func:`denoise_slide` hands level 0 to the engine
through :func:`napari_histo_denoise.pipeline.iter_denoise_into`, which streams it band by
band into the level-0 array of an OME-Zarr store; the pyramid is then built level by level
from the level below it on disk. What is slide-specific lives here, one job a module:
:mod:`.pyramid` (levels, 2x2 means), :mod:`.ome_zarr` and :mod:`.ome_tiff` (writers, and the
resumable OME-Zarr sink), :mod:`.tissue` (the tissue mask), :mod:`.resume` (what makes two
runs the same job).

Everything is written under ``<out>.partial`` and renamed to ``<out>`` only when complete, so
an interrupted or crashed run never leaves a file that looks finished. A denoising run records
its finished bands in ``<out>.partial``; running it again with the same input and settings
resumes where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

from ..events import Progress, drain
from .ome_tiff import write_ome_tiff
from .ome_zarr import omero_window, write_ome_zarr
from .pyramid import BLOCK_SIZE, MIN_LEVEL_SIDE, as_levels, downsample2, pyramid_depth
from .tissue import tissue_mask

__all__ = [
    "BLOCK_SIZE",
    "MIN_LEVEL_SIDE",
    "as_levels",
    "denoise_slide",
    "downsample2",
    "iter_denoise_slide",
    "omero_window",
    "pyramid_depth",
    "tissue_mask",
    "write_ome_tiff",
    "write_ome_zarr",
]


def iter_denoise_slide(
    path_or_levels: Any, out: str | Path, **options: Any
) -> Generator[Progress, None, Path]:
    """Denoise a slide (level 0) into a pyramidal OME-Zarr store, yielding progress.

    Parameters
    ----------
    path_or_levels : str, Path, array-like or list of array-like
        A slide file/store (read with :func:`napari_histo_denoise.io.read_image`), a 2-D
        image ``(Y, X[, 3|4])``, or a pyramid (level 0 first). Only level 0 is denoised;
        the other levels serve the tissue mask.
    out : str or Path
        The OME-Zarr store to create (OME-NGFF 0.4), whatever its suffix.
    **options
        The keyword arguments of :func:`napari_histo_denoise.pipeline.iter_denoise_into`:
        ``model``, ``weights``, tiling and device settings, ``tissue_only`` (denoise only
        tiles that touch tissue; the others pass through, blended), ``mask``, ``cancel``
        (the partial store is kept for a resume), ``resume`` (default True), ``mpp``,
        ``n_levels``, ``chunk`` and ``overwrite``.

    Yields
    ------
    Progress
        Tiles, then pyramid levels (see the event's ``unit``).

    Returns
    -------
    Path
        ``out``, once complete.
    """
    from ..pipeline import iter_denoise_into

    return (yield from iter_denoise_into(path_or_levels, out, kind="ome-zarr", **options))


def denoise_slide(
    path_or_levels: Any,
    out: str | Path,
    *,
    progress: Callable[[int, int], object] | None = None,
    **options: Any,
) -> Path:
    """Denoise a whole slide (level 0) into a pyramidal OME-Zarr store on disk.

    Takes the arguments of :func:`iter_denoise_slide` and runs it to the end.

    Parameters
    ----------
    progress : callable, optional
        Called as ``progress(done, total)`` in tiles after each batch.

    Returns
    -------
    Path
        ``out``, complete (the partial store renamed).
    """

    def tiles(event: Progress) -> None:
        if progress is not None and event.unit == "tiles":
            progress(event.done, event.total)

    return drain(iter_denoise_slide(path_or_levels, out, **options), tiles)
