"""napari reader contribution: whole slides (SVS, pyramidal/OME-TIFF, OME-Zarr) as lazy layers.

A thin face on :func:`napari_histo_denoise.io.read_image`: a pyramid becomes one multiscale,
dask-backed image layer, scaled to the slide's microns per pixel.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..io import TIFF_SUFFIXES

LayerData = tuple[Any, dict[str, Any], str]


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """Return :func:`read_slide` for a slide or zarr store this plugin opens, else None."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    name = str(path).lower().rstrip("/\\")
    if name.endswith((*TIFF_SUFFIXES, ".zarr")):
        return read_slide
    return None


def read_slide(path: str | list[str]) -> list[LayerData]:
    """Read a slide into one image layer's data: multiscale when a pyramid, with its pixel size."""
    from ..io import read_image

    if isinstance(path, list):
        path = path[0]
    data, meta = read_image(Path(path))
    return [layer_data(data, meta)]


def layer_data(data: Any, meta: dict[str, Any]) -> LayerData:
    """Return the napari ``LayerData`` tuple of ``read_image``'s ``(data, meta)``."""
    kwargs: dict[str, Any] = {
        "name": meta.get("name", "image"),
        "rgb": meta["rgb"],
        "multiscale": isinstance(data, list),
        "scale": tuple(meta["scale"]),
        "metadata": {k: meta[k] for k in ("mpp", "format", "path") if k in meta},
    }
    if meta.get("mpp"):
        kwargs["units"] = ("µm", "µm")
    return (data, kwargs, "image")
