"""Whole slides out: pyramids, OME-Zarr and OME-TIFF writers, tissue masks, slide denoising.

A whole slide never sits in memory. :func:`denoise_slide` cuts level 0 into blocks (one
output chunk each, plus a halo of context), hands each block to the engine, and writes the
result straight into the level-0 array of an OME-Zarr store; the pyramid is then built level
by level from the level below it on disk. Peak memory is therefore one block and its halo
(plus the engine's batch), whatever the slide's size.

Everything is written under ``<out>.partial`` and renamed to ``<out>`` only when complete, so
an interrupted or crashed run never leaves a file that looks finished. A denoising run records
its finished blocks in ``<out>.partial``; running it again with the same input and settings
resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import shutil
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

from .events import drain, relay
from .io import ImageReadError, check_levels, read_image

#: Edge of the level-0 blocks that are denoised (or skipped) and stored as one chunk each.
BLOCK_SIZE = 1024
#: Pyramids stop once the longest side of the last level is at most this many pixels.
MIN_LEVEL_SIDE = 1024
#: Longest side of the low-resolution image the tissue mask is computed on.
MASK_SIDE = 2048
#: Mean brightness (fraction of the dtype's range) the bright Otsu class must reach to be
#: glass; below it the image has no background and all of it is tissue.
GLASS_BRIGHTNESS = 0.88
#: OME-NGFF version of the stores written here (zarr format 2).
NGFF_VERSION = "0.4"
#: Group attribute of a ``.partial`` store that records the run and its finished blocks.
_STATE_KEY = "histo_denoise_progress"


# --------------------------------------------------------------------------- pyramids


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
        lv if isinstance(lv, da.Array) else da.from_array(lv, chunks=_chunks(lv)) for lv in levels
    ]
    check_levels(levels, source="input image")
    return levels


def _chunks(array: Any) -> tuple[int, ...]:
    return (BLOCK_SIZE, BLOCK_SIZE, *array.shape[2:])


# --------------------------------------------------------------------------- OME-Zarr


def _ngff_axes(ndim: int, mpp: float | None) -> list[dict[str, str]]:
    space = [{"name": n, "type": "space"} for n in "yx"]
    if mpp:
        for axis in space:
            axis["unit"] = "micrometer"
    return ([{"name": "c", "type": "channel"}] if ndim == 3 else []) + space


def _to_disk_order(level: da.Array) -> da.Array:
    """YXC (napari's order) -> CYX (OME-NGFF's order: channels before space)."""
    return da.moveaxis(level, -1, 0) if level.ndim == 3 else level


def _create_level(group: Any, index: int, shape: tuple[int, ...], dtype: Any, chunk: int) -> Any:
    disk_shape = (shape[2], *shape[:2]) if len(shape) == 3 else tuple(shape)
    chunks = (shape[2], chunk, chunk) if len(shape) == 3 else (chunk, chunk)
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
    disk = _to_disk_order(level).rechunk(target.chunks)
    da.store(disk, target, lock=False)


def _open_level(group: Any, index: int) -> da.Array:
    array = group[str(index)]
    level = da.from_array(array, chunks=array.chunks, asarray=True, fancy=False)
    return da.moveaxis(level, 0, -1) if level.ndim == 3 else level


def _write_multiscales(
    group: Any, shapes: list[tuple[int, ...]], mpp: float | None, name: str, rgb: bool
) -> None:
    unit = mpp or 1.0
    datasets = []
    for i, shape in enumerate(shapes):
        factor = [shapes[0][0] / shape[0], shapes[0][1] / shape[1]]
        if i and all(math.ceil(shapes[0][k] / 2**i) == shape[k] for k in (0, 1)):
            factor = [2.0**i, 2.0**i]
        scale = [unit * f for f in factor]
        scale = ([1.0] if len(shape) == 3 else []) + scale
        datasets.append(
            {"path": str(i), "coordinateTransformations": [{"type": "scale", "scale": scale}]}
        )
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
    if rgb:
        window = omero_window(group["0"].dtype)
        colors = ("FF0000", "00FF00", "0000FF", "FFFFFF")
        attrs["omero"] = {
            "name": name,
            "rdefs": {"model": "color"},
            "channels": [
                {
                    "label": label,
                    "color": color,
                    "active": True,
                    "window": window,
                }
                for label, color in zip(("red", "green", "blue", "alpha"), colors, strict=True)
            ][: shapes[0][2]],
        }
    group.attrs.update(attrs)


def omero_window(dtype: Any) -> dict[str, float]:
    """Return the OMERO display window of ``dtype``: its whole range (integers) or [0, 1]."""
    dtype = np.dtype(dtype)
    low, high = (np.iinfo(dtype).min, np.iinfo(dtype).max) if dtype.kind in "iu" else (0, 1)
    return {"min": low, "max": high, "start": low, "end": high}


def _finish_ome_zarr(group: Any, n_levels: int, mpp: float | None, name: str, chunk: int) -> None:
    """Build levels 1.. from level 0 on disk, each from the one below it, and write metadata."""
    level = _open_level(group, 0)
    shapes = [tuple(level.shape)]
    for i in range(1, n_levels):
        smaller = downsample2(level)
        _store_level(smaller, _create_level(group, i, smaller.shape, smaller.dtype, chunk))
        level = _open_level(group, i)
        shapes.append(tuple(level.shape))
    _write_multiscales(
        group, shapes, mpp, name, rgb=len(shapes[0]) == 3 and shapes[0][2] in (3, 4)
    )


def _partial(path: Path) -> Path:
    return path.with_name(path.name + ".partial")


def _check_target(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise ValueError(f"{path} already exists; choose another name or pass overwrite=True")


def _publish(partial: Path, path: Path) -> None:
    """Move a finished ``partial`` to ``path`` (replacing what was there)."""
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
    os.replace(partial, path)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()


def _open_group(path: Path) -> Any:
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
    overwrite : bool
        Replace ``path`` if it exists (otherwise a ValueError).

    Returns
    -------
    Path
        ``path``. Written under ``<path>.partial`` and renamed when complete.
    """
    path = Path(path)
    _check_target(path, overwrite)
    levels = as_levels(data)
    partial = _partial(path)
    _remove(partial)
    name = name or path.name.split(".")[0]
    try:
        group = _open_group(partial)
        for i, level in enumerate(levels):
            _store_level(level, _create_level(group, i, level.shape, level.dtype, chunk))
        if len(levels) == 1:
            _finish_ome_zarr(group, pyramid_depth(levels[0].shape, n_levels), mpp, name, chunk)
        else:
            _write_multiscales(
                group, [tuple(lv.shape) for lv in levels], mpp, name, rgb=_is_rgb(levels[0])
            )
        _publish(partial, path)
    except BaseException:
        _remove(partial)
        raise
    return path


def _is_rgb(level: Any) -> bool:
    return level.ndim == 3 and level.shape[2] in (3, 4)


# --------------------------------------------------------------------------- OME-TIFF


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
        Replace ``path`` if it exists (otherwise a ValueError).

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
    _check_target(path, overwrite)
    levels = as_levels(data)
    if len(levels) == 1:
        for _ in range(1, pyramid_depth(levels[0].shape, n_levels)):
            levels.append(downsample2(levels[-1]))
    rgb = _is_rgb(levels[0])
    metadata: dict[str, Any] = {"axes": "YXS" if rgb else "YX" if levels[0].ndim == 2 else "YXC"}
    if mpp:
        metadata.update(
            PhysicalSizeX=mpp, PhysicalSizeY=mpp, PhysicalSizeXUnit="µm", PhysicalSizeYUnit="µm"
        )
    partial = _partial(path)
    try:
        with tifffile.TiffWriter(partial, bigtiff=True, ome=True) as tif:
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
        _publish(partial, path)
    except BaseException:
        _remove(partial)
        raise
    return path


# --------------------------------------------------------------------------- tissue mask


def tissue_mask(data: Any, *, max_side: int = MASK_SIDE) -> np.ndarray:
    """Find tissue (not white glass) on a low-resolution view of a slide.

    The largest pyramid level whose longest side is at most ``max_side`` is used (else the
    smallest level, subsampled to fit). Tissue is what is darker than
    Otsu's threshold on the smoothed grey image, grown by two pixels so that tissue edges are
    kept. If the bright class is not near white (mean below ``GLASS_BRIGHTNESS``), the image has no
    glass and all of it is tissue.

    Parameters
    ----------
    data : array-like, list of array-like, or path
        The slide (``(Y, X[, C])`` or a pyramid, level 0 first, or a file to read).
    max_side : int
        Longest side of the low-resolution image the mask is computed on.

    Returns
    -------
    numpy.ndarray of bool
        The mask, ``True`` on tissue, at a resolution of its own (map it to level 0 by the
        ratio of shapes).
    """
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    levels = as_levels(data)
    fitting = [lv for lv in levels if max(lv.shape[:2]) <= max_side]
    low = fitting[0] if fitting else levels[-1]
    step = max(1, math.ceil(max(low.shape[:2]) / max_side))
    image = np.asarray(low[::step, ::step].compute(), dtype=np.float32)
    if np.issubdtype(low.dtype, np.integer):
        image /= np.iinfo(low.dtype).max
    grey = image[..., :3].mean(axis=-1) if image.ndim == 3 else image
    if float(grey.max() - grey.min()) < 1e-6:
        return np.full(grey.shape, grey.mean() < GLASS_BRIGHTNESS)
    grey = ndimage.gaussian_filter(grey, sigma=1.0)  # Otsu on smoothed grey: fewer specks
    threshold = threshold_otsu(grey)
    background = grey > threshold
    if grey[background].mean() < GLASS_BRIGHTNESS:
        return np.ones(grey.shape, dtype=bool)
    return ndimage.binary_dilation(~background, iterations=2)


def _has_tissue(mask: np.ndarray, shape: tuple[int, ...], y: slice, x: slice) -> bool:
    """Whether the level-0 region (y, x) of an image of ``shape`` touches tissue in ``mask``."""
    fy, fx = mask.shape[0] / shape[0], mask.shape[1] / shape[1]
    y0, y1 = int(y.start * fy), max(int(y.start * fy) + 1, math.ceil(y.stop * fy))
    x0, x1 = int(x.start * fx), max(int(x.start * fx) + 1, math.ceil(x.stop * fx))
    return bool(mask[y0:y1, x0:x1].any())


# --------------------------------------------------------------------------- denoising


def _blocks(shape: tuple[int, ...], block: int) -> list[tuple[slice, slice]]:
    return [
        (slice(y, min(y + block, shape[0])), slice(x, min(x + block, shape[1])))
        for y in range(0, shape[0], block)
        for x in range(0, shape[1], block)
    ]


def _grow(region: tuple[slice, slice], halo: int, shape: tuple[int, ...]) -> tuple[slice, slice]:
    return tuple(
        slice(max(0, s.start - halo), min(n, s.stop + halo))
        for s, n in zip(region, shape[:2], strict=True)
    )


def _fingerprint(model: Any, weights: Any) -> str:
    """A short identity of the model and weights, so a resume never mixes two models."""
    digest = hashlib.sha256(str(model if isinstance(model, str) else type(model)).encode())
    if isinstance(weights, (str, os.PathLike)):
        from .checkpoint import file_sha256

        digest.update(file_sha256(weights).encode())
    state = weights if weights is not None else getattr(model, "state_dict", dict)()
    if isinstance(state, dict):
        for key in sorted(state):
            digest.update(key.encode())
            digest.update(state[key].detach().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def _content_sample(level0: da.Array, edge: int = 64) -> str:
    """Hash of three small patches (corner, centre, far corner): same-shaped inputs differ."""
    h, w = level0.shape[:2]
    digest = hashlib.sha256()
    for y, x in ((0, 0), (h // 2, w // 2), (max(0, h - edge), max(0, w - edge))):
        digest.update(np.ascontiguousarray(level0[y : y + edge, x : x + edge]).tobytes())
    return digest.hexdigest()[:16]


def _cancelled(cancel: Any) -> bool:
    if cancel is None:
        return False
    return cancel.is_set() if hasattr(cancel, "is_set") else bool(cancel())


def _finished_blocks(partial: Path, signature: dict[str, Any]) -> set[int]:
    """Blocks a previous run of the same job finished in ``partial`` (none if another job)."""
    import zarr

    try:
        state = dict(zarr.open_group(str(partial), mode="r").attrs).get(_STATE_KEY, {})
    except (FileNotFoundError, ValueError, KeyError, TypeError):  # missing or damaged store
        return set()
    return set(state.get("done", ())) if state.get("signature") == signature else set()


def _save_state(group: Any, signature: dict[str, Any], done: set[int]) -> None:
    group.attrs[_STATE_KEY] = {"signature": signature, "done": sorted(done)}


def default_block_size(tile_size: int, overlap: int) -> int:
    """Block edge near ``BLOCK_SIZE`` whose block plus halo is a whole number of engine tiles.

    A block with its halo of ``overlap`` on each side then costs no more tiles per pixel
    than the whole slide in one piece would.
    """
    stride = tile_size - overlap
    return max(1, round(BLOCK_SIZE / stride)) * stride - overlap


def iter_denoise_slide(
    path_or_levels: Any,
    out: str | Path,
    *,
    model: Any = "basic",
    weights: Any = None,
    tissue_only: bool = False,
    mask: Any = None,
    tile_size: int = 256,
    overlap: int = 32,
    batch_size: int | None = None,
    device: str = "auto",
    precision: str = "auto",
    cancel: Any = None,
    resume: bool = True,
    mpp: float | None = None,
    n_levels: int | None = None,
    block_size: int | None = None,
    overwrite: bool = False,
) -> Generator[Any, None, Path]:
    """Denoise a slide (level 0) into a pyramidal OME-Zarr store, yielding progress.

    Parameters
    ----------
    path_or_levels : str, Path, array-like or list of array-like
        A slide file/store (read with :func:`napari_histo_denoise.io.read_image`), an RGB
        ``(Y, X, 3)`` array, or a pyramid (level 0 first). Only level 0 is denoised; the
        other levels are used for the tissue mask.
    out : str or Path
        The OME-Zarr store to create (OME-NGFF 0.4; ``.ome.zarr`` by convention).
    model, weights
        As for :func:`napari_histo_denoise.engine.denoise`: ``"basic"``/``"deep"`` with
        weights (path or state dict), or any ``torch.nn.Module``.
    tissue_only : bool
        Denoise only blocks that touch tissue (Otsu on a low-resolution level, see
        :func:`tissue_mask`); background blocks are copied through untouched. Tissue blocks
        are identical to a run without the option.
    mask : array-like, optional
        A 2D mask (nonzero = tissue, any resolution: scaled to level 0) to use instead of
        the Otsu mask; implies ``tissue_only``.
    tile_size, overlap, batch_size, device, precision
        Passed to the engine. ``overlap`` is also the halo of context around each block.
    cancel : threading.Event or callable, optional
        Checked between batches; when set (or returning True) ``engine.Cancelled`` is
        raised and ``<out>.partial`` is kept for a resume.
    resume : bool
        Continue a previous run of the same input and settings from ``<out>.partial``
        (finished blocks are skipped); False starts afresh.
    mpp : float, optional
        Microns per pixel (default: from the file's metadata).
    n_levels : int, optional
        Pyramid depth (default: halve until the longest side is at most ``MIN_LEVEL_SIDE``).
    block_size : int, optional
        Edge of the level-0 blocks (and output chunks); memory is bounded by one block.
        Default: :func:`default_block_size` (1088 for 256-pixel tiles with 32 overlap).
    overwrite : bool
        Replace ``out`` if it exists (otherwise a ValueError).

    Yields
    ------
    engine.Progress
        ``done`` and ``total`` in level-0 pixels, after each engine batch and each block.

    Returns
    -------
    Path
        ``out``, once complete.
    """
    from .engine import Cancelled, Progress, iter_denoise
    from .settings import DenoiseSettings

    out = Path(out)
    _check_target(out, overwrite)
    # Validate every engine setting now, before any mask or file is made.
    settings = DenoiseSettings(
        model=model,
        weights=weights,
        tile_size=tile_size,
        overlap=overlap,
        batch_size=batch_size,
        device=device,
        precision=precision,
    )
    options = {
        f.name: getattr(settings, f.name)
        for f in dataclasses.fields(settings)
        if f.name not in ("model", "weights")
    }
    block_size = block_size or default_block_size(tile_size, overlap)
    if block_size < 16:
        raise ValueError(f"block_size must be at least 16 pixels, got {block_size}")
    meta: dict[str, Any] = {}
    if isinstance(path_or_levels, (str, os.PathLike)):
        data, meta = read_image(path_or_levels)
        levels = data if isinstance(data, list) else [data]
    else:
        levels = as_levels(path_or_levels)
    mpp = mpp or meta.get("mpp")
    level0 = levels[0]
    if level0.ndim != 3 or level0.shape[2] != 3:
        raise ImageReadError(
            f"slide denoising needs an RGB image (Y, X, 3); got shape {tuple(level0.shape)}"
        )
    if mask is not None:
        tissue = np.asarray(mask).astype(bool)
        if tissue.ndim != 2:
            raise ValueError(f"mask must be 2D (Y, X), got shape {tissue.shape}")
    elif tissue_only:
        tissue = tissue_mask(levels)
    else:
        tissue = None

    signature = {
        "shape": list(level0.shape),
        "dtype": str(level0.dtype),
        "source": str(meta.get("path", "array")),
        "content": _content_sample(level0),
        "model": _fingerprint(model, weights),
        "tile_size": tile_size,
        "overlap": overlap,
        "block_size": block_size,
        "mask": None if tissue is None else hashlib.sha256(np.packbits(tissue)).hexdigest()[:16],
    }
    partial = _partial(out)
    done = _finished_blocks(partial, signature) if resume and partial.exists() else set()
    if not done:
        _remove(partial)
    group = _open_group(partial)
    if done:
        target = group["0"]
    else:
        target = _create_level(group, 0, level0.shape, level0.dtype, block_size)
        _save_state(group, signature, done)

    blocks = _blocks(level0.shape, block_size)
    total = int(level0.shape[0] * level0.shape[1])
    finished = sum(
        (y.stop - y.start) * (x.stop - x.start) for i, (y, x) in enumerate(blocks) if i in done
    )
    start = time.perf_counter()
    for index, (y, x) in enumerate(blocks):
        if index in done:
            continue
        if _cancelled(cancel):
            raise Cancelled("slide denoising cancelled; run again to resume")
        pixels = (y.stop - y.start) * (x.stop - x.start)
        if tissue is None or _has_tissue(tissue, level0.shape, y, x):
            gy, gx = _grow((y, x), overlap, level0.shape)
            source = np.asarray(level0[gy, gx].compute())
            runner = iter_denoise(source, model, weights, cancel=cancel, **options)
            result_block = np.asarray(
                (
                    yield from relay(
                        runner,
                        lambda step, finished=finished, pixels=pixels: Progress(
                            finished + int(step.done / max(1, step.total) * pixels),
                            total,
                            time.perf_counter() - start,
                        ),
                    )
                )
            )
            block = result_block[
                y.start - gy.start : y.stop - gy.start, x.start - gx.start : x.stop - gx.start
            ]
        else:
            block = np.asarray(level0[y, x].compute())
        target[:, y, x] = np.moveaxis(block.astype(level0.dtype, copy=False), -1, 0)
        done.add(index)
        _save_state(group, signature, done)
        finished += pixels
        yield Progress(finished, total, time.perf_counter() - start)

    name = meta.get("name") or out.name.split(".")[0]
    _finish_ome_zarr(group, pyramid_depth(level0.shape, n_levels), mpp, name, block_size)
    del group.attrs[_STATE_KEY]
    _publish(partial, out)
    return out


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
        Called as ``progress(done, total)`` (level-0 pixels) after each batch and block.

    Returns
    -------
    Path
        ``out``, complete (the partial store renamed).
    """
    runner = iter_denoise_slide(path_or_levels, out, **options)
    return drain(runner, progress and (lambda step: progress(step.done, step.total)))
