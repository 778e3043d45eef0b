"""What a training run leaves beside its weights: its report and its curves.

For weights ``NAME.safetensors`` a run writes ``NAME.json`` (the metadata and the
history: loss and learning rate of every step, validation PSNR and SSIM), the
picture ``NAME.curves.png`` drawn from that history, on request the compact
``NAME.int8.safetensors``, and, while it is unfinished, its resumable state
``NAME.state.safetensors`` (:mod:`napari_histo_denoise.train_state`).

This module imports no torch: the napari widget draws its live plot with
:func:`curve_panels`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .figures import LIGHT, Panel, Series, Theme, chart, write_image

#: Loss and learning-rate curves show at most this many points (means of consecutive steps).
CURVE_POINTS = 400
#: The panels of the curves picture, in order.
PANELS = ("loss", "psnr", "lr", "ssim")


def report_path(weights: str | os.PathLike) -> Path:
    """``NAME.json`` beside ``NAME.safetensors``: metadata and history."""
    return Path(weights).with_suffix(".json")


def curves_path(weights: str | os.PathLike) -> Path:
    """``NAME.curves.png`` beside ``NAME.safetensors``: the history drawn."""
    return Path(weights).with_suffix(".curves.png")


def int8_path(weights: str | os.PathLike) -> Path:
    """``NAME.int8.safetensors`` beside ``NAME.safetensors``: the compact weights."""
    return Path(weights).with_suffix(".int8.safetensors")


def state_path(weights: str | os.PathLike) -> Path:
    """``NAME.state.safetensors`` beside ``NAME.safetensors``: an unfinished run's state."""
    return Path(weights).with_suffix(".state.safetensors")


def write_report(
    weights: str | os.PathLike, metadata: Mapping[str, Any], history: Mapping[str, list]
) -> list[Path]:
    """Write ``NAME.json`` and ``NAME.curves.png`` beside the weights; return both paths."""
    report = report_path(weights)
    report.write_text(
        json.dumps({"metadata": dict(metadata), "history": dict(history)}, indent=1) + "\n",
        encoding="utf-8",
    )
    curves = write_image(curves_path(weights), curves_image(history, metadata))
    return [report, curves]


def curves_image(
    history: Mapping[str, list],
    metadata: Mapping[str, Any] | None = None,
    *,
    panels: Sequence[str] = PANELS,
    width: int = 900,
    panel_height: int = 220,
    theme: Theme = LIGHT,
) -> np.ndarray:
    """Draw a training history (``TrainResult.history``) as a picture.

    Parameters
    ----------
    history : mapping
        ``loss`` and ``lr`` (one value per step) and ``val`` (dicts with ``step``,
        ``psnr`` and ``ssim``).
    metadata : mapping, optional
        The run's metadata: ``max_steps`` fixes the x range, ``val_noisy_psnr`` and
        ``val_noisy_ssim`` are drawn as the noisy input's level.
    panels : sequence of str
        Which of :data:`PANELS` to draw; the validation panels only when there was a
        validation.
    width, panel_height : int
        Picture width and height of each panel, in pixels.
    theme : Theme
        Colours.

    Returns
    -------
    numpy.ndarray
        uint8 RGB picture, two panels per row.
    """
    chosen = curve_panels(history, metadata, panels=panels)
    columns = 2 if len(chosen) > 1 else 1
    return chart(chosen, columns=columns, width=width, panel_height=panel_height, theme=theme)


def curve_panels(
    history: Mapping[str, list],
    metadata: Mapping[str, Any] | None = None,
    *,
    panels: Sequence[str] = PANELS,
) -> list[Panel]:
    """The chart panels of :func:`curves_image` (the widget lays them out itself)."""
    metadata = metadata or {}
    val = [v for v in history.get("val", []) if v.get("psnr") is not None]
    steps = metadata.get("max_steps") or len(history.get("loss", [])) or 1
    xlim = (0, steps)
    steps_axis = {"xlabel": "step", "xlim": xlim, "integer_x": True}
    out = []
    for name in panels:
        if name == "loss":
            x, y = _binned(history.get("loss", []))
            title = "Training loss (MSE, log scale)" + _per(len(history.get("loss", [])))
            out.append(Panel(title, [Series("loss", x, y)], log_y=True, **steps_axis))
        elif name == "lr":
            x, y = _binned(history.get("lr", []))
            out.append(Panel("Learning rate", [Series("lr", x, y, color=2)], **steps_axis))
        elif name in ("psnr", "ssim") and val:
            steps_done, values = [v["step"] for v in val], [v[name] for v in val]
            series = [Series("model", steps_done, values, markers=True, color=1)]
            noisy = metadata.get(f"val_noisy_{name}")
            if noisy is not None:
                series.append(Series("noisy input", list(xlim), [noisy, noisy], color=4))
            unit = " (dB)" if name == "psnr" else ""
            out.append(Panel(f"Validation {name.upper()}{unit}", series, **steps_axis))
    return out


def _binned(values: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Steps (1, 2, ...) and values, as means over runs of steps when there are many."""
    y = np.asarray(values, dtype=np.float64)
    x = np.arange(1, len(y) + 1, dtype=np.float64)
    size = -(-len(y) // CURVE_POINTS)  # ceil: steps per point
    if size <= 1:
        return x, y
    cut = len(y) // size * size
    bins_x, bins_y = x[:cut].reshape(-1, size).mean(1), y[:cut].reshape(-1, size).mean(1)
    if cut < len(y):
        bins_x, bins_y = np.append(bins_x, x[cut:].mean()), np.append(bins_y, y[cut:].mean())
    return bins_x, bins_y


def _per(steps: int) -> str:
    size = -(-steps // CURVE_POINTS)
    return f", mean of {size} steps" if size > 1 else ""
