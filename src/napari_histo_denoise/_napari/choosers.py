"""Choosers that follow the viewer: image layers (magicgui widgets) and weights files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import ComboBox, Select
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QComboBox, QFileDialog, QHBoxLayout, QPushButton, QWidget

from ..pretrained import BUNDLED_LABEL, bundled
from .layers import image_layers
from .session import TrainedWeights, trained_weights

if TYPE_CHECKING:
    import napari

WEIGHTS_FILTER = (
    "Weights (*.safetensors *.pt *.pth *.ckpt *.zip rdf.yaml bioimageio.yaml);;"
    "bioimage.io packages (*.zip rdf.yaml bioimageio.yaml);;All files (*)"
)


def _follow_layers(viewer: napari.Viewer, refresh: Callable[..., Any]) -> None:
    """Call ``refresh`` whenever the viewer's layers or their names change."""

    def watch(event: Any = None) -> None:
        for layer in viewer.layers:
            layer.events.name.connect(refresh)
        refresh()

    viewer.layers.events.inserted.connect(watch)
    viewer.layers.events.removed.connect(refresh)
    viewer.layers.events.moved.connect(refresh)
    watch()


def _image_layer_choices(viewer: napari.Viewer) -> Callable[[Any], list[tuple[str, Any]]]:
    """Return the viewer's Image layers as magicgui choices: ``(name, layer)`` pairs."""

    def choices(widget: Any) -> list[tuple[str, Any]]:
        return [(layer.name, layer) for layer in image_layers(viewer)]

    return choices


def layer_combo(viewer: napari.Viewer, *, optional: bool = False) -> ComboBox:
    """A magicgui ComboBox of the viewer's Image layers; its ``value`` is the chosen layer.

    With ``optional``, magicgui's first entry ``-----`` stands for no layer (``None``).
    """
    combo = ComboBox(choices=_image_layer_choices(viewer), nullable=optional)
    _follow_layers(viewer, combo.reset_choices)
    return combo


def layer_select(viewer: napari.Viewer) -> Select:
    """A magicgui list of the viewer's Image layers; its ``value`` is the selected layers."""
    select = Select(choices=_image_layer_choices(viewer))
    select.native.setMaximumHeight(90)
    _follow_layers(viewer, select.reset_choices)
    return select


class WeightsChooser(QWidget):
    """Weights for the chosen model: bundled, a file (Browse…), or trained in this session.

    The first entry stands for "no file": the model's bundled weights where the package
    has them ("pretrained (bundled)", the model card's summary as its tooltip), else a
    prompt to choose a file. :meth:`set_model` keeps it in step with the Model chooser.
    """

    def __init__(self, model: str = "basic", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.combo = QComboBox()
        self.combo.addItem("", None)
        self.set_model(model)
        self.browse_button = QPushButton("Browse…")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.combo, 1)
        layout.addWidget(self.browse_button)
        self.browse_button.clicked.connect(self._browse)
        for item in trained_weights.items:
            self._add_trained(item, select=False)
        callback = self._add_trained
        trained_weights.added.connect(callback)
        # The registry outlives viewers: stop calling a chooser whose Qt side is gone.
        self.destroyed.connect(lambda *_: trained_weights.added.disconnect(callback))

    def set_model(self, model: str) -> None:
        """Describe the first entry for ``model``: its bundled weights, or none."""
        self._bundled = bundled(model)
        if self._bundled is not None:
            text, tip = BUNDLED_LABEL, self._bundled.summary
        else:
            text = "(choose a weights file)"
            tip = (
                f"No weights are bundled for the {model} model: Browse… for a file, or train "
                "them under Train new weights"
            )
        self.combo.setItemText(0, text)
        self.combo.setItemData(0, tip, Qt.ToolTipRole)

    def path(self) -> Path | None:
        """The chosen weights file, or None (the bundled weights, where there are some)."""
        data = self.combo.currentData()
        return None if data is None else Path(data)

    def set_path(self, path: str | Path | None, label: str | None = None) -> None:
        """Choose ``path`` (added to the list if new); None or the bundled file: first entry."""
        bundled_path = None if self._bundled is None else self._bundled.path
        if path is None or (bundled_path is not None and Path(path) == bundled_path):
            self.combo.setCurrentIndex(0)
            return
        path = str(Path(path))
        index = self.combo.findData(path)
        if index < 0:
            self.combo.addItem(label or Path(path).name, path)
            index = self.combo.count() - 1
            self.combo.setItemData(index, path, Qt.ToolTipRole)
        self.combo.setCurrentIndex(index)

    def _add_trained(self, item: TrainedWeights, select: bool = True) -> None:
        current = self.combo.currentIndex()
        self.set_path(item.path, item.label)
        if not select:
            self.combo.setCurrentIndex(current)

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose weights", "", WEIGHTS_FILTER)
        if path:
            self.set_path(path)
