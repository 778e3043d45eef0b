"""Denoise what the canvas shows: where a layer's visible pixels are, and where the result goes.

The visible part of a layer is found from public napari state: the camera (centre and
zoom), the canvas's viewbox size and the layer's world-to-data transform, at the level napari
draws for that view (its own rule; a multiscale level ``k`` has pixel ``i`` centred on data
coordinate ``i * downsample_factor``, as napari draws it). The result layer gets the source's
rotate, shear and affine, and a scale and translate that put its pixel (0, 0) exactly on the
level pixel it was computed from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .layers import METADATA_KEY, level_data, result_layer_kwargs, result_name

if TYPE_CHECKING:
    import napari

#: Most pixels a view is denoised at (a 4096 x 4096 region): beyond it the layer is shown
#: at full resolution over more than a screen can show, and Denoise (whole layer) fits better.
MAX_VIEW_PIXELS = 4096 * 4096


@dataclass(frozen=True)
class View:
    """The part of a layer the canvas shows, in pixels of the level it is displayed at."""

    level: int
    plane: tuple[int, ...]
    rows: slice
    columns: slice

    @property
    def pixels(self) -> int:
        return (self.rows.stop - self.rows.start) * (self.columns.stop - self.columns.start)

    def describe(self) -> str:
        """E.g. ``"rows 0-511, columns 100-611 of level 1"``."""
        return (
            f"rows {self.rows.start}-{self.rows.stop - 1}, columns {self.columns.start}-"
            f"{self.columns.stop - 1} of level {self.level}"
        )


def _factors(layer: napari.layers.Image, level: int) -> np.ndarray:
    """Level pixels per level-0 pixel along each axis (all ones when not multiscale)."""
    return np.asarray(layer.downsample_factors[level]) if layer.multiscale else np.ones(layer.ndim)


def _displayed_level(layer: napari.layers.Image, corners: np.ndarray, viewbox: np.ndarray) -> int:
    """The level napari draws for a view whose corners (level-0 data, Y and X) are given.

    napari's own rule (:func:`napari.layers.utils.layer_utils.compute_multiscale_level`, as
    the canvas applies it on each draw), so a hidden viewer, whose layers are never drawn,
    gets the level a shown one would: the coarsest with at least one pixel per screen pixel.
    """
    from napari.layers.utils.layer_utils import compute_multiscale_level

    if not layer.multiscale:
        return 0
    if layer.locked_data_level is not None:
        return layer.locked_data_level
    requested = np.ceil(corners.max(axis=0)) - np.floor(corners.min(axis=0))
    factors = np.asarray(layer.downsample_factors)[:, -2:]
    return int(compute_multiscale_level(requested, viewbox, factors))


def visible_region(viewer: napari.Viewer, layer: napari.layers.Image) -> View:
    """The pixels of ``layer`` inside the canvas, at the level napari displays.

    Raises
    ------
    ValueError
        When the viewer is in 3D, the layer's rows and columns are not the displayed axes
        in their own order, no pixel of the layer is in view, or the view holds more than
        :data:`MAX_VIEW_PIXELS` pixels at that level.
    """
    if viewer.dims.ndisplay != 2:
        raise ValueError("Denoise view works in the 2D view: switch the viewer to 2D first.")
    offset = viewer.dims.ndim - layer.ndim
    displayed = [axis - offset for axis in viewer.dims.displayed]
    if displayed != [layer.ndim - 2, layer.ndim - 1]:
        raise ValueError(
            f"Denoise view needs layer {layer.name!r}'s rows and columns on screen in their "
            "own order; restore the dims order (the 'transpose' button) first."
        )
    viewbox = np.asarray(viewer.canvas.viewbox_size(viewer.layers), dtype=float)
    centre = np.asarray(viewer.scene.camera.center, dtype=float)[-2:]
    half = viewbox / (2 * viewer.scene.camera.zoom)
    point = np.asarray(viewer.dims.point, dtype=float)
    displayed_world = list(viewer.dims.displayed)
    corners = []
    for dy in (-1, 1):
        for dx in (-1, 1):
            world = point.copy()
            world[displayed_world] = centre + half * (dy, dx)
            corners.append(np.asarray(layer.world_to_data(world))[-layer.ndim :])
    corners = np.array(corners)
    level = _displayed_level(layer, corners[:, displayed], viewbox)
    factors = _factors(layer, level)
    shape = level_data(layer, level).shape
    spans = []
    for axis in (layer.ndim - 2, layer.ndim - 1):
        low = corners[:, axis].min() / factors[axis]
        high = corners[:, axis].max() / factors[axis]
        # Pixel i covers [i - 0.5, i + 0.5) in level coordinates.
        start = max(0, math.floor(low + 0.5))
        stop = min(shape[axis], math.floor(high + 0.5) + 1)
        if stop <= start:
            raise ValueError(f"No pixel of layer {layer.name!r} is in view: pan or zoom to it.")
        spans.append(slice(start, stop))
    leading_world = [axis + offset for axis in range(layer.ndim - 2)]
    thick = any(viewer.dims.thickness[axis] > 0 for axis in leading_world)
    if thick and layer.projection_mode != "none":
        raise ValueError(
            f"Layer {layer.name!r} shows a projection of planes ({layer.projection_mode}); "
            "Denoise view denoises one plane: set its projection mode to none."
        )
    centre_data = np.asarray(layer.world_to_data(point))[-layer.ndim :]
    plane = tuple(round(centre_data[axis] / factors[axis]) for axis in range(layer.ndim - 2))
    if any(not 0 <= i < n for i, n in zip(plane, shape, strict=False)):
        raise ValueError(
            f"No plane of layer {layer.name!r} is in view: move the dims slider to it."
        )
    view = View(level, plane, *spans)
    if view.pixels > MAX_VIEW_PIXELS:
        raise ValueError(
            f"The view shows {view.pixels / 1e6:.1f} Mpx of {layer.name!r} at level {level}; "
            f"Denoise view handles at most {MAX_VIEW_PIXELS / 1e6:.1f} Mpx: zoom in, or use "
            "Denoise for the whole layer."
        )
    return view


def view_placement(layer: napari.layers.Image, view: View) -> dict[str, Any]:
    """Scale and translate that put a view's result on the level pixels it came from.

    The result has the layer's leading axes as length-one axes, so it shows only on its plane.
    """
    factors = _factors(layer, view.level)
    first = np.array([*view.plane, view.rows.start, view.columns.start], dtype=float) * factors
    # The layer's physical position of that pixel: its world position with the affine undone.
    translate = np.asarray(layer.affine.inverse(layer.data_to_world(first)))
    return {"scale": np.asarray(layer.scale) * factors, "translate": translate}


def show_view_result(
    viewer: napari.Viewer,
    source: napari.layers.Image,
    data: np.ndarray,
    view: View,
    record: dict[str, Any],
) -> napari.layers.Image:
    """Add ``<name> [view denoised: ...]`` on the view's pixels, or update the one there is."""
    data = data.reshape((1,) * len(view.plane) + data.shape)
    name = result_name(source.name, record["model"], record.get("weights_label"), "view denoised")
    placement = view_placement(source, view)
    metadata = {METADATA_KEY: dict(record)}
    existing = viewer.layers[name] if name in viewer.layers else None
    kwargs = {**result_layer_kwargs(source), **placement}
    if existing is not None and METADATA_KEY in existing.metadata and existing.ndim == source.ndim:
        existing.data = data
        for key in ("scale", "translate", "rotate", "shear", "affine"):  # the source may move
            setattr(existing, key, kwargs[key])
        existing.metadata = metadata
        return existing
    return viewer.add_image(data, name=name, metadata=metadata, **kwargs)
