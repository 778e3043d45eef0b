"""Whole slides: pyramids, OME-Zarr and OME-TIFF writers, tissue masks.

A whole slide never sits in memory. :func:`napari_histo_denoise.pipeline.denoise_slide`
hands level 0 to the engine through :func:`napari_histo_denoise.pipeline.iter_denoise_into`,
which streams it band by band into the level-0 array of an OME-Zarr store (this package's
resumable sink); the pyramid is then built level by level from the level below it on disk.
This package does not import the pipeline. What is slide-specific lives here, one job a
module: :mod:`.pyramid` (levels, 2x2 means), :mod:`.ome_zarr` and :mod:`.ome_tiff` (writers,
and the resumable OME-Zarr sink), :mod:`.tissue` (the tissue mask), :mod:`.resume` (what
makes two runs the same job).

Everything is written under ``<out>.partial`` and renamed to ``<out>`` only when complete, so
an interrupted or crashed run never leaves a file that looks finished. A denoising run records
its finished bands in ``<out>.partial``; running it again with the same input and settings
resumes where it stopped.
"""

from __future__ import annotations

from .ome_tiff import write_ome_tiff
from .ome_zarr import omero_window, write_ome_zarr
from .pyramid import BLOCK_SIZE, MIN_LEVEL_SIDE, as_levels, downsample2, pyramid_depth
from .tissue import tissue_mask

__all__ = [
    "BLOCK_SIZE",
    "MIN_LEVEL_SIDE",
    "as_levels",
    "downsample2",
    "omero_window",
    "pyramid_depth",
    "tissue_mask",
    "write_ome_tiff",
    "write_ome_zarr",
]
