"""The Train section of the dock widget: train weights on image layers, watch loss and PSNR."""

from __future__ import annotations

import functools
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
)

from ..settings import TRAIN_MODES
from .choosers import layer_combo, layer_select
from .curve_plot import CurvePlot, napari_theme
from .layers import find_image_layer, source_data
from .progress_row import ProgressRow
from .runs import BackgroundRun
from .session import TrainedWeights, trained_weights

if TYPE_CHECKING:
    import napari

    from ..settings import TrainSettings

NOISE_KINDS = ("gaussian", "poisson", "speckle", "salt-pepper", "mix")


class TrainSection(QGroupBox):
    """Train the chosen model on one or more Image layers; the result becomes Denoise weights.

    ``model_combo`` is the dock widget's model selection (the architecture to train).
    """

    def __init__(self, viewer: napari.Viewer, model_combo: QComboBox) -> None:
        super().__init__()
        self.viewer = viewer
        self.model_combo = model_combo
        self.current_run: BackgroundRun | None = None
        self.last_trained: TrainedWeights | None = None
        #: TrainSettings fields without a control (lr, device, seed, ...), set from code.
        self.extra: dict[str, Any] = {}

        self.sources = layer_select(viewer)
        self.val_combo = layer_combo(viewer, optional=True)
        self.mode_combo = QComboBox()
        self.mode_combo.addItems(TRAIN_MODES)
        self.noise_combo = QComboBox()
        self.noise_combo.addItems(NOISE_KINDS)
        self.level_edit = QLineEdit("25")
        self.level_edit.setToolTip("sigma (e.g. 25 or 15-50), Poisson peak, speckle or s&p amount")
        self.steps_spin = _spin(1, 1_000_000, 2000)
        self.patch_spin = _spin(16, 2048, 128, 16)
        self.batch_spin = _spin(1, 1024, 16)
        self.train_button = QPushButton("Train")
        self.save_button = QPushButton("Save weights…")
        self.save_button.setEnabled(False)
        self.export_button = QPushButton("Export to bioimage.io…")
        self.export_button.setToolTip(
            "Write the trained weights as a bioimage.io model package (.zip) for Fiji "
            "(deepImageJ), ilastik, QuPath and other bioimage.io tools"
        )
        self.export_button.setEnabled(False)
        self.progress_row = ProgressRow("steps")
        self.plot = CurvePlot(napari_theme(viewer))

        noise_row = QHBoxLayout()
        noise_row.addWidget(self.noise_combo, 1)
        noise_row.addWidget(self.level_edit, 1)
        form = QFormLayout()
        form.addRow("Source layer(s)", self.sources.native)
        form.addRow("Validation layer", self.val_combo.native)
        form.addRow("Mode", self.mode_combo)
        form.addRow("Noise, level", noise_row)
        form.addRow("Steps", self.steps_spin)
        form.addRow("Patch size", self.patch_spin)
        form.addRow("Batch size", self.batch_spin)
        buttons = QHBoxLayout()
        buttons.addWidget(self.train_button)
        buttons.addWidget(self.save_button)
        buttons.addWidget(self.export_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress_row)
        layout.addWidget(self.plot)

        self._inputs = (
            self.sources.native,
            self.val_combo.native,
            self.mode_combo,
            self.noise_combo,
            self.level_edit,
            self.steps_spin,
            self.patch_spin,
            self.batch_spin,
            self.train_button,
            self.save_button,
            self.export_button,
        )
        self.noise_combo.currentTextChanged.connect(
            lambda kind: self.level_edit.setEnabled(kind != "mix")
        )
        self.train_button.clicked.connect(self.run)
        self.progress_row.cancel_button.clicked.connect(self.cancel)
        self.save_button.clicked.connect(self._ask_save)
        self.export_button.clicked.connect(self._ask_export)
        viewer.events.theme.connect(self._follow_theme)

    # ------------------------------------------------------------------ settings
    def noise_spec(self) -> str:
        """The noise spec the noise controls describe, e.g. ``"gaussian:25"``."""
        kind = self.noise_combo.currentText()
        return kind if kind == "mix" else f"{kind}:{self.level_edit.text().strip()}"

    def settings(self) -> TrainSettings:
        """The settings the controls describe (raises ValueError when they are not valid)."""
        from ..settings import TrainSettings

        return TrainSettings(
            mode=self.mode_combo.currentText(),
            noise=self.noise_spec(),
            steps=self.steps_spin.value(),
            patch_size=self.patch_spin.value(),
            batch_size=self.batch_spin.value(),
            **self.extra,
        )

    def set_settings(self, **values: Any) -> None:
        """Set the training controls from keyword values.

        Keywords: ``sources`` (layers or names), ``validation`` (a layer, a name or None) and
        any field of :class:`~napari_histo_denoise.settings.TrainSettings`; ``mode``, ``noise``
        (a spec such as ``"gaussian:25"``), ``steps``, ``patch_size`` and ``batch_size`` have
        controls, the others are kept in :attr:`extra`.
        """
        import dataclasses

        from ..settings import TrainSettings

        fields = {f.name for f in dataclasses.fields(TrainSettings)}
        unknown = set(values) - fields - {"sources", "validation"}
        if unknown:
            raise ValueError(f"unknown training setting(s): {', '.join(sorted(unknown))}")
        controlled = {"mode", "noise", "steps", "patch_size", "batch_size"}
        self.extra.update({k: v for k, v in values.items() if k in fields - controlled})
        if "mode" in values:
            self.mode_combo.setCurrentText(values["mode"])
        if "noise" in values:
            kind, _, level = str(values["noise"]).partition(":")
            self.noise_combo.setCurrentText(kind)
            self.level_edit.setText(level)
        for key, spin in (
            ("steps", self.steps_spin),
            ("patch_size", self.patch_spin),
            ("batch_size", self.batch_spin),
        ):
            if key in values:
                spin.setValue(int(values[key]))
        if "sources" in values:
            self.sources.value = [find_image_layer(self.viewer, x) for x in values["sources"]]
        if "validation" in values:
            layer = values["validation"]
            self.val_combo.value = None if layer is None else find_image_layer(self.viewer, layer)

    # ------------------------------------------------------------------ running
    @property
    def running(self) -> bool:
        """Whether a training run is in progress."""
        return self.current_run is not None and not self.current_run.done

    def run(self) -> BackgroundRun | None:
        """Train in a worker thread; returns the run (``.wait()`` gives the TrainResult)."""
        from napari.utils.notifications import show_error

        from .jobs import train_job

        if self.running:
            show_error("A training run is already in progress.")
            return None
        layers = self.sources.value
        try:
            if not layers:
                raise ValueError("tick at least one source layer to train on.")
            settings = self.settings()
        except ValueError as exc:
            show_error(f"Cannot train: {exc}")
            return None
        images = [source_data(layer) for layer in layers]
        val_layer = self.val_combo.value
        val_images = None if val_layer is None else [source_data(val_layer)]
        model = self.model_combo.currentText()
        self._set_running(True)
        self.plot.clear(settings.steps)
        names = ", ".join(layer.name for layer in layers)
        self.progress_row.start(f"Training the {model} model on {names}…")
        self.current_run = BackgroundRun(
            functools.partial(
                train_job, images, model, settings, val_images=val_images, init_weights=None
            ),
            on_progress=self._on_progress,
            on_result=self._on_result,
            on_done=self._on_done,
            what="Training",
        )
        return self.current_run

    def cancel(self) -> None:
        """Cancel the running training (no weights are kept)."""
        if self.running:
            self.progress_row.status.setText("Cancelling…")
            self.current_run.cancel()

    def save_weights(self, path: str | Path) -> Path:
        """Copy the last run's weights to ``path`` (``.safetensors``), with report and curves.

        ``NAME.json`` (metadata and history) and ``NAME.curves.png`` go with the weights, as
        from ``histo-denoise train``. Returns the weights' path.
        """
        from ..train_report import curves_path, report_path

        if self.last_trained is None:
            raise ValueError("nothing to save yet: train a model first")
        path = Path(path)
        if path.suffix != ".safetensors":
            path = path.with_suffix(".safetensors")
        source = self.last_trained.path
        shutil.copyfile(source, path)
        for beside in (report_path, curves_path):
            shutil.copyfile(beside(source), beside(path))
        return path

    def export_bmz(self, path: str | Path) -> BackgroundRun | None:
        """Export the last run's weights as a bioimage.io package at ``path`` (``.zip``).

        Runs in a worker thread with progress and cancel, like training; returns the run
        (``.wait()`` gives the package's path). A cancelled or failed export writes nothing.
        """
        from napari.utils.notifications import show_error

        from .jobs import export_job

        if self.running:
            show_error("A training run or an export is already in progress.")
            return None
        if self.last_trained is None:
            show_error("Nothing to export yet: train a model first.")
            return None
        path = Path(path)
        if path.suffix != ".zip":
            path = path.with_suffix(".zip")
        self._set_running(True)
        self.progress_row.start(f"Exporting {self.last_trained.label} to {path.name}…")
        self.current_run = BackgroundRun(
            functools.partial(export_job, self.last_trained.path, path),
            on_progress=self._on_export_progress,
            on_result=lambda written: written,
            on_done=self._on_export_done,
            what="Export",
        )
        return self.current_run

    # ------------------------------------------------------------------ internals
    def _on_export_progress(self, event: Any) -> None:
        self.progress_row.update_progress(event.done, event.total, event.elapsed_s, "")

    def _on_export_done(self, run: BackgroundRun) -> None:
        self._set_running(False)
        message = run.message or f"Exported a bioimage.io package: {run.result}"
        self.progress_row.reset(message)

    def _on_progress(self, event: Any) -> None:
        extra = f"loss {event.loss:.4g}"
        if event.val_psnr is not None:
            extra += f" · val PSNR {event.val_psnr:.2f} dB"
        self.progress_row.update_progress(event.step, event.steps, event.elapsed_s, extra)
        self.plot.add(event)

    def _on_result(self, outcome: Any) -> Any:
        result, trained = outcome
        self.last_trained = trained
        self.plot.metadata = dict(result.metadata)  # the noisy input's level joins the plot
        self.plot.update()
        trained_weights.register(trained)  # Denoise's weights list selects it
        return result

    def _on_done(self, run: BackgroundRun) -> None:
        self._set_running(False)
        if run.message:
            self.progress_row.reset(run.message)
        else:
            best = [v for v in run.result.history.get("val", []) if v.get("psnr") is not None]
            psnr = f", best val PSNR {max(v['psnr'] for v in best):.2f} dB" if best else ""
            self.progress_row.reset(
                f"Trained: {self.last_trained.label}{psnr}. Selected for Denoise."
            )

    def _follow_theme(self, event: Any = None) -> None:
        self.plot.set_theme(napari_theme(self.viewer))

    def _set_running(self, running: bool) -> None:
        for widget in self._inputs:
            widget.setEnabled(not running)
        trained = not running and self.last_trained is not None
        self.save_button.setEnabled(trained)
        self.export_button.setEnabled(trained)
        self.progress_row.cancel_button.setEnabled(running)

    def _ask_save(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Save trained weights", "trained.safetensors", "Safetensors (*.safetensors)"
        )
        if path:
            self.save_weights(path)

    def _ask_export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Export to bioimage.io", "model.zip", "bioimage.io package (*.zip)"
        )
        if path:
            self.export_bmz(path)


def _spin(low: int, high: int, value: int, step: int = 1) -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(low, high)
    spin.setSingleStep(step)
    spin.setValue(value)
    spin.setAlignment(Qt.AlignRight)
    return spin
