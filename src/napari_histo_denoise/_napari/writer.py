"""napari writer contributions: save an image layer as pyramidal OME-Zarr or OME-TIFF.

Thin faces on :func:`napari_histo_denoise.slides.write_ome_zarr` and
:func:`~napari_histo_denoise.slides.write_ome_tiff`: multiscale layers are written level by
level as they are; the layer's scale becomes the pixel size when its units are microns.
"""

from __future__ import annotations

from typing import Any

_MICRON_NAMES = ("micrometer", "micron", "µm", "um")


def layer_mpp(attributes: dict[str, Any]) -> float | None:
    """Microns per pixel of a layer (its X scale) when its units are microns, else None."""
    units = attributes.get("units")
    scale = attributes.get("scale")
    if not units or scale is None or str(units[-1]) not in _MICRON_NAMES:
        return None
    return float(scale[-1])


def _levels(data: Any, attributes: dict[str, Any]) -> Any:
    return list(data) if attributes.get("multiscale") else data


def write_ome_zarr_layer(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """Save one image layer as an OME-Zarr pyramid; returns the written path."""
    from ..slides import write_ome_zarr

    written = write_ome_zarr(
        _levels(data, attributes),
        path,
        mpp=layer_mpp(attributes),
        name=attributes.get("name"),
        overwrite=True,  # napari's save dialog has already asked
    )
    return [str(written)]


def write_ome_tiff_layer(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """Save one image layer as a tiled, pyramidal OME-TIFF; returns the written path."""
    from ..slides import write_ome_tiff

    written = write_ome_tiff(
        _levels(data, attributes), path, mpp=layer_mpp(attributes), overwrite=True
    )
    return [str(written)]
