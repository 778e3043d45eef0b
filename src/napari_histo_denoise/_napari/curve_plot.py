"""The Train section's live plot: the run's curves with axes, tick values and a legend.

Drawn by the same code as the ``NAME.curves.png`` a run leaves beside its weights
(:func:`napari_histo_denoise.train_report.curve_panels`), in the colours of napari's theme.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtGui import QImage, QPainter
from qtpy.QtWidgets import QSizePolicy, QWidget

from ..figures import DARK, Theme, chart
from ..train_report import curve_panels

if TYPE_CHECKING:
    import napari

#: Panels of the live plot: the loss, and the validation PSNR when there is a validation.
LIVE_PANELS = ("loss", "psnr")


def napari_theme(viewer: napari.Viewer) -> Theme:
    """The figure colours of the viewer's theme (dark when it cannot be resolved)."""
    from napari.utils.theme import get_theme

    try:
        theme = get_theme(viewer.theme)
    except ValueError:  # e.g. "system" on Qt5, which cannot detect it
        return DARK
    return Theme(
        background=theme.background.as_rgb_tuple(),
        text=theme.text.as_rgb_tuple(),
        grid=theme.primary.as_rgb_tuple(),
    )


class CurvePlot(QWidget):
    """Training loss (log scale) and validation PSNR against the step, updated every step.

    :attr:`history` has the layout of ``TrainResult.history``; :attr:`metadata` holds
    ``max_steps`` (the x range) and, once known, the noisy input's validation figures.
    """

    def __init__(self, theme: Theme = DARK, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumHeight(220)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.theme = theme
        self.clear()

    def clear(self, steps: int = 1) -> None:
        """Forget the last run's curves; the next run has ``steps`` steps."""
        self.history: dict[str, list] = {"loss": [], "lr": [], "val": []}
        self.metadata: dict[str, Any] = {"max_steps": max(steps, 1)}
        self.update()

    def add(self, event: Any) -> None:
        """Append a ``TrainProgress``: its loss and learning rate, and a new validation."""
        self.history["loss"].append(event.loss)
        self.history["lr"].append(event.lr)
        val = self.history["val"]
        if event.val_step is not None and (not val or val[-1]["step"] != event.val_step):
            val.append({"step": event.val_step, "psnr": event.val_psnr, "ssim": event.val_ssim})
        self.update()

    def set_theme(self, theme: Theme) -> None:
        """Redraw in ``theme``'s colours."""
        self.theme = theme
        self.update()

    def image(self, scale: float = 1.0) -> np.ndarray:
        """The plot as an RGB picture of the widget's size times ``scale``."""
        panels = curve_panels(self.history, self.metadata, panels=LIVE_PANELS)
        width, height = max(1, round(self.width() * scale)), max(1, round(self.height() * scale))
        return chart(
            panels,
            width=width,
            panel_height=max(1, height // len(panels)),
            font_px=max(6, round(11 * scale)),
            theme=self.theme,
        )

    def paintEvent(self, event: Any) -> None:
        """Draw :meth:`image` at the screen's pixel density."""
        ratio = self.devicePixelRatioF()
        pixels = np.ascontiguousarray(self.image(ratio))
        height, width = pixels.shape[:2]
        picture = QImage(pixels.data, width, height, 3 * width, QImage.Format_RGB888)
        picture.setDevicePixelRatio(ratio)
        painter = QPainter(self)
        painter.drawImage(0, 0, picture)
        painter.end()
