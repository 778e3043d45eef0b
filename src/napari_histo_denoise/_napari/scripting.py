"""Drive the plugin from a script: one call denoises a layer or its view (or trains) and waits.

Both functions go through the ``Histo Denoise`` dock widget (opening it if needed), so a
script runs exactly what a click runs, with the same progress bar, Cancel button and checks;
the viewer stays responsive while they wait.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .runs import FINISHED, RunFailed

if TYPE_CHECKING:
    import napari

    from ..training import TrainResult
    from .widget import HistoDenoiseWidget

PLUGIN = "napari-histo-denoise"


def histo_denoise_widget(viewer: napari.Viewer) -> HistoDenoiseWidget:
    """Open (or find) the ``Histo Denoise`` dock widget of ``viewer`` and return it."""
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Histo Denoise")
    return widget


def denoise_layer(
    viewer: napari.Viewer,
    layer_or_name: Any,
    model: str = "basic",
    weights: Any = None,
    *,
    residual: bool = False,
    timeout: float | None = None,
    **settings: Any,
) -> napari.layers.Image:
    """Denoise an Image layer, wait, and return the new ``<name> [denoised: <model>, <weights>]``.

    ``<weights>`` is ``pretrained`` for the bundled weights, else the weights file's name.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer holding the layer.
    layer_or_name : napari.layers.Image or str
        The layer to denoise (never modified).
    model : {"basic", "deep"}
        Architecture of the weights.
    weights : str or Path, optional
        A weights file (``.safetensors``, or a PyTorch state-dict file); by default the
        weights bundled with the package for ``model``.
    residual : bool
        Also add ``<name> [residual: ...]``, the input minus the result, under the result.
    timeout : float, optional
        Seconds to wait at most (then TimeoutError; the run goes on).
    **settings
        The other fields of :class:`~napari_histo_denoise.settings.DenoiseSettings`:
        ``tile_size``, ``overlap``, ``batch_size``, ``device``, ``precision``, ``backend``.

    Returns
    -------
    napari.layers.Image

    Raises
    ------
    ValueError
        For an unknown layer or invalid settings (before anything runs).
    RunFailed
        When the run fails or is cancelled (the message says why; no layer is added).
    """
    from ..settings import DenoiseSettings

    checked = DenoiseSettings(model=model, weights=weights, **settings)
    widget = histo_denoise_widget(viewer)
    widget.set_layer(layer_or_name)
    widget.set_settings(checked)
    widget.residual_check.setChecked(residual)
    return _wait(widget.run(), timeout)


def denoise_view(
    viewer: napari.Viewer,
    layer: Any = None,
    model: str = "basic",
    weights: Any = None,
    *,
    timeout: float | None = None,
    **settings: Any,
) -> napari.layers.Image:
    """Denoise what the canvas shows of a layer, wait, and return the view's result layer.

    Only the visible part of the layer is denoised, at the level napari displays for a
    multiscale layer; the result goes into ``<name> [view denoised: <model>, <weights>]``
    (added, or updated by later calls), placed exactly on those pixels. Tiles already
    computed by an earlier view of the same layer, level and settings are reused, so a call
    after a small pan runs only the new tiles; ``metadata["histo_denoise"]["view"]`` counts
    both.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer; its camera and canvas say what is visible (2D view only).
    layer : napari.layers.Image or str, optional
        The layer to denoise (never modified); by default the widget's chosen layer.
    model, weights, timeout, **settings
        As for :func:`denoise_layer`.

    Returns
    -------
    napari.layers.Image
        napari's public proxy of the layer (compare layers by name, not identity).

    Raises
    ------
    ValueError
        For an unknown layer, invalid settings, a 3D view, no pixel of the layer in view,
        or a view too large (before anything runs).
    RunFailed
        When the run fails or is cancelled (no layer is added or changed).
    """
    from qtpy.QtWidgets import QApplication

    from ..settings import DenoiseSettings
    from .view import visible_region

    checked = DenoiseSettings(model=model, weights=weights, **settings)
    widget = histo_denoise_widget(viewer)
    QApplication.processEvents()  # a widget docked just now resizes the canvas: measure after
    if layer is not None:
        widget.set_layer(layer)
    if widget.layer_combo.value is None:
        raise ValueError("the viewer has no Image layer to denoise")
    visible_region(viewer, widget.layer_combo.value)  # a clear ValueError now
    widget.set_settings(checked)
    return _wait(widget.run_view(), timeout)


def train_layer(
    viewer: napari.Viewer,
    layers_or_names: Any,
    model: str = "basic",
    *,
    validation: Any = None,
    timeout: float | None = None,
    **settings: Any,
) -> TrainResult:
    """Train on one or more Image layers, wait, and return the ``TrainResult``.

    The trained weights are saved in the session folder and selected in the widget for
    Denoise (``widget.train.last_trained.path``); ``widget.train.save_weights(path)`` keeps them.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer holding the layers.
    layers_or_names : layer, name, or a list of them
        Training images (clean in synthetic mode, noisy in self-supervised mode).
    model : {"basic", "deep"}
        Architecture to train.
    validation : layer or name, optional
        A clean image for validation PSNR/SSIM (the best weights are kept).
    timeout : float, optional
        Seconds to wait at most (then TimeoutError; the run goes on).
    **settings
        Fields of :class:`~napari_histo_denoise.settings.TrainSettings` (``mode``, ``noise``,
        ``steps``, ``patch_size``, ``batch_size``, ``lr``, ``device``, ...).

    Returns
    -------
    napari_histo_denoise.training.TrainResult

    Raises
    ------
    ValueError
        For unknown layers or invalid settings (before anything runs).
    RunFailed
        When training fails or is cancelled.
    """
    from ..settings import TrainSettings
    from .layers import find_image_layer

    TrainSettings(**settings)  # a clear ValueError now rather than a notification later
    if isinstance(layers_or_names, (str, bytes)) or not hasattr(layers_or_names, "__iter__"):
        layers_or_names = [layers_or_names]
    names = [find_image_layer(viewer, x).name for x in layers_or_names]
    val = None if validation is None else find_image_layer(viewer, validation).name
    widget = histo_denoise_widget(viewer)
    widget.set_settings(model=model)
    widget.train.set_settings(sources=names, validation=val, **settings)
    return _wait(widget.train.run(), timeout)


def _wait(run: Any, timeout: float | None) -> Any:
    if run is None:  # the widget refused to start (it has shown why)
        raise RunFailed("the run did not start; see the notification")
    result = run.wait(timeout)
    if run.status != FINISHED:
        raise RunFailed(run.message)
    return result
