"""The ``Histo Denoise`` dock widget: choose a layer, model, weights and tiling; denoise; train.

The widget holds no denoising logic. It builds one
:class:`~napari_histo_denoise.settings.DenoiseSettings` (the object the CLI and the Python API
use too) and runs the core's generator in a napari ``thread_worker`` (see :mod:`.jobs` and
:mod:`.runs`). From a script::

    dock, widget = viewer.window.add_plugin_dock_widget("napari-histo-denoise", "Histo Denoise")
    widget.set_layer("slide")
    widget.set_settings(weights="basic.safetensors", tile_size=512)
    layer = widget.run().wait()
"""

from __future__ import annotations

import functools
import uuid
import weakref
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible

from ..settings import BACKENDS, MODEL_NAMES, PRECISIONS, check_tiling
from . import preferences
from .choosers import WeightsChooser, layer_combo
from .layers import (
    METADATA_KEY,
    add_result_layer,
    is_lazy,
    level_data,
    source_data,
    weights_label,
)
from .noise_label import NoiseLabel
from .progress_row import ProgressRow
from .runs import FINISHED, BackgroundRun
from .train_section import TrainSection

if TYPE_CHECKING:
    import napari

    from ..settings import DenoiseSettings

PLUGIN = "napari-histo-denoise"
#: Spin-box value that stands for "pick the batch size from free memory".
AUTO_BATCH = 0
#: Milliseconds the camera must stay still before an automatic Denoise view.
VIEW_SETTLE_MS = 500
#: Look of a field whose value the core would refuse.
_INVALID_STYLE = "QSpinBox { border: 1px solid #e05252; }"


def _spin(low: int, high: int, value: int, step: int = 1, suffix: str = "") -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(low, high)
    spin.setSingleStep(step)
    spin.setValue(value)
    spin.setSuffix(suffix)
    return spin


class HistoDenoiseWidget(QWidget):
    """Denoise an Image layer with the basic or deep autoencoder, or train new weights."""

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.current_run: BackgroundRun | None = None
        self._source: Any = None

        self.layer_combo = layer_combo(napari_viewer)
        self.noise_label = NoiseLabel()
        self.model_combo = QComboBox()
        self.model_combo.addItems(MODEL_NAMES)
        self.weights = WeightsChooser(self.model_combo.currentText())
        self.tile_spin = _spin(16, 8192, 256, 16, " px")
        self.overlap_spin = _spin(0, 1024, 32, 8, " px")
        self.tiling_problem = QLabel()
        self.tiling_problem.setWordWrap(True)
        self.tiling_problem.setStyleSheet("color: #e05252;")
        self.tiling_problem.hide()
        self.batch_spin = _spin(AUTO_BATCH, 4096, AUTO_BATCH)
        self.batch_spin.setSpecialValueText("auto")
        self.device_combo = QComboBox()
        self.device_combo.addItem("auto")
        self.precision_combo = QComboBox()
        self.precision_combo.addItems(PRECISIONS)
        self.backend_combo = QComboBox()
        self.backend_combo.addItems(BACKENDS)
        self.backend_combo.setToolTip(
            "What runs the model: auto is OpenVINO on the CPU where it is installed "
            "(pip install 'napari-histo-denoise[openvino]'), else torch"
        )
        self.residual_check = QCheckBox("Also add the residual (input - result)")
        self.residual_check.setToolTip(
            "A layer of what the model removed, under the result: noise shows as grain, "
            "removed structure as shapes"
        )
        self.denoise_button = QPushButton("Denoise")
        self.view_button = QPushButton("Denoise view")
        self.view_button.setToolTip(
            "Denoise only what the canvas shows, at the level it is displayed; tiles done "
            "before are reused after a pan or zoom"
        )
        self.view_auto_check = QCheckBox("Redo the view when the camera stops")
        self.view_auto_check.setToolTip(
            "Denoise the view again each time the camera has been still for half a second"
        )
        self.summary_button = QPushButton("Model summary")
        self.progress_row = ProgressRow("tiles")

        form = QFormLayout()
        form.addRow("Image layer", self.layer_combo.native)
        form.addRow("Noise", self.noise_label)
        form.addRow("Model", self.model_combo)
        form.addRow("Weights", self.weights)
        form.addRow("Tile size", self.tile_spin)
        form.addRow("Overlap", self.overlap_spin)
        form.addRow(self.tiling_problem)
        form.addRow("Batch size", self.batch_spin)
        form.addRow("Device", self.device_combo)
        form.addRow("Precision", self.precision_combo)
        form.addRow("Backend", self.backend_combo)
        form.addRow(self.residual_check)
        box = QGroupBox("Denoise")
        box_layout = QVBoxLayout(box)
        box_layout.addLayout(form)
        box_layout.addWidget(self.denoise_button)
        box_layout.addWidget(self.view_button)
        box_layout.addWidget(self.view_auto_check)
        box_layout.addWidget(self.progress_row)
        box_layout.addWidget(self.summary_button)
        self.train = TrainSection(napari_viewer, self.model_combo)
        layout = QVBoxLayout(self)
        layout.addWidget(box)
        # Collapsed until wanted, so the Denoise controls and a Model summary dock fit.
        self.train_box = QCollapsible("Train new weights")
        self.train_box.addWidget(self.train)
        layout.addWidget(self.train_box)
        layout.addStretch(1)

        self._inputs = (
            self.layer_combo.native,
            self.model_combo,
            self.weights,
            self.tile_spin,
            self.overlap_spin,
            self.batch_spin,
            self.device_combo,
            self.precision_combo,
            self.backend_combo,
            self.residual_check,
            self.denoise_button,
            self.view_button,
        )
        self.denoise_button.clicked.connect(self.run)
        self.view_button.clicked.connect(self.run_view)
        # Denoise view's tiles, and per layer a token for its data, dropped when it changes.
        self.view_cache: Any = None
        self._view_sources: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
        self._view_redo = False  # the camera moved during a view run: redo it after
        self._camera_still = QTimer(self)
        self._camera_still.setSingleShot(True)
        self._camera_still.setInterval(VIEW_SETTLE_MS)
        self._camera_still.timeout.connect(self._redo_view)
        for event in (
            napari_viewer.scene.camera.events.center,
            napari_viewer.scene.camera.events.zoom,
            napari_viewer.dims.events.point,  # another plane of a stack
            napari_viewer.dims.events.ndisplay,  # back to 2D
        ):
            event.connect(self._camera_moved)
        self.progress_row.cancel_button.clicked.connect(self.cancel)
        self.summary_button.clicked.connect(self.show_summary)
        self.model_combo.currentTextChanged.connect(self.weights.set_model)
        for signal in (
            self.model_combo.currentTextChanged,
            self.tile_spin.editingFinished,
            self.batch_spin.editingFinished,
        ):
            signal.connect(lambda *_: self._sync_summary())
        for spin in (self.tile_spin, self.overlap_spin):
            spin.valueChanged.connect(self._check_tiling)  # at each keystroke
        napari_viewer.layers.events.removed.connect(self._on_layer_removed)
        self.layer_combo.changed.connect(self.noise_label.show_for)
        self.noise_label.show_for(self.layer_combo.value)
        self._restore()
        self.weights.combo.currentIndexChanged.connect(self._follow_package)
        for signal in (
            self.model_combo.currentTextChanged,
            self.weights.combo.currentIndexChanged,
            self.tile_spin.valueChanged,
            self.overlap_spin.valueChanged,
            self.device_combo.currentTextChanged,
            self.backend_combo.currentTextChanged,
        ):
            signal.connect(self._remember)
        self._list_devices()

    # ------------------------------------------------------------------ settings
    def settings(self) -> DenoiseSettings:
        """The settings the controls describe (raises ValueError when they are not valid)."""
        from ..settings import DenoiseSettings

        batch = self.batch_spin.value()
        weights = self.weights.path()
        return DenoiseSettings(
            model=self.model_combo.currentText(),
            weights=None if weights is None else str(weights),
            tile_size=self.tile_spin.value(),
            overlap=self.overlap_spin.value(),
            batch_size=None if batch == AUTO_BATCH else batch,
            device=self.device_combo.currentText(),
            precision=self.precision_combo.currentText(),
            backend=self.backend_combo.currentText(),
        )

    def set_settings(self, settings: DenoiseSettings | None = None, **values: Any) -> None:
        """Set the controls from a DenoiseSettings and/or keyword values.

        Keywords: ``model``, ``weights`` (a path or None), ``tile_size``, ``overlap``,
        ``batch_size`` (None for auto), ``device``, ``precision``, ``backend``.
        """
        if settings is not None:
            values = {
                "model": settings.model,
                "weights": settings.weights,
                "tile_size": settings.tile_size,
                "overlap": settings.overlap,
                "batch_size": settings.batch_size,
                "device": settings.device,
                "precision": settings.precision,
                "backend": settings.backend,
                **values,
            }
        unknown = set(values) - {
            "model", "weights", "tile_size", "overlap", "batch_size", "device", "precision",
            "backend",
        }  # fmt: skip
        if unknown:
            raise ValueError(f"unknown denoise setting(s): {', '.join(sorted(unknown))}")
        if "model" in values:
            _choose(self.model_combo, values["model"], "model")
        if "weights" in values:
            self.weights.set_path(values["weights"])
        if "tile_size" in values:
            self.tile_spin.setValue(int(values["tile_size"]))
        if "overlap" in values:
            self.overlap_spin.setValue(int(values["overlap"]))
        if "batch_size" in values:
            self.batch_spin.setValue(values["batch_size"] or AUTO_BATCH)
        if "device" in values:
            if self.device_combo.findText(values["device"]) < 0:
                self.device_combo.addItem(values["device"])  # the core validates it
            self.device_combo.setCurrentText(values["device"])
        if "precision" in values:
            _choose(self.precision_combo, values["precision"], "precision")
        if "backend" in values:
            _choose(self.backend_combo, values["backend"], "backend")
        self._sync_summary()

    def set_layer(self, layer_or_name: Any) -> None:
        """Choose the layer to denoise (an Image layer or its name)."""
        from .layers import find_image_layer

        self.layer_combo.value = find_image_layer(self.viewer, layer_or_name)

    # ------------------------------------------------------------------ running
    @property
    def running(self) -> bool:
        """Whether a denoise run is in progress."""
        return self.current_run is not None and not self.current_run.done

    @property
    def idle(self) -> bool:
        """Whether no background work (denoise, training, device listing) is in progress."""
        busy = self.running or self.train.running or self._listing_devices or self.noise_label.busy
        return not busy

    def run(self) -> BackgroundRun | None:
        """Denoise the chosen layer in a worker thread; returns the run (``.wait()`` on it).

        Returns None (after an error notification) when the settings are not valid.
        """
        from .jobs import denoise_job

        checked = self._checked("denoise")
        if checked is None:
            return None
        source, settings = checked
        job = functools.partial(
            denoise_job,
            source_data(source),
            settings,
            stream=is_lazy(source),
            rgb=bool(source.rgb),
        )
        message = f"Denoising {source.name!r} with the {settings.model} model…"
        return self._start(source, job, functools.partial(self._add_result, source), message)

    def run_view(self, *, notify: bool = True) -> BackgroundRun | None:
        """Denoise what the canvas shows of the chosen layer; returns the run.

        The result goes into ``<name> [view denoised: ...]`` (added, or updated when there
        is one), placed on the displayed level's pixels. Tiles already computed for this
        layer, level, tiling, model, weights and precision are reused from
        :attr:`view_cache`. Returns None when the settings or the view are not valid (after
        an error notification, or only in the status line with ``notify=False``).
        """
        from .jobs import view_job
        from .view import visible_region

        checked = self._checked("denoise the view", notify)
        if checked is None:
            return None
        source, settings = checked
        try:
            view = visible_region(self.viewer, source)
        except ValueError as exc:
            self._refuse(f"Cannot denoise the view: {exc}", notify)
            return None
        if self.view_cache is None:
            from ..engine.region import TileCache

            self.view_cache = TileCache()
        data = level_data(source, view.level)
        job = functools.partial(
            view_job,
            data,
            view,
            settings,
            cache=self.view_cache,
            source=(self._view_source(source), view.level),
        )
        message = f"Denoising the view of {source.name!r} ({view.describe()})…"
        on_result = functools.partial(self._show_view, source, view)
        return self._start(source, job, on_result, message)

    def cancel(self) -> None:
        """Cancel the running denoise (no layer is added)."""
        self._view_redo = False
        if self.running:
            self.progress_row.status.setText("Cancelling…")
            self.current_run.cancel()

    def show_summary(self) -> Any:
        """Open (or raise) the Model summary panel, set to this widget's model, tile and batch."""
        dock, panel = self.viewer.window.add_plugin_dock_widget(PLUGIN, "Model summary")
        dock.show()
        dock.raise_()
        self._sync_summary(panel)
        return panel

    # ------------------------------------------------------------------ internals
    def _checked(self, what: str, notify: bool = True) -> tuple[Any, DenoiseSettings] | None:
        """The chosen layer and the settings, or None after saying why they cannot run."""
        if self.running:
            self._refuse("A denoise run is already in progress.", notify)
            return None
        source = self.layer_combo.value
        try:
            if source is None:
                raise ValueError("Add or open an image layer first: there is nothing to denoise.")
            return source, self.settings()
        except ValueError as exc:
            self._refuse(f"Cannot {what}: {exc}", notify)
            return None

    def _refuse(self, message: str, notify: bool) -> None:
        from napari.utils.notifications import show_error

        self.progress_row.status.setText(message)
        if notify:
            show_error(message)

    def _start(self, source: Any, job: Any, on_result: Any, message: str) -> BackgroundRun:
        # The newest request: a camera stop before it needs no redo after it.
        self._camera_still.stop()
        self._view_redo = False
        self._source = source
        self._set_running(True)
        self.progress_row.start(message)
        self.current_run = BackgroundRun(
            job,
            on_progress=self._on_progress,
            on_result=on_result,
            on_done=self._on_done,
            what="Denoise",
        )
        return self.current_run

    def _view_source(self, layer: Any) -> str:
        """A token for the layer's data, new after each change of it (``layer.data = ...``)."""
        token = self._view_sources.get(layer)
        if token is None:
            token = self._view_sources[layer] = uuid.uuid4().hex
            layer.events.data.connect(self._forget_view_source)  # connected once
        return token

    def _forget_view_source(self, event: Any) -> None:
        self._view_sources.pop(event.source, None)

    def _show_view(self, source: Any, view: Any, outcome: Any) -> Any:
        from .view import show_view_result

        record = {"source": source.name, **outcome.record}
        record["weights_label"] = weights_label(record["weights"], record["model"])
        return show_view_result(self.viewer, source, outcome.data, view, record)

    def _camera_moved(self) -> None:
        if self.view_auto_check.isChecked():
            self._camera_still.start()  # restarts: fires once the camera has been still

    def _redo_view(self) -> None:
        if not self.view_auto_check.isChecked():
            self._view_redo = False
            return
        if self.running:
            self._view_redo = True  # after the run in progress
            return
        self.run_view(notify=False)

    def _on_progress(self, event: Any) -> None:
        self.progress_row.update_progress(
            event.done, event.total, event.elapsed_s, unit=event.unit
        )

    def _add_result(self, source: Any, outcome: Any) -> Any:
        record = {"source": source.name, **outcome.record}
        record["weights_label"] = weights_label(record["weights"], record["model"])
        layer = add_result_layer(self.viewer, source, outcome.data, record["model"], record)
        if self.residual_check.isChecked():
            from .residual import add_residual_layer

            residual = add_residual_layer(self.viewer, source, layer, record)
            # Under the result: the result stays in view, its eye toggles to the residual.
            layers = self.viewer.layers
            layers.move(layers.index(residual.name), layers.index(layer.name))
        self.show_summary()
        return layer

    def _on_done(self, run: BackgroundRun) -> None:
        self._source = None
        self._set_running(False)
        if run.status != FINISHED:
            self.progress_row.reset(run.message)
        else:
            record = run.result.metadata[METADATA_KEY]
            view = record.get("view")
            speed = (
                ""
                if view and not view["tiles_computed"]
                else f"{record['mpx_per_s'] or 0:.2f} Mpx/s on "
            )
            done = (
                f"Done in {record['seconds']:.1f} s ({speed}"
                f"{record['device']}, {record['precision']}, {record['backend']})"
            )
            if view is None:
                done += f": added {run.result.name!r}."
            else:
                done += (
                    f": {view['tiles_computed']} tiles computed, {view['tiles_reused']} reused, "
                    f"shown in {run.result.name!r}."
                )
            self.progress_row.reset(done)
            self.progress_row.bar.setValue(self.progress_row.bar.maximum())
        redo, self._view_redo = self._view_redo, False
        if redo and run.status == FINISHED:  # a cancel or a failure stays stopped
            self._redo_view()

    def _on_layer_removed(self, event: Any) -> None:
        # Compared by name: the widget sees layers through napari's public proxy.
        name = getattr(self._source, "name", None)
        if self.running and event.value.name == name and name not in self.viewer.layers:
            self.current_run.cancel(
                f"Denoise stopped: layer {name!r} was removed during the run; no result was added."
            )

    def _set_running(self, running: bool) -> None:
        for widget in self._inputs:
            widget.setEnabled(not running)
        self.progress_row.cancel_button.setEnabled(running)

    def _sync_summary(self, panel: Any = None) -> None:
        if panel is None:
            panel = _open_summary_panel(self.viewer)
        if panel is not None:
            batch = self.batch_spin.value()
            panel.set_config(
                self.model_combo.currentText(),
                self.tile_spin.value(),
                None if batch == AUTO_BATCH else batch,
            )

    def _follow_package(self, *_: Any) -> None:
        """Set the model to a chosen bioimage.io package's architecture, or say why not."""
        path = self.weights.path()
        if path is None or path.suffix.lower() not in (".zip", ".yaml"):
            return
        from napari.utils.notifications import show_error

        from ..bmz import package_model
        from ..checkpoint import is_package

        if not is_package(path):
            return
        try:
            model = package_model(path)
        except ValueError as exc:
            show_error(f"Cannot use {path.name}: {exc}")
            return
        self.model_combo.setCurrentText(model)

    def _check_tiling(self) -> bool:
        """Show under the fields what the core would say of this tile and overlap."""
        tile, overlap = self.tile_spin.value(), self.overlap_spin.value()
        tile_problem = _tiling_problem(tile, 0)
        problem = tile_problem or _tiling_problem(tile, overlap)
        for spin, wrong in (
            (self.tile_spin, bool(tile_problem)),
            (self.overlap_spin, bool(problem) and not tile_problem),  # too large for the tile
        ):
            spin.setStyleSheet(_INVALID_STYLE if wrong else "")
            spin.setToolTip(problem if wrong else "")
        self.tiling_problem.setText(problem)
        self.tiling_problem.setVisible(bool(problem))
        return not problem

    def _restore(self) -> None:
        """Set the controls to the values remembered from the last session."""
        values = preferences.remembered()
        if values.get("model") in MODEL_NAMES:
            self.model_combo.setCurrentText(values["model"])
        if "weights" in values:
            self.weights.set_path(values["weights"])
        for key, spin in (("tile_size", self.tile_spin), ("overlap", self.overlap_spin)):
            if key in values:
                spin.setValue(values[key])
        if values.get("backend") in BACKENDS:
            self.backend_combo.setCurrentText(values["backend"])
        # Chosen once the device list shows it works on this machine (see _add_devices).
        self._wanted_device = values.get("device")

    def _remember(self) -> None:
        self._wanted_device = None  # a device chosen now overrides the remembered one
        weights = self.weights.path()
        values = {
            "model": self.model_combo.currentText(),
            "weights": None if weights is None else str(weights),
            "device": self.device_combo.currentText(),
            "backend": self.backend_combo.currentText(),
        }
        if self._check_tiling():
            values.update(tile_size=self.tile_spin.value(), overlap=self.overlap_spin.value())
        preferences.remember(**values)

    def _list_devices(self) -> None:
        """Fill the device list off the main thread (it imports torch and probes devices)."""
        from napari.qt.threading import create_worker

        self._listing_devices = True
        worker = create_worker(_working_devices, _start_thread=False, _ignore_errors=True)
        worker.returned.connect(self._add_devices)
        worker.errored.connect(self._add_devices)  # keeps "auto" alone; runs report the error
        worker.start()

    def _add_devices(self, names: Any) -> None:
        self._listing_devices = False
        names = names if isinstance(names, list) else []
        for name in names:
            if self.device_combo.findText(name) < 0:
                self.device_combo.addItem(name)
        if self._wanted_device in names:
            self.device_combo.setCurrentText(self._wanted_device)


def _choose(combo: QComboBox, value: str, what: str) -> None:
    index = combo.findText(str(value))
    if index < 0:
        options = [combo.itemText(i) for i in range(combo.count())]
        raise ValueError(f"unknown {what} {value!r}; valid values are {options}")
    combo.setCurrentIndex(index)


def _tiling_problem(tile: int, overlap: int) -> str:
    """The core's objection to this tile and overlap, or an empty string."""
    try:
        check_tiling(tile, overlap)
    except ValueError as exc:
        return str(exc)
    return ""


def _working_devices() -> list[str]:
    from ..devices import available_devices

    return available_devices()


def _open_summary_panel(viewer: napari.Viewer) -> Any:
    """The Model summary panel if it is open in this viewer, else None."""
    from .summary_panel import ModelSummaryPanel

    docked = getattr(viewer.window, "dock_widgets", {})  # public since napari 0.6.2
    return next((w for w in docked.values() if isinstance(w, ModelSummaryPanel)), None)
