"""The geometry of one run: how an array maps to planes, and where its tiles go.

No torch and no dask here: an :class:`ImageLayout` says what the input is (leading axes,
colour channels, dtype), a :class:`TilePlan` where every tile sits, which tiles are skipped,
and how the tiles are grouped for reading and memory: bands of tile rows, each cut into
segments of tile columns when a whole-width band would not fit in ``BLOCK_BYTES``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .tiling import AxisGrid, Band, axis_grid, plan_bands

#: Input dtypes and the value that maps to 1.0 (floats are taken as [0, 1] and clipped).
DTYPE_SCALE = {
    np.dtype(np.uint8): 255.0,
    np.dtype(np.uint16): 65535.0,
    np.dtype(np.float32): 1.0,
    np.dtype(np.float64): 1.0,
}
#: Tiles a band should hold at least (more when the batch is larger).
BAND_TILES = 64
#: Upper bound of the float32 accumulator of one band segment, in bytes.
BLOCK_BYTES = 64 * 2**20
_PIXEL = 3 * 4  # accumulator bytes per pixel: three float32 channels (grey runs as three)


@dataclass(frozen=True)
class ImageLayout:
    """How an input array maps to planes: leading axes, colour channels, dtype."""

    shape: tuple[int, ...]
    dtype: np.dtype
    channels: int  # 0: grayscale planes (Y, X); 3: RGB; 4: RGBA (alpha passed through)

    @classmethod
    def of(cls, image: Any) -> ImageLayout:
        shape, dtype = getattr(image, "shape", None), getattr(image, "dtype", None)
        if shape is None or dtype is None or not hasattr(image, "__getitem__"):
            raise ValueError(
                f"image must be a numpy, dask or zarr array, got {type(image).__name__}"
            )
        shape, dtype = tuple(int(n) for n in shape), np.dtype(dtype)
        if dtype not in DTYPE_SCALE:
            raise ValueError(
                f"unsupported image dtype {dtype}; supported: uint8, uint16, float32, float64"
            )
        if len(shape) < 2:
            raise ValueError(f"image must have at least 2 axes (Y, X), got shape {shape}")
        channels = shape[-1] if len(shape) >= 3 and shape[-1] in (3, 4) else 0
        plane = shape[-3:-1] if channels else shape[-2:]
        if min(plane) < 1 or math.prod(shape) == 0:
            raise ValueError(f"image is empty: shape {shape}")
        return cls(shape, dtype, channels)

    @property
    def leading(self) -> tuple[int, ...]:
        return self.shape[:-3] if self.channels else self.shape[:-2]

    @property
    def height(self) -> int:
        return self.shape[len(self.leading)]

    @property
    def width(self) -> int:
        return self.shape[len(self.leading) + 1]

    @property
    def colour(self) -> tuple[slice, ...]:
        """Index of the denoised channels after the Y and X indices (RGB of RGBA, else all)."""
        return (slice(0, 3),) if self.channels == 4 else ()

    @property
    def planes(self) -> list[tuple[int, ...]]:
        """Indices of the 2-D planes, in order (``[()]`` for a single plane)."""
        return list(np.ndindex(*self.leading))


class TilePlan:
    """Tile positions, skipped tiles, bands and segments of one run.

    Parameters
    ----------
    layout : ImageLayout
        The input.
    tile_size, overlap : int
        Tile side and blending overlap (checked by the settings).
    batch_size : int or None
        Tiles per forward pass; bands hold at least as many tiles when they can.
    tissue : numpy.ndarray, optional
        A 2-D mask of the plane, at any resolution (nonzero: tissue). Tiles that touch no
        tissue are skipped: they pass their input through, blended like any tile, so the
        output is the input wherever only skipped tiles reach. ``None`` skips none.
    square_blocks : bool
        How to cut an image too wide for whole-width bands: into square-ish blocks of about
        ``BLOCK_BYTES`` (bands of several tile rows, segments of as many columns), which read
        each source chunk fewer times; else into bands of one tile row (the lazy result,
        whose tasks read whole bands, keeps those small).
    """

    def __init__(
        self,
        layout: ImageLayout,
        tile_size: int,
        overlap: int,
        batch_size: int | None = None,
        tissue: np.ndarray | None = None,
        *,
        square_blocks: bool = False,
    ) -> None:
        self.layout = layout
        self.grid_y = axis_grid(layout.height, tile_size, overlap)
        self.grid_x = axis_grid(layout.width, tile_size, overlap)
        ny, nx = len(self.grid_y.starts), len(self.grid_x.starts)
        self.skip = None if tissue is None else ~self.tiles_over(tissue)
        rows = math.ceil(max(BAND_TILES, batch_size or 0) / nx)
        columns = nx
        if self._block_bytes(rows, columns) > BLOCK_BYTES:  # too wide for whole-width bands
            side = math.isqrt(
                BLOCK_BYTES // (self._stride(self.grid_y) * self._stride(self.grid_x) * _PIXEL)
            )
            columns = max(1, min(nx, side if square_blocks else self._fitting_columns(1)))
            rows = max(
                1,
                BLOCK_BYTES
                // (self._stride(self.grid_y) * self._span(self.grid_x, columns) * _PIXEL),
            )
        self.segments = plan_bands(self.grid_x, columns)
        self.bands = plan_bands(self.grid_y, rows)
        self.tiles_per_plane = ny * nx
        self.total = math.prod(layout.leading) * self.tiles_per_plane

    @staticmethod
    def _stride(grid: AxisGrid) -> int:
        return max(1, grid.tile - grid.overlap)

    def _span(self, grid: AxisGrid, tiles: int) -> int:
        """Pixels ``tiles`` consecutive tiles of ``grid`` cover."""
        return min(grid.padded, tiles * self._stride(grid) + grid.overlap)

    def _block_bytes(self, rows: int, columns: int) -> int:
        """float32 accumulator bytes of a band segment of ``rows`` x ``columns`` tiles."""
        return self._span(self.grid_y, rows) * self._span(self.grid_x, columns) * _PIXEL

    def _fitting_columns(self, rows: int) -> int:
        """The most tile columns a band segment of ``rows`` tile rows holds in ``BLOCK_BYTES``."""
        height = self._span(self.grid_y, rows)
        return (BLOCK_BYTES // (height * _PIXEL) - self.grid_x.overlap) // self._stride(
            self.grid_x
        )

    def band_tiles(self, band: Band) -> int:
        """Tiles in a band of tile rows."""
        return (band.stop_tile - band.first_tile) * len(self.grid_x.starts)

    def skipped(self, i: int, j: int) -> bool:
        return self.skip is not None and bool(self.skip[i, j])

    def tiles_over(self, mask: np.ndarray) -> np.ndarray:
        """Which tiles touch a nonzero pixel of ``mask`` (any resolution, scaled to the plane).

        Returns
        -------
        numpy.ndarray of bool
            ``(tile rows, tile columns)``.

        Raises
        ------
        ValueError
            If ``mask`` is not 2-D.
        """
        mask = np.asarray(mask)
        if mask.ndim != 2 or 0 in mask.shape:
            raise ValueError(f"mask must be 2D (Y, X), got shape {mask.shape}")
        mask = mask.astype(bool)
        fy, fx = mask.shape[0] / self.layout.height, mask.shape[1] / self.layout.width
        touched = np.zeros((len(self.grid_y.starts), len(self.grid_x.starts)), dtype=bool)
        for i, y in enumerate(self.grid_y.starts):
            y0, y1 = _scaled(y, y + self.grid_y.tile, fy, mask.shape[0])
            for j, x in enumerate(self.grid_x.starts):
                x0, x1 = _scaled(x, x + self.grid_x.tile, fx, mask.shape[1])
                touched[i, j] = mask[y0:y1, x0:x1].any()
        return touched


def _scaled(start: int, stop: int, factor: float, size: int) -> tuple[int, int]:
    low = min(size - 1, int(start * factor))
    return low, max(low + 1, min(size, math.ceil(stop * factor)))
