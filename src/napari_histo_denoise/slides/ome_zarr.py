"""OME-Zarr (OME-NGFF 0.4, zarr format 2): writing a pyramid, and a resumable level-0 sink.

Images are stored channels first (``C, Y, X``, as NGFF orders axes) in chunks of
``chunk`` pixels; lower levels are built from the level below them on disk, so writing never
holds more than a few chunks in memory. Every store is written under ``<path>.partial`` and
renamed when complete (:mod:`napari_histo_denoise.files`).
"""

from __future__ import annotations

import math
from collections.abc import Generator
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

from ..engine.geometry import ImageLayout
from ..engine.sinks import with_alpha
from ..events import Progress, drain
from ..files import atomic_output, check_target, partial_path, publish, remove
from .pyramid import BLOCK_SIZE, as_levels, downsample2, pyramid_depth

#: OME-NGFF version of the stores written here (zarr format 2).
NGFF_VERSION = "0.4"
#: Group attribute of a ``.partial`` store that records the run and its finished bands.
STATE_KEY = "histo_denoise_progress"


def _ngff_axes(ndim: int, mpp: float | None) -> list[dict[str, str]]:
    space = [{"name": n, "type": "space"} for n in "yx"]
    if mpp:
        for axis in space:
            axis["unit"] = "micrometer"
    return ([{"name": "c", "type": "channel"}] if ndim == 3 else []) + space


def create_level(
    group: Any,
    index: int,
    shape: tuple[int, ...],
    dtype: Any,
    chunk: int,
    block: tuple[int, int] | None = None,
) -> Any:
    """Create level ``index`` of a ``(Y, X[, C])`` image in ``group``, stored channels first.

    Chunks are ``chunk`` square, or ``block`` (rows, columns) when given, so that a writer
    of whole blocks fills whole chunks.
    """
    disk_shape = (shape[2], *shape[:2]) if len(shape) == 3 else tuple(shape)
    spatial = block or (chunk, chunk)
    chunks = (shape[2], *spatial) if len(shape) == 3 else spatial
    return group.create_array(
        str(index),
        shape=disk_shape,
        chunks=tuple(min(c, s) for c, s in zip(chunks, disk_shape, strict=True)),
        dtype=dtype,
        chunk_key_encoding={"name": "v2", "separator": "/"},
        fill_value=0,
        overwrite=True,
    )


def _store_level(level: da.Array, target: Any) -> None:
    disk = da.moveaxis(level, -1, 0) if level.ndim == 3 else level
    da.store(disk.rechunk(target.chunks), target, lock=False)


def _open_level(group: Any, index: int) -> da.Array:
    array = group[str(index)]
    level = da.from_array(array, chunks=array.chunks, asarray=True, fancy=False)
    return da.moveaxis(level, 0, -1) if level.ndim == 3 else level


_RGBA_COLOURS = ("FF0000", "00FF00", "0000FF", "FFFFFF")


def omero_window(dtype: np.dtype) -> dict[str, float]:
    """The OME ``omero`` display window of a dtype's full range (0-1 for floats)."""
    dtype = np.dtype(dtype)
    end = float(np.iinfo(dtype).max) if dtype.kind in "ui" else 1.0
    return {"min": 0.0, "max": end, "start": 0.0, "end": end}


def write_multiscales(
    group: Any,
    shapes: list[tuple[int, ...]],
    dtype: Any,
    mpp: float | None,
    name: str,
    *,
    window: tuple[float, float] | None = None,
    translate: tuple[float, float] | None = None,
) -> None:
    """Write the NGFF ``multiscales`` and ``omero`` metadata of a pyramid.

    ``omero`` names RGB(A) channels red, green, blue (and alpha) and others white;
    ``window`` is their display range (default: the dtype's full range). ``translate`` is
    the position of level 0's first pixel, in the same units as the scale.
    """
    unit = mpp or 1.0
    spatial_offset = [0.0, 0.0] if translate is None else [float(t) for t in translate]
    datasets = []
    for i, shape in enumerate(shapes):
        factor = [shapes[0][0] / shape[0], shapes[0][1] / shape[1]]
        if i and all(math.ceil(shapes[0][k] / 2**i) == shape[k] for k in (0, 1)):
            factor = [2.0**i, 2.0**i]
        channel = [1.0] if len(shape) == 3 else []
        transforms: list[dict[str, Any]] = [
            {"type": "scale", "scale": channel + [unit * f for f in factor]}
        ]
        if translate is not None:
            offset = [0.0] if len(shape) == 3 else []
            transforms.append({"type": "translation", "translation": offset + spatial_offset})
        datasets.append({"path": str(i), "coordinateTransformations": transforms})
    attrs: dict[str, Any] = {
        "multiscales": [
            {
                "version": NGFF_VERSION,
                "name": name,
                "axes": _ngff_axes(len(shapes[0]), mpp),
                "datasets": datasets,
                "type": "mean of 2x2 blocks",
            }
        ]
    }
    shown = omero_window(dtype)
    if window is not None:
        shown.update(start=float(window[0]), end=float(window[1]))
    channels = shapes[0][2] if len(shapes[0]) == 3 else 1
    if channels in (3, 4):
        named = list(zip(("red", "green", "blue", "alpha"), _RGBA_COLOURS, strict=True))
    else:
        named = [(f"channel {c}", "FFFFFF") for c in range(channels)]
    attrs["omero"] = {
        "name": name,
        "rdefs": {"model": "color" if channels in (3, 4) else "greyscale"},
        "channels": [
            {"label": label, "color": color, "active": True, "window": dict(shown)}
            for label, color in named[:channels]
        ],
    }
    group.attrs.update(attrs)


def build_pyramid(
    group: Any, n_levels: int, chunk: int
) -> Generator[Progress, None, list[tuple[int, ...]]]:
    """Build levels 1.. from level 0 on disk, each from the one below; yield one event a level."""
    level = _open_level(group, 0)
    shapes = [tuple(level.shape)]
    for i in range(1, n_levels):
        smaller = downsample2(level)
        _store_level(smaller, create_level(group, i, smaller.shape, smaller.dtype, chunk))
        level = _open_level(group, i)
        shapes.append(tuple(level.shape))
        yield Progress(i, n_levels - 1, 0.0, "levels")
    return shapes


def open_group(path: Path) -> Any:
    """Open (or create) a zarr format 2 group for writing."""
    import zarr

    return zarr.open_group(str(path), mode="a", zarr_format=2)


def write_ome_zarr(
    data: Any,
    path: str | Path,
    *,
    mpp: float | None = None,
    n_levels: int | None = None,
    chunk: int = BLOCK_SIZE,
    name: str | None = None,
    window: tuple[float, float] | None = None,
    translate: tuple[float, float] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write an image or pyramid to an OME-Zarr store (OME-NGFF 0.4, zarr format 2), lazily.

    Parameters
    ----------
    data : array-like or list of array-like
        ``(Y, X)`` or ``(Y, X, C)`` (numpy, dask, zarr), or a pyramid (level 0 first), which
        is written as given. A single array is written as level 0 and the pyramid is built
        from it, each level from the one below it on disk.
    path : str or Path
        The store to create (``.ome.zarr`` by convention).
    mpp : float, optional
        Microns per pixel of level 0; stored as the scale of the levels (unit micrometer).
    n_levels : int, optional
        Pyramid depth for a single array (default: halve until the longest side is at most
        ``MIN_LEVEL_SIDE``).
    chunk : int
        Chunk edge in Y and X.
    name : str, optional
        Image name in the metadata (default: the file name's stem).
    window : (float, float), optional
        Display range of RGB(A) channels (``omero`` metadata); default the dtype's range.
    translate : (float, float), optional
        Position of the first pixel (Y, X), in the units of the scale.
    overwrite : bool
        Replace ``path`` if it exists (otherwise a FileExistsError).

    Returns
    -------
    Path
        ``path``. Written under ``<path>.partial`` and renamed when complete.
    """
    path = Path(path)
    check_target(path, overwrite)
    levels = as_levels(data)
    with atomic_output(path) as partial:
        group = open_group(partial)
        for i, level in enumerate(levels):
            _store_level(level, create_level(group, i, level.shape, level.dtype, chunk))
        shapes = [tuple(lv.shape) for lv in levels]
        if len(levels) == 1:
            depth = pyramid_depth(levels[0].shape, n_levels)
            shapes = drain(build_pyramid(group, depth, chunk))
        write_multiscales(
            group,
            shapes,
            levels[0].dtype,
            mpp,
            name or path.name.split(".")[0],
            window=window,
            translate=translate,
        )
    return path


class OmeZarrSink:
    """Level 0 of an OME-Zarr store filled band by band, resumable; the pyramid at the end.

    The store is written under ``<path>.partial``. With a ``signature`` (what makes two
    runs the same: input, model, tiling, mask), the bands a previous run of the same job
    finished there are kept and :attr:`first_band` says where to go on; any other partial
    store is replaced. Level 0's chunks are one ``block`` (the engine's band segment, so
    each segment fills whole chunks; default ``chunk`` square), the other levels' ``chunk``
    square. :meth:`finish` builds the lower levels and the metadata and renames the store to
    ``path``; a failed or cancelled run keeps ``<path>.partial`` for a resume.

    Raises
    ------
    ValueError
        For a stack (leading axes): an OME-Zarr image here is one plane, ``(Y, X[, C])``.
    """

    def __init__(
        self,
        path: str | Path,
        layout: ImageLayout,
        *,
        signature: dict[str, Any] | None,
        chunk: int = BLOCK_SIZE,
        block: tuple[int, int] | None = None,
        mpp: float | None = None,
        n_levels: int | None = None,
        name: str | None = None,
    ) -> None:
        if layout.leading:
            raise ValueError(
                f"an OME-Zarr pyramid holds one 2-D image (Y, X[, C]); got shape {layout.shape}: "
                "write a stack to a .zarr array instead"
            )
        if chunk < 16:
            raise ValueError(f"chunk must be at least 16 pixels, got {chunk}")
        self.path, self.layout, self.signature = Path(path), layout, signature
        self.chunk, self.mpp, self.name = chunk, mpp, name or self.path.name.split(".")[0]
        self.depth = pyramid_depth(layout.shape, n_levels)
        self.partial = partial_path(self.path)
        self.done = self._finished_bands()
        if not self.done:
            remove(self.partial)
        self.group = open_group(self.partial)
        if self.done:
            self.level0 = self.group["0"]
        else:
            self.level0 = create_level(self.group, 0, layout.shape, layout.dtype, chunk, block)
            self._save_state()

    @property
    def first_band(self) -> int:
        """The first band not yet in the store (bands are written in order)."""
        band = 0
        while band in self.done:
            band += 1
        return band

    def write(
        self,
        plane: tuple[int, ...],
        rows: slice,
        columns: slice,
        values: np.ndarray,
        source: Any,
    ) -> None:
        values = with_alpha(self.layout, (*plane, rows, columns), values, source)
        if values.ndim == 3:  # stored channels first
            self.level0[:, rows, columns] = np.moveaxis(values, -1, 0)
        else:
            self.level0[rows, columns] = values

    def band_done(self, plane: tuple[int, ...], index: int) -> None:
        self.done.add(index)
        self._save_state()

    def finish(self, **metadata: Any) -> Generator[Progress, None, Path]:
        """Build the pyramid and the metadata, and publish the store; yield one event a level."""
        shapes = yield from build_pyramid(self.group, self.depth, self.chunk)
        write_multiscales(self.group, shapes, self.layout.dtype, self.mpp, self.name, **metadata)
        del self.group.attrs[STATE_KEY]
        return publish(self.partial, self.path)

    def _finished_bands(self) -> set[int]:
        """Bands a previous run of the same job finished in the partial store (else none)."""
        import zarr

        if self.signature is None or not self.partial.exists():
            return set()
        try:
            state = dict(zarr.open_group(str(self.partial), mode="r").attrs).get(STATE_KEY, {})
        except (FileNotFoundError, ValueError, KeyError, TypeError):  # missing or damaged
            return set()
        return set(state.get("done", ())) if state.get("signature") == self.signature else set()

    def _save_state(self) -> None:
        self.group.attrs[STATE_KEY] = {"signature": self.signature, "done": sorted(self.done)}
