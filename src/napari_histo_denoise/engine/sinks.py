"""Where finished rows go: a numpy or zarr array in the image's layout, or a zarr store.

A sink takes the finished pixels of each band segment (:meth:`ArraySink.write`); the
engine's eager loop (:func:`napari_histo_denoise.engine.run_bands`) feeds it. The OME-Zarr
pyramid sink, which also resumes and builds the lower levels, lives with the slide code
(:mod:`napari_histo_denoise.slides.ome_zarr`); both share this interface.
"""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np

from .geometry import ImageLayout


class ArraySink:
    """Rows written into an array of the image's shape and dtype (numpy, zarr, ...).

    An RGBA image's alpha is copied from the source, untouched.
    """

    def __init__(self, out: Any, layout: ImageLayout) -> None:
        if tuple(out.shape) != layout.shape or np.dtype(out.dtype) != layout.dtype:
            raise ValueError(
                f"out must have the image's shape {layout.shape} and dtype {layout.dtype}, "
                f"got {tuple(out.shape)} {np.dtype(out.dtype)}"
            )
        self.out, self.layout = out, layout

    def write(
        self,
        plane: tuple[int, ...],
        rows: slice,
        columns: slice,
        values: np.ndarray,
        source: Any,
    ) -> None:
        """Store the denoised ``values`` of a block of ``plane`` (alpha from ``source``)."""
        block = (*plane, rows, columns)
        self.out[block] = with_alpha(self.layout, block, values, source)


def with_alpha(
    layout: ImageLayout, block: tuple[Any, ...], values: np.ndarray, source: Any
) -> np.ndarray:
    """Denoised pixels of ``block`` with the source's alpha appended (RGBA); others unchanged."""
    if layout.channels != 4:
        return values
    alpha = source[(*block, slice(3, 4))]
    alpha = np.asarray(alpha.compute() if isinstance(alpha, da.Array) else alpha)
    return np.concatenate([values, alpha.astype(values.dtype, copy=False)], axis=-1)
