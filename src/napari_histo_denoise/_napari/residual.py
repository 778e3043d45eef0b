"""The residual layer: what a denoise run removed from its input (input minus result).

Noise shows as fine grain around zero; structure the model removed (nuclei, fibres,
edges) shows as shapes. Values are exact differences in the data's own units, signed
(int16 for uint8 data, int32 for uint16, float32 for floats: at most twice the
memory of an 8-bit source); the layer shows zero at mid-grey.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .layers import METADATA_KEY, result_layer_kwargs, result_name, source_data

if TYPE_CHECKING:
    import napari

#: The residual layer's contrast limits are -this to +this times the dtype's full scale
#: (about 64 for 8-bit data).
RESIDUAL_LIMIT = 0.25
#: Colormap of a grayscale residual: diverging, white at zero.
RESIDUAL_COLORMAP = "PiYG"


def residual(source: Any, result: Any) -> Any:
    """``source - result`` in a signed dtype (see above); lazy (dask) unless both are numpy."""
    dtype = signed_dtype(source.dtype)
    if isinstance(source, np.ndarray) and isinstance(result, np.ndarray):
        return source.astype(dtype) - result.astype(dtype)
    import dask.array as da

    return da.asarray(source).astype(dtype) - da.asarray(result).astype(dtype)


def signed_dtype(dtype: Any) -> np.dtype:
    """The dtype that holds every difference of two values of ``dtype`` exactly."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.unsignedinteger):
        return np.dtype(np.int16 if dtype.itemsize == 1 else np.int32)
    return np.dtype(np.float32)


def residual_levels(source: Any, levels: list[Any]) -> list[Any]:
    """The residual of level 0, subsampled to the result pyramid's level shapes (lazily).

    Every level shows residual pixels themselves, not a residual of resampled images.
    """
    full = residual(source, levels[0])
    out = []
    for level in levels:
        step = max(1, round(full.shape[0] / level.shape[0]))
        out.append(full[::step, ::step])
    return out


def add_residual_layer(
    viewer: napari.Viewer,
    source: napari.layers.Image,
    result: napari.layers.Image,
    record: dict[str, Any],
) -> napari.layers.Image:
    """Add ``source - result`` as a layer placed like ``source``, zero at mid-grey.

    Named ``<source> [residual: <model>, <weights>]``; its metadata holds the run's
    ``record`` under ``histo_denoise``.
    """
    data = source_data(source)
    if result.multiscale:
        difference = residual_levels(data, list(result.data))
    else:
        difference = residual(data, result.data)
    kwargs = result_layer_kwargs(source)
    full = np.iinfo(data.dtype).max if np.issubdtype(data.dtype, np.integer) else 1.0
    kwargs["contrast_limits"] = (-RESIDUAL_LIMIT * full, RESIDUAL_LIMIT * full)
    kwargs["gamma"] = 1.0
    if not source.rgb:
        kwargs["colormap"] = RESIDUAL_COLORMAP
    return viewer.add_image(
        difference,
        name=result_name(source.name, record["model"], record.get("weights_label"), "residual"),
        multiscale=result.multiscale,
        metadata={METADATA_KEY: {**record, "residual": "input minus result, in the data's units"}},
        **kwargs,
    )
