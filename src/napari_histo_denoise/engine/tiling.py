"""Tile grids, blending windows and bands of tile rows (numpy only: no torch, no dask).

Design (see docs/engine.md): along each axis the tiles sit at a stride of
``tile - overlap`` and the last one is shifted to end exactly at the image edge, so no
tile reaches past the image unless the image is shorter than a tile (then the image is
reflect-padded up to a multiple of 16). Each tile is weighted by a separable window that
tapers only on sides facing another tile: zero over the outer quarter of the overlap
(the pixels a network with zero padding gets most wrong), then a raised cosine, then one.
Facing tapers of two neighbours sum to exactly one, and the engine divides by the summed
weights anyway (which also covers the shifted last tile). Image borders are left as the
network sees them in a whole-image forward pass, so a tiled result equals the whole-image
result wherever the network's receptive field is smaller than the overlap.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from ..settings import TILE_MULTIPLE, check_tiling


def blend_window(tile: int, overlap: int, *, taper_start: bool, taper_end: bool) -> np.ndarray:
    """Return the 1-D blending weights of one tile along one axis.

    Parameters
    ----------
    tile : int
        Tile length.
    overlap : int
        Overlap with each neighbour; the taper spans this many pixels.
    taper_start, taper_end : bool
        Whether the tile has a neighbour before / after it (image borders get no taper).

    Returns
    -------
    numpy.ndarray
        float32 weights of length ``tile``: 0 over the outer ``overlap // 4`` pixels of a
        tapered side, a raised cosine over the middle half of the overlap, 1 elsewhere.
        Mirrored tapers of two neighbours sum to exactly 1 across their overlap.
    """
    window = np.ones(tile, dtype=np.float64)
    if overlap:
        zero = overlap // 4
        ramp = np.zeros(overlap)
        d = np.arange(zero, overlap - zero)
        ramp[zero : overlap - zero] = 0.5 - 0.5 * np.cos(np.pi * (d - zero + 0.5) / d.size)
        ramp[overlap - zero :] = 1.0
        if taper_start:
            window[:overlap] *= ramp
        if taper_end:
            window[tile - overlap :] *= ramp[::-1]
    return window.astype(np.float32)


@dataclass(frozen=True)
class AxisGrid:
    """Tile positions along one axis.

    Attributes
    ----------
    size : int
        Image length along the axis.
    tile : int
        Tile length used along the axis (``tile_size``, or less for a short axis).
    overlap : int
        Blending overlap.
    starts : tuple of int
        Tile starts; the last tile ends at ``max(size, tile)``.
    """

    size: int
    tile: int
    overlap: int
    starts: tuple[int, ...]

    @property
    def padded(self) -> int:
        """Length covered by the tiles: ``size``, or ``tile`` if the axis is shorter."""
        return max(self.size, self.tile)

    def window(self, index: int) -> np.ndarray:
        """Blending weights of tile ``index``."""
        last = len(self.starts) - 1
        return blend_window(self.tile, self.overlap, taper_start=index > 0, taper_end=index < last)

    def normaliser(self) -> np.ndarray:
        """Summed weights over the padded length (float32, positive everywhere)."""
        total = np.zeros(self.padded, dtype=np.float32)
        for i, start in enumerate(self.starts):
            total[start : start + self.tile] += self.window(i)
        return total


def axis_grid(size: int, tile_size: int, overlap: int) -> AxisGrid:
    """Place tiles along an axis of ``size`` pixels.

    A short axis gets one tile of ``size`` rounded up to a multiple of 16 (at most
    ``tile_size``); a long one tiles at stride ``tile_size - overlap`` with the last tile
    shifted to end at the edge.
    """
    check_tiling(tile_size, overlap)
    if size < 1:
        raise ValueError(f"image axes must be at least 1 pixel long, got {size}")
    if size <= tile_size:
        tile = min(tile_size, math.ceil(size / TILE_MULTIPLE) * TILE_MULTIPLE)
        return AxisGrid(size, tile, overlap, (0,))
    stride = tile_size - overlap
    count = math.ceil((size - overlap) / stride)
    starts = (*(i * stride for i in range(count - 1)), size - tile_size)
    return AxisGrid(size, tile_size, overlap, starts)


def reflect_indices(start: int, stop: int, size: int) -> np.ndarray:
    """Source indices of positions ``start..stop-1`` of an axis reflect-padded beyond ``size``.

    Reflection excludes the edge sample (numpy's ``"reflect"``), repeated as often as
    needed; an axis of one pixel repeats it.
    """
    positions = np.arange(start, stop)
    if size == 1:
        return np.zeros_like(positions)
    period = 2 * (size - 1)
    folded = np.mod(positions, period)
    return np.where(folded < size, folded, period - folded)


@dataclass(frozen=True)
class Band:
    """A run of consecutive tiles along one axis: rows of tiles (a band) or columns (a segment).

    Bands of tile rows are the unit of reading, batching and memory; a band wider than
    memory allows is cut into segments of tile columns the same way. All positions are
    pixels along the axis of the (possibly padded) image. The tiles cover
    ``[start, stop)``. Pixels ``[start, seam_start)`` are shared with the previous run and
    ``[seam_end, stop)`` with the next; the run's output is ``[start, out_stop)`` (the first
    run's ``start`` is 0; ``out_stop`` is the next run's ``start``, or the image size for
    the last run).
    """

    first_tile: int
    stop_tile: int
    start: int
    stop: int
    seam_start: int
    seam_end: int
    out_stop: int


def plan_bands(grid: AxisGrid, rows_per_band: int) -> list[Band]:
    """Group the tiles of ``grid`` into runs of ``rows_per_band`` tiles.

    A lone last tile joins the run before it: the shifted last tile may overlap two tiles
    before it, and keeping it with its neighbour means seams only join adjacent runs.
    """
    count = len(grid.starts)
    bounds = [*range(0, count, max(1, rows_per_band)), count]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] == 1:
        del bounds[-2]
    bands: list[Band] = []
    for b, (i0, i1) in enumerate(itertools.pairwise(bounds)):
        start, stop = grid.starts[i0], grid.starts[i1 - 1] + grid.tile
        last = i1 == count
        bands.append(
            Band(
                first_tile=i0,
                stop_tile=i1,
                start=start,
                stop=stop,
                seam_start=bands[b - 1].stop if b else start,
                seam_end=stop if last else grid.starts[i1],
                out_stop=grid.size if last else grid.starts[i1],
            )
        )
    return bands
