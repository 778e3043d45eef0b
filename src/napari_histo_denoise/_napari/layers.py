"""Helpers for the layers the plugin reads and the result layers it adds."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import napari

#: Key of the run record in a result layer's ``metadata``.
METADATA_KEY = "histo_denoise"

# Attributes a result layer takes over from its source so that it lands on the same pixels and
# looks the same: placement (scale ... units) and display (rgb, contrast, colormap).
_COPIED = (
    "rgb",
    "scale",
    "translate",
    "rotate",
    "shear",
    "affine",
    "units",
    "axis_labels",
    "contrast_limits",
    "gamma",
)


def image_layers(viewer: napari.Viewer) -> list[napari.layers.Image]:
    """Return the viewer's Image layers (RGB or grayscale, 2D, stacks or multiscale)."""
    from napari.layers import Image

    return [layer for layer in viewer.layers if isinstance(layer, Image)]


def find_image_layer(viewer: napari.Viewer, layer_or_name: Any) -> napari.layers.Image:
    """Return the Image layer given by object or name, or raise a clear ValueError."""
    from napari.layers import Image

    if isinstance(layer_or_name, Image):
        if layer_or_name not in viewer.layers:
            raise ValueError(f"layer {layer_or_name.name!r} is not in this viewer")
        return layer_or_name
    names = [layer.name for layer in image_layers(viewer)]
    if layer_or_name not in names:
        raise ValueError(f"no Image layer named {layer_or_name!r}; the Image layers are {names}")
    return viewer.layers[layer_or_name]


def level_data(layer: napari.layers.Image, level: int) -> Any:
    """The array of one level of a layer (the data itself when not multiscale), never copied."""
    return layer.data[level] if layer.multiscale else layer.data


def source_data(layer: napari.layers.Image) -> Any:
    """Return the full-resolution data of a layer (level 0 when multiscale), never copied."""
    return level_data(layer, 0)


def is_lazy(layer: napari.layers.Image, max_in_memory_bytes: int = 512 * 2**20) -> bool:
    """Whether the result should stream to a zarr store instead of living in memory.

    True for multiscale, dask or zarr data and for numpy data over ``max_in_memory_bytes``.
    """
    data = source_data(layer)
    if layer.multiscale or not isinstance(data, np.ndarray):
        return True
    return data.nbytes > max_in_memory_bytes


def result_name(
    source_name: str, model: str, weights_label: str | None = None, kind: str = "denoised"
) -> str:
    """Name of a layer a run adds, e.g. ``"slide [denoised: basic, pretrained]"``.

    ``weights_label`` (see :func:`weights_label`) says which weights made it; ``kind`` is
    ``"denoised"`` for the result, ``"residual"`` for the input minus the result.
    """
    made_by = model if weights_label is None else f"{model}, {weights_label}"
    return f"{source_name} [{kind}: {made_by}]"


def weights_label(weights: Any, model: Any) -> str | None:
    """How layer names show weights: ``"pretrained"`` (bundled), else the file's name."""
    from pathlib import Path

    from ..pretrained import bundled

    if weights is None:
        return None
    entry = bundled(model) if isinstance(model, str) else None
    if entry is not None and Path(weights) == entry.path:
        return "pretrained"
    return Path(weights).name


def result_layer_kwargs(source: napari.layers.Image) -> dict[str, Any]:
    """Placement and display settings of ``source`` for a new Image layer."""
    kwargs = {name: getattr(source, name) for name in _COPIED}
    if not source.rgb:
        kwargs["colormap"] = source.colormap
    return kwargs


def add_result_layer(
    viewer: napari.Viewer,
    source: napari.layers.Image,
    data: Any,
    model: str,
    record: dict[str, Any],
) -> napari.layers.Image:
    """Add the denoised ``data`` as a new layer placed and shown like ``source``.

    ``data`` is an array or a multiscale list (level 0 first); ``record`` (model, weights, timing,
    ...) is stored under ``metadata["histo_denoise"]``, and its ``weights_label`` goes into the
    layer's name. The source layer is not touched.
    """
    multiscale = isinstance(data, list)
    return viewer.add_image(
        data,
        name=result_name(source.name, model, record.get("weights_label")),
        multiscale=multiscale,
        metadata={METADATA_KEY: dict(record)},
        **result_layer_kwargs(source),
    )
