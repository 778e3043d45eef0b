"""Denoise a region of an image, reusing the tiles an earlier region already computed.

The region's pixels are exactly those a whole-image run gives there: the tiles are the
whole image's tiles (same grid, windows and summed weights), only those touching the
region are run, and each tile's model output can be kept in a :class:`TileCache` so that a
region overlapping an earlier one (a pan, a zoom at the same level) runs only its new tiles.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Generator, Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..events import Progress, drain
from .tiling import AxisGrid, Band

#: Default bound of a :class:`TileCache` (about 680 RGB tiles of 256 px).
CACHE_BYTES = 512 * 2**20


class TileCache:
    """Model outputs of tiles, least recently used first out, bounded in bytes.

    Keys are built by :func:`iter_denoise_region` from the caller's ``source`` (what the
    image is), the plane, tile grid, model and weights digest, device, precision and backend,
    and the tile's row and column, so a change of any of them misses. Safe to share between
    threads.

    Parameters
    ----------
    max_bytes : int
        Upper bound of the tensors held; the least recently used go first.
    """

    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = self.misses = 0
        self._tiles: OrderedDict[Hashable, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._tiles)

    def get(self, key: Hashable) -> torch.Tensor | None:
        """The tile stored under ``key`` (now the most recently used), or None."""
        with self._lock:
            values = self._tiles.get(key)
            if values is None:
                self.misses += 1
                return None
            self._tiles.move_to_end(key)
            self.hits += 1
            return values

    def put(self, key: Hashable, values: torch.Tensor) -> None:
        """Keep a CPU copy of ``values``, dropping the least recently used beyond the bound."""
        size = values.numel() * values.element_size()
        if size > self.max_bytes:
            return
        kept = torch.empty_like(values, device="cpu").copy_(values)
        with self._lock:
            old = self._tiles.pop(key, None)
            if old is not None:
                self.bytes -= old.numel() * old.element_size()
            self._tiles[key] = kept
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, dropped = self._tiles.popitem(last=False)
                self.bytes -= dropped.numel() * dropped.element_size()

    def clear(self) -> None:
        """Drop every tile."""
        with self._lock:
            self._tiles.clear()
            self.bytes = 0


@dataclass(frozen=True)
class RegionResult:
    """A denoised region and how its tiles were obtained.

    Attributes
    ----------
    data : numpy.ndarray
        The region's pixels, (rows, columns[, C]) in the image's dtype.
    rows, columns : slice
        Where the region lies in the image plane.
    computed : int
        Tiles the model ran on.
    reused : int
        Tiles taken from the cache.
    """

    data: np.ndarray
    rows: slice
    columns: slice
    computed: int
    reused: int


def iter_denoise_region(
    image: Any,
    rows: slice | tuple[int, int],
    columns: slice | tuple[int, int],
    model: str | nn.Module = "basic",
    weights: Any = None,
    *,
    plane: tuple[int, ...] = (),
    cache: TileCache | None = None,
    source: Hashable = None,
    **options: Any,
) -> Generator[Progress, None, RegionResult]:
    """Denoise ``image[plane][rows, columns]``, yielding a :class:`Progress` after each batch.

    Parameters
    ----------
    image : numpy.ndarray, dask.array.Array or zarr.Array
        As for :func:`~napari_histo_denoise.engine.denoise`; only the pixels under the
        region's tiles are read.
    rows, columns : slice or (start, stop)
        The region, in pixels of the plane (clipped to it; steps are not allowed).
    model, weights
        As for :func:`~napari_histo_denoise.engine.denoise`.
    plane : tuple of int
        Index of the plane along the leading axes (empty for a single plane).
    cache : TileCache, optional
        Where tiles are looked up first and kept after they are computed (tiles computed
        before a cancel stay there).
    source : hashable
        What ``image`` is (e.g. a layer's data and level), required with ``cache``: tiles
        are only reused for the same ``source``.
    **options
        ``tile_size``, ``overlap``, ``batch_size``, ``device``, ``precision``, ``backend``,
        ``cancel``, as for :func:`~napari_histo_denoise.engine.denoise`.

    Returns
    -------
    RegionResult
        The generator's return value.

    Raises
    ------
    ValueError
        For an empty region, a bad plane index, a cache without ``source``, or what
        :func:`~napari_histo_denoise.engine.denoise` refuses.
    """
    from . import make_run

    if cache is not None and source is None:
        raise ValueError("a cache needs a source: what the image is, so tiles are not mixed up")
    run = make_run(image, model, weights, **options)
    layout = run.layout
    plane = _check_plane(plane, layout.leading)
    rows = _clip(rows, layout.height, "rows")
    columns = _clip(columns, layout.width, "columns")
    grid_y, grid_x = run.plan.grid_y, run.plan.grid_x
    need_y, need_x = _touching(grid_y, rows), _touching(grid_x, columns)
    denoiser = run.denoiser()
    prepared = denoiser.prepared
    key = (
        source,
        plane,
        grid_y.tile,
        grid_x.tile,
        run.settings.overlap,
        run.source.token,
        str(prepared.device),
        prepared.precision,
        prepared.backend,
    )

    origin = (grid_y.starts[need_y[0]], grid_x.starts[need_x[0]])
    extent = (
        grid_y.starts[need_y[-1]] + grid_y.tile - origin[0],
        grid_x.starts[need_x[-1]] + grid_x.tile - origin[1],
    )
    channels = 3 if layout.channels else 1
    numerator = torch.zeros(channels, *extent, device=prepared.device)
    missing, reused = [], 0
    for tile in ((i, j) for i in need_y for j in need_x):
        values = cache.get((*key, *tile)) if cache is not None else None
        if values is None:
            missing.append(tile)
        else:
            denoiser.add(numerator, values.to(prepared.device), origin, *tile)
            reused += 1

    if missing:
        first_i, first_j = min(i for i, _ in missing), min(j for _, j in missing)
        last_i, last_j = max(i for i, _ in missing), max(j for _, j in missing)
        band = _run_of(grid_y, first_i, last_i)
        segment = _run_of(grid_x, first_j, last_j)
        pixels = denoiser.to_device(run.read_block(image, plane, band, segment))
        start, done = time.perf_counter(), 0

        def keep(i: int, j: int, values: torch.Tensor) -> None:
            denoiser.add(numerator, values, origin, i, j)
            if cache is not None:
                cache.put((*key, i, j), values)

        def advance(tiles: int) -> Progress:
            nonlocal done
            done += tiles
            return Progress(done, len(missing), time.perf_counter() - start)

        yield from denoiser.forward_tiles(
            pixels, (band.start, segment.start), missing, keep, advance
        )

    inside = numerator[
        :,
        rows.start - origin[0] : rows.stop - origin[0],
        columns.start - origin[1] : columns.stop - origin[1],
    ]
    values = run.finish(inside, rows.start, columns.start)
    if layout.channels == 4:  # alpha passes through
        alpha = np.asarray(image[(*plane, rows, columns, slice(3, 4))])
        values = np.concatenate([values, alpha], axis=-1)
    return RegionResult(values, rows, columns, len(missing), reused)


def denoise_region(*args: Any, **kwargs: Any) -> RegionResult:
    """Run :func:`iter_denoise_region` to the end (same arguments) and return its result."""
    return drain(iter_denoise_region(*args, **kwargs))


def _check_plane(plane: tuple[int, ...], leading: tuple[int, ...]) -> tuple[int, ...]:
    plane = tuple(int(i) for i in plane)
    if len(plane) != len(leading) or any(
        not 0 <= i < n for i, n in zip(plane, leading, strict=True)
    ):
        raise ValueError(
            f"plane {plane} is not a plane of leading axes {leading}: pass "
            f"plane=(one index per leading axis,)"
        )
    return plane


def _clip(region: slice | tuple[int, int], size: int, what: str) -> slice:
    if isinstance(region, (tuple, list)) and len(region) == 2:
        region = slice(*region)
    if not isinstance(region, slice):
        raise TypeError(f"{what} must be a slice or (start, stop), got {region!r}")
    if region.step not in (None, 1):
        raise ValueError(f"{what} must be a contiguous slice, got step {region.step}")
    start, stop, _ = region.indices(size)
    if stop <= start:
        raise ValueError(f"the region's {what} {region} hold no pixel of an axis of {size}")
    return slice(start, stop)


def _touching(grid: AxisGrid, region: slice) -> list[int]:
    """Indices of the tiles that cover any pixel of ``region``."""
    starts = enumerate(grid.starts)
    return [i for i, s in starts if s < region.stop and s + grid.tile > region.start]


def _run_of(grid: AxisGrid, first: int, last: int) -> Band:
    """Tiles ``first..last`` of ``grid`` as a run to read (seams do not matter here)."""
    start, stop = grid.starts[first], grid.starts[last] + grid.tile
    return Band(first, last + 1, start, stop, start, stop, min(stop, grid.size))
