"""napari reader contribution: whole slides (SVS, NDPI, OME-TIFF, OME-Zarr, ...) as lazy layers.

A thin face on :func:`napari_histo_denoise.io.read_image`: a pyramid becomes one multiscale,
dask-backed image layer, scaled to the slide's microns per pixel.

Only slide formats are claimed (``napari.yaml`` lists the same patterns as
:data:`SLIDE_SUFFIXES`), so an ordinary ``.tif`` or ``.zarr`` opens in napari without a
reader-choice dialog. A pyramidal plain ``.tif`` opens with :func:`open_slide` (File > IO
Utilities), since napari's reader preference only chooses among readers that claim a pattern.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import napari

LayerData = tuple[Any, dict[str, Any], str]

#: Name endings of the slide files this reader claims (besides OME-Zarr folders).
SLIDE_SUFFIXES = (
    ".svs", ".ndpi", ".scn", ".bif", ".qptiff", ".ome.tif", ".ome.tiff", ".btf", ".tf8",
)  # fmt: skip
#: Files the File > IO Utilities command offers: slides and any TIFF.
_DIALOG_FILTER = "Slides and TIFF (*.svs *.ndpi *.scn *.bif *.qptiff *.tif *.tiff *.btf *.tf8)"


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """Return a reader for a slide or OME-Zarr folder this plugin can open, else None.

    The file is opened here (lazily: metadata only), so a damaged or unsupported file gives
    None and napari can try another reader, instead of an error after the choice.
    """
    from ..io import ImageReadError

    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    path = Path(path)
    if not (path.is_dir() or path.name.lower().endswith(SLIDE_SUFFIXES)):
        return None
    try:
        layers = read_slide(str(path))
    except (ImageReadError, OSError):
        return None
    if path.is_dir() and layers[0][1]["metadata"]["format"] != "ome-zarr":
        return None  # a plain zarr array is not a slide

    def reader(_path: str | list[str]) -> list[LayerData]:
        return layers

    return reader


def read_slide(path: str | list[str]) -> list[LayerData]:
    """Read a slide into one image layer's data: multiscale when a pyramid, with its pixel size.

    An OME-Zarr store's translation and ``omero`` window (as this plugin's writer keeps a
    layer's translate and contrast limits) place and show the layer.
    """
    from ..io import read_image

    if isinstance(path, list):
        path = path[0]
    data, meta = read_image(Path(path))
    data, kwargs, kind = layer_data(data, meta)
    if meta["format"] == "ome-zarr":
        kwargs.update(_ome_zarr_display(Path(path)))
    return [(data, kwargs, kind)]


def _ome_zarr_display(path: Path) -> dict[str, Any]:
    """Layer keywords from an OME-Zarr store: ``translate`` and ``contrast_limits``, if set."""
    import zarr

    attrs = dict(zarr.open_group(str(path), mode="r").attrs)
    ome = attrs.get("ome", attrs)  # OME-NGFF 0.5 nests its metadata under "ome"
    kwargs: dict[str, Any] = {}
    for transform in ome["multiscales"][0]["datasets"][0].get("coordinateTransformations", []):
        if transform.get("type") == "translation":
            kwargs["translate"] = tuple(float(v) for v in transform["translation"][-2:])
    channels = ome.get("omero", {}).get("channels", [])
    windows = {(c["window"]["start"], c["window"]["end"]) for c in channels if "window" in c}
    if len(windows) == 1:  # a napari layer has one pair of contrast limits for all channels
        kwargs["contrast_limits"] = tuple(float(v) for v in windows.pop())
    return kwargs


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


def open_slide(viewer: napari.viewer.Viewer) -> None:
    """Ask for a slide or any (pyramidal) TIFF and add it to ``viewer`` as a lazy layer."""
    from napari.layers import Layer
    from napari.utils.notifications import show_error
    from qtpy.QtWidgets import QFileDialog

    from ..io import ImageReadError

    path, _ = QFileDialog.getOpenFileName(None, "Open a whole slide", "", _DIALOG_FILTER)
    if not path:
        return
    try:
        [layer] = read_slide(path)
    except (ImageReadError, OSError) as exc:
        show_error(f"Cannot open {Path(path).name}: {exc}")
        return
    viewer.add_layer(Layer.create(*layer))
