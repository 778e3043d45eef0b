"""Images and whole slides in: PNG/JPEG, TIFF, SVS, pyramidal (OME-)TIFF, zarr and OME-Zarr.

Everything is read lazily: a TIFF level becomes a dask array over tifffile's zarr view of
the file, a zarr array a dask array over the store, so a 100,000 x 100,000 slide costs
nothing until pixels are asked for. :func:`read_image` returns ``(data, meta)``; ``data`` is one
dask array, or a list of dask arrays for a pyramid (level 0, the full resolution, first).
Arrays are ``(Y, X)`` or ``(Y, X, C)`` (channels last, as napari wants RGB).

Writers live in :mod:`napari_histo_denoise.slides` (they need the pyramid builder).
"""

from __future__ import annotations

import re
import weakref
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

#: File suffixes read through tifffile.
TIFF_SUFFIXES = (".tif", ".tiff", ".svs", ".ndpi", ".scn", ".bif", ".btf", ".tf8", ".qptiff")
#: File suffixes read as ordinary 2D pictures.
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
#: Target edge of a dask chunk (a whole number of the file's tiles), big enough that a
#: gigapixel slide is hundreds of tasks, not hundreds of thousands.
CHUNK_EDGE = 2048
#: Microns per unit of length, for the units TIFF/OME/NGFF metadata use.
_MICRONS = {
    "nm": 1e-3,
    "nanometer": 1e-3,
    "µm": 1.0,
    "um": 1.0,
    "micron": 1.0,
    "micrometer": 1.0,
    "mm": 1e3,
    "millimeter": 1e3,
    "cm": 1e4,
    "centimeter": 1e4,
    "m": 1e6,
    "meter": 1e6,
}
#: A TIFF resolution coarser than this many microns per pixel is a screen or print DPI
#: (72 dpi is 353 µm), not a microscope's pixel size, and is ignored.
_MAX_PLAUSIBLE_MPP = 50.0


class ImageReadError(ValueError):
    """A file that cannot be read as an image or slide (unreadable, unsupported, inconsistent)."""


def read_image(path: str | Path) -> tuple[da.Array | list[da.Array], dict[str, Any]]:
    """Read an image or whole slide lazily.

    Parameters
    ----------
    path : str or Path
        PNG/JPEG/BMP picture, TIFF/SVS/NDPI/pyramidal TIFF/OME-TIFF file, or a zarr /
        OME-Zarr directory (a single array or an OME-NGFF multiscales group).

    Returns
    -------
    data : dask.array.Array or list of dask.array.Array
        The image, ``(Y, X)`` or ``(Y, X, C)``; a list (level 0 first) when the file holds
        a pyramid.
    meta : dict
        ``rgb`` (bool), ``axes`` (``"YX"`` or ``"YXC"``), ``mpp`` (microns per pixel at
        level 0, or None when the file does not say), ``scale`` (``(mpp, mpp)``, or
        ``(1.0, 1.0)`` without a pixel size), ``units`` (``"µm"`` or ``"pixel"``),
        ``format`` (e.g. ``"svs"``, ``"ome-tiff"``, ``"ome-zarr"``), ``multiscale``
        (bool), ``name`` (the file's stem) and ``path``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ImageReadError
        If the file is not a readable image of a supported format, has axes other than
        Y, X and channels, or its pyramid levels disagree in channels or dtype.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such image: {path}")
    name = path.name.lower()
    if path.is_dir() or name.endswith(".zarr"):
        levels, mpp, fmt = _read_zarr(path)
    elif name.endswith(TIFF_SUFFIXES):
        levels, mpp, fmt = _read_tiff(path)
    elif name.endswith(PICTURE_SUFFIXES):
        levels, mpp, fmt = _read_picture(path), None, name.rsplit(".", 1)[1]
    else:
        allowed = ", ".join((*TIFF_SUFFIXES, *PICTURE_SUFFIXES, ".zarr"))
        raise ImageReadError(
            f"unsupported image format {path.suffix!r} ({path}); allowed: {allowed}"
        )
    check_levels(levels, source=f"{fmt} file {path}")
    meta = image_meta(levels[0], mpp)
    meta.update(format=fmt, multiscale=len(levels) > 1, name=_stem(path), path=str(path))
    return (levels if len(levels) > 1 else levels[0]), meta


def image_meta(level0: Any, mpp: float | None) -> dict[str, Any]:
    """Return the ``rgb``/``axes``/``mpp``/``scale``/``units`` part of the metadata of an image.

    Parameters
    ----------
    level0 : array-like
        The full-resolution image, ``(Y, X)`` or ``(Y, X, C)``.
    mpp : float or None
        Microns per pixel, if known.
    """
    rgb = level0.ndim == 3 and level0.shape[-1] in (3, 4)
    return {
        "rgb": rgb,
        "axes": "YXC" if level0.ndim == 3 else "YX",
        "mpp": mpp,
        "scale": (mpp, mpp) if mpp else (1.0, 1.0),
        "units": "µm" if mpp else "pixel",
    }


def check_levels(levels: list[Any], source: str = "image") -> None:
    """Refuse a pyramid whose levels are not the same kind of image at shrinking sizes.

    Parameters
    ----------
    levels : list of array-like
        Level 0 first; each ``(Y, X)`` or ``(Y, X, C)``.
    source : str
        What the levels came from, for the error message.

    Raises
    ------
    ImageReadError
        If a level has other axes, another channel count or dtype than level 0, or is
        larger than the level before it.
    """
    if not levels:
        raise ImageReadError(f"{source} holds no image")
    first = levels[0]
    if first.ndim not in (2, 3) or min(first.shape[:2]) < 1:
        raise ImageReadError(
            f"{source}: level 0 has shape {tuple(first.shape)}; expected (Y, X) or (Y, X, C)"
        )
    for i, level in enumerate(levels[1:], start=1):
        channels = level.shape[2:] if level.ndim == 3 else ()
        if level.ndim != first.ndim or channels != tuple(first.shape[2:]):
            raise ImageReadError(
                f"{source}: pyramid level {i} has shape {tuple(level.shape)} but level 0 has "
                f"{tuple(first.shape)}; all levels must have the same channels"
            )
        if level.dtype != first.dtype:
            raise ImageReadError(
                f"{source}: pyramid level {i} is {level.dtype} but level 0 is {first.dtype}; "
                "all levels must have the same dtype"
            )
        previous = levels[i - 1]
        if level.shape[0] > previous.shape[0] or level.shape[1] > previous.shape[1]:
            raise ImageReadError(
                f"{source}: pyramid level {i} {tuple(level.shape[:2])} is larger than level "
                f"{i - 1} {tuple(previous.shape[:2])}"
            )


def lazy_array(array: Any, axes: str, tile: tuple[int, int] | None = None) -> da.Array:
    """Wrap a zarr-like array in dask, chunked in whole storage tiles of about ``CHUNK_EDGE`` px.

    Parameters
    ----------
    array : array-like
        Anything with ``shape``, ``dtype`` and numpy slicing (zarr, tifffile store, numpy).
    axes : str
        One letter per axis, e.g. ``"YXC"`` or ``"CYX"``: Y and X are chunked, every other
        axis is kept whole, wherever it is (channels-first stores too).
    tile : (int, int), optional
        The storage tile in Y and X (default: the array's own chunks along those axes).
    """
    spatial = [axes.index(a) for a in "YX"]
    if tile is None:
        stored = getattr(array, "chunks", None)
        tile = tuple(stored[i] for i in spatial) if stored else (CHUNK_EDGE, CHUNK_EDGE)
    chunks = list(array.shape)
    for index, size in zip(spatial, tile, strict=True):
        chunks[index] = max(1, CHUNK_EDGE // max(1, size)) * size
    return da.from_array(array, chunks=tuple(chunks), asarray=True, fancy=False)


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".ome.zarr", ".ome.tiff", ".ome.tif"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _read_picture(path: Path) -> list[da.Array]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            array = np.asarray(img.convert("RGB") if img.mode in ("P", "CMYK", "YCbCr") else img)
    except (UnidentifiedImageError, OSError) as exc:
        raise ImageReadError(
            f"cannot read {path} as a {path.suffix[1:].upper()} image: {exc}"
        ) from None
    return [da.from_array(array, chunks=(CHUNK_EDGE, CHUNK_EDGE, *array.shape[2:]))]


def _read_tiff(path: Path) -> tuple[list[da.Array], float | None, str]:
    import tifffile
    import zarr

    kind = path.suffix[1:].upper()
    try:
        tif = tifffile.TiffFile(path)
    except Exception as exc:  # tifffile raises TiffFileError, ValueError, struct.error, ...
        raise ImageReadError(f"cannot read {path} as a {kind} file: {exc}") from None
    try:
        series = tif.series[0]
        fmt = "svs" if tif.is_svs else "ome-tiff" if tif.is_ome else path.suffix[1:].lower()
        _check_complete(tif, series, kind)
        levels, closer = [], _CloseWhenUnused(tif)
        for i, level in enumerate(series.levels):
            array = zarr.open_array(series.aszarr(level=i), mode="r")
            closer.watch(array)
            tile = level.keyframe.chunks[:2] if level.keyframe.is_tiled else None
            levels.append(_to_yxc(lazy_array(array, level.axes, tile), level.axes, path))
        mpp = _tiff_mpp(tif)
    except ImageReadError:
        tif.close()
        raise
    except Exception as exc:
        tif.close()
        raise ImageReadError(f"cannot read {path} as a {kind} file: {exc}") from None
    return levels, mpp, fmt


class _CloseWhenUnused:
    """Closes a file once every array that reads from it is gone.

    The lazy levels of a TIFF read from one open file for as long as a layer, a run or a
    dask graph holds them: the file is closed when the last of them is collected, so a long
    napari session does not leak a handle per slide opened.
    """

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.users = 0

    def watch(self, array: Any) -> None:
        self.users += 1
        weakref.finalize(array, self._release)

    def _release(self) -> None:
        self.users -= 1
        if self.users == 0:
            self.handle.close()


def _check_complete(tif: Any, series: Any, kind: str) -> None:
    """Refuse a file whose image data runs past its end (a truncated download or copy)."""
    size = tif.filehandle.size
    for level in series.levels:
        for page in level.pages:
            if page is None:
                continue
            ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts, strict=True) if n]
            if ends and max(ends) > size:
                raise ImageReadError(
                    f"{tif.filehandle.path} is a truncated or damaged {kind} file: its image data "
                    f"ends at byte {max(ends, default=0)} but the file has {size} bytes"
                )


def _to_yxc(array: da.Array, axes: str, path: Path) -> da.Array:
    """Drop singleton non-spatial axes and put channels (``S`` or ``C``) last."""
    keep = [i for i, ax in enumerate(axes) if ax in "YXSC" or array.shape[i] != 1]
    array = array[tuple(slice(None) if i in keep else 0 for i in range(array.ndim))]
    axes = "".join(axes[i] for i in keep).replace("S", "C")
    if axes not in ("YX", "YXC", "CYX"):
        raise ImageReadError(
            f"{path}: image axes {axes!r} are not supported; expected YX, YXC or CYX "
            "(one plane, optionally with channels)"
        )
    return da.moveaxis(array, 0, -1) if axes == "CYX" else array


def _tiff_mpp(tif: Any) -> float | None:
    """Microns per pixel of level 0 from Aperio, OME or TIFF resolution metadata."""
    page = tif.pages[0]
    if tif.is_svs:
        match = re.search(r"\|\s*MPP\s*=\s*([0-9.eE+-]+)", page.description)
        if match:
            return float(match.group(1))
    if tif.is_ome:
        mpp = _ome_xml_mpp(tif.ome_metadata)
        if mpp:
            return mpp
    xres = page.tags.get("XResolution")
    unit = page.tags.get("ResolutionUnit")
    if xres is None or unit is None or unit.value not in (2, 3):
        return None
    num, den = xres.value
    if not num or not den:
        return None
    microns_per_unit = 25400.0 if unit.value == 2 else 1e4
    mpp = microns_per_unit * den / num
    return mpp if mpp <= _MAX_PLAUSIBLE_MPP else None


def _ome_xml_mpp(xml: str | None) -> float | None:
    if not xml:
        return None
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    for element in root.iter():
        if element.tag.endswith("}Pixels") and "PhysicalSizeX" in element.attrib:
            size = float(element.attrib["PhysicalSizeX"])
            unit = element.attrib.get("PhysicalSizeXUnit", "µm")
            return size * _MICRONS.get(unit, 1.0)
    return None


def _read_zarr(path: Path) -> tuple[list[da.Array], float | None, str]:
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:
        raise ImageReadError(f"cannot read {path} as a zarr store: {exc}") from None
    if isinstance(node, zarr.Array):
        axes = "YXC"[: node.ndim]
        return [_to_yxc(lazy_array(node, axes), axes, path)], None, "zarr"
    attrs = dict(node.attrs)
    multiscales = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
    if not multiscales:
        arrays = sorted(name for name, _ in node.arrays())
        raise ImageReadError(
            f"{path} is a zarr group without OME-NGFF 'multiscales' metadata "
            f"(arrays: {arrays or 'none'}); open one of its arrays instead"
        )
    spec = multiscales[0]
    axes = spec.get("axes") or [
        {"name": n} for n in "tczyx"[-node[spec["datasets"][0]["path"]].ndim :]
    ]
    names = "".join((a["name"] if isinstance(a, dict) else a).upper() for a in axes)
    levels = []
    for dataset in spec["datasets"]:
        try:
            array = node[dataset["path"]]
        except KeyError:
            raise ImageReadError(
                f"{path}: OME-Zarr level {dataset['path']!r} is missing"
            ) from None
        levels.append(_to_yxc(lazy_array(array, names), names, path))
    mpp = _ngff_mpp(spec, names)
    return levels, mpp, "ome-zarr"


def _ngff_mpp(spec: dict[str, Any], names: str) -> float | None:
    """Microns per pixel along X of level 0 from OME-NGFF coordinate transformations."""
    transforms = spec["datasets"][0].get("coordinateTransformations", [])
    scales = [t["scale"] for t in transforms if t.get("type") == "scale"]
    if not scales or "X" not in names:
        return None
    x = names.index("X")
    axis = spec.get("axes", [])[x] if spec.get("axes") else {}
    unit = axis.get("unit") if isinstance(axis, dict) else None
    if unit not in _MICRONS:
        return None
    return float(scales[0][x]) * _MICRONS[unit]
