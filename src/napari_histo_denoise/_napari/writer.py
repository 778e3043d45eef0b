"""napari writer contributions: save an image layer as pyramidal OME-Zarr or OME-TIFF.

Thin faces on :func:`napari_histo_denoise.slides.write_ome_zarr` and
:func:`~napari_histo_denoise.slides.write_ome_tiff`: multiscale layers are written level by
level as they are; the layer's scale becomes the pixel size when its units are microns. An
OME-Zarr store also keeps the layer's translate and contrast limits (this plugin's reader
restores them).

The writing runs in a worker thread while napari goes on processing events, so saving a large
layer does not freeze the viewer, and napari's activity dock counts the layer's blocks as they
are read. The writer still returns once the file is complete, as napari expects of a writer.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

_MICRON_NAMES = ("micrometer", "micron", "µm", "um")


def layer_mpp(attributes: dict[str, Any]) -> float | None:
    """Microns per pixel of a layer (its X scale) when its units are microns, else None."""
    units = attributes.get("units")
    scale = attributes.get("scale")
    if not units or scale is None or str(units[-1]) not in _MICRON_NAMES:
        return None
    return float(scale[-1])


def write_ome_zarr_layer(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """Save one image layer as an OME-Zarr pyramid; returns the written path."""
    from ..slides import write_ome_zarr

    translate = [float(v) for v in attributes.get("translate") or ()][-2:]
    limits = attributes.get("contrast_limits")

    def write(levels: list[Any]) -> Path:
        return write_ome_zarr(
            levels,
            path,
            mpp=layer_mpp(attributes),
            name=attributes.get("name"),
            window=None if limits is None else tuple(limits),
            translate=tuple(translate) if any(translate) else None,
            overwrite=True,  # napari's save dialog has already asked
        )

    return [str(_write_in_background(write, data, attributes, "OME-Zarr"))]


def write_ome_tiff_layer(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """Save one image layer as a tiled, pyramidal OME-TIFF; returns the written path."""
    from ..slides import write_ome_tiff

    def write(levels: list[Any]) -> Path:
        return write_ome_tiff(levels, path, mpp=layer_mpp(attributes), overwrite=True)

    return [str(_write_in_background(write, data, attributes, "OME-TIFF"))]


def _write_in_background(
    write: Callable[[list[Any]], Path], data: Any, attributes: dict[str, Any], what: str
) -> Path:
    """Call ``write`` with the layer's levels in a worker thread and wait for it.

    While it waits, the Qt event loop keeps running and a napari progress bar (the activity
    dock) counts the levels' blocks as the writer reads them; lower pyramid levels that the
    writer builds itself are not counted. Called outside napari's main thread, or without a Qt
    application, ``write`` simply runs here. Its exceptions reach the caller.
    """
    from ..slides import as_levels

    levels = as_levels(list(data) if attributes.get("multiscale") else data)
    app = _gui_application()
    if app is None:
        return write(levels)
    from dask.array.utils import meta_from_array
    from napari.utils import progress

    seen: set[tuple[int, Any]] = set()  # (level, block) pairs read; set.add is thread-safe
    counted = [
        level.map_blocks(functools.partial(_note, seen, i), meta=meta_from_array(level))
        for i, level in enumerate(levels)
    ]
    total = sum(level.npartitions for level in counted)
    description = f"Saving {attributes.get('name') or 'layer'} as {what}"
    with ThreadPoolExecutor(max_workers=1) as pool, progress(total=total, desc=description) as bar:
        future = pool.submit(write, counted)
        while not wait([future], timeout=0.02).done:  # ~50 Hz: napari redraws smoothly
            app.processEvents()
            if len(seen) > bar.n:
                bar.update(len(seen) - bar.n)
    return future.result()


def _gui_application() -> Any:
    """The Qt application when called on its (main) thread, else None."""
    try:
        from qtpy.QtWidgets import QApplication
    except ImportError:  # no Qt binding: napari runs headless
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    return QApplication.instance()


def _note(seen: set[tuple[int, Any]], level: int, block: Any, block_id: Any = None) -> Any:
    seen.add((level, block_id))
    return block
