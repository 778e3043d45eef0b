"""The ``Model summary`` dock widget: the core's model report as tables, with copy and save."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QApplication,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ..settings import MODEL_NAMES
from .runs import BackgroundRun

if TYPE_CHECKING:
    import napari

    from ..summary import ModelSummary

LAYER_COLUMNS = ("Layer", "Type", "Input shape", "Output shape", "Params")


def layer_row_cells(row: Any) -> tuple[str, str, str, str, str]:
    """The architecture-map cells of one core ``LayerRow`` (shapes as the text report shows)."""
    return (
        row.name,
        row.type,
        str(list(row.input_shapes)),
        str(row.output_shape),
        f"{row.params:,}",
    )


def memory_rows(summary: ModelSummary) -> list[tuple[str, str]]:
    """The memory analysis of ``summary`` as (item, MB) rows."""
    m = summary.memory
    rows = [
        ("Model parameters", m.parameters_mb),
        ("Input batch", m.input_mb),
        ("Output batch", m.output_mb),
        ("Inference: peak live activations", m.inference_activations_mb),
        ("Inference total", m.inference_mb),
        ("Training: gradients", m.gradients_mb),
        ("Training: optimizer states (AdamW)", m.optimizer_mb),
        ("Training: saved activations", m.activations_mb),
        ("Training total", m.training_mb),
    ]
    return [(item, f"{mb:,.1f}") for item, mb in rows]


def _fill(table: QTableWidget, headers: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    table.clear()
    table.setColumnCount(len(headers))
    table.setHorizontalHeaderLabels(list(headers))
    table.setRowCount(len(rows))
    for r, cells in enumerate(rows):
        for c, value in enumerate(cells):
            table.setItem(r, c, QTableWidgetItem(str(value)))
    table.resizeColumnsToContents()


def _table() -> QTableWidget:
    table = QTableWidget()
    table.setEditTriggers(QTableWidget.NoEditTriggers)
    table.verticalHeader().setVisible(False)
    table.horizontalHeader().setSectionResizeMode(QHeaderView.Interactive)
    table.horizontalHeader().setStretchLastSection(True)
    return table


class ModelSummaryPanel(QWidget):
    """Architecture map, components, memory for a tile and batch size, and basic vs deep.

    It follows the model, tile and batch size of the Histo Denoise widget when that widget
    calls :meth:`set_config`, and can be used on its own. The summaries come from
    :func:`napari_histo_denoise.summary.model_summary`, computed off the main thread.
    """

    def __init__(self, napari_viewer: napari.Viewer | None = None) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.summaries: dict[str, ModelSummary] = {}
        self.run: BackgroundRun | None = None
        self._cache: dict[tuple[str, int, int], ModelSummary] = {}
        self._pending = False

        self.model_combo = QComboBox()
        self.model_combo.addItems(MODEL_NAMES)
        self.tile_spin = QSpinBox()
        self.tile_spin.setRange(16, 4096)
        self.tile_spin.setSingleStep(16)
        self.tile_spin.setValue(256)
        self.batch_spin = QSpinBox()
        self.batch_spin.setRange(1, 1024)
        self.batch_spin.setValue(8)
        self.copy_button = QPushButton("Copy report")
        self.save_button = QPushButton("Save report…")
        self.header = QLabel()
        self.header.setWordWrap(True)
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)
        self.busy.setVisible(False)

        self.layers_table = _table()
        self.components_table = _table()
        self.memory_table = _table()
        self.comparison_table = _table()
        self.tabs = QTabWidget()
        self.tabs.addTab(self.layers_table, "Architecture map")
        self.tabs.addTab(self.components_table, "Components")
        self.tabs.addTab(self.memory_table, "Memory")
        self.tabs.addTab(self.comparison_table, "Basic vs deep")

        form = QFormLayout()
        form.addRow("Model", self.model_combo)
        form.addRow("Tile size (px)", self.tile_spin)
        form.addRow("Batch size", self.batch_spin)
        buttons = QHBoxLayout()
        buttons.addWidget(self.copy_button)
        buttons.addWidget(self.save_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.busy)
        layout.addWidget(self.header)
        layout.addWidget(self.tabs, 1)

        self.model_combo.currentTextChanged.connect(self.refresh)
        self.tile_spin.editingFinished.connect(self.refresh)
        self.batch_spin.editingFinished.connect(self.refresh)
        self.copy_button.clicked.connect(self.copy_report)
        self.save_button.clicked.connect(self._ask_save)
        # Deferred: whoever opens the panel usually calls set_config right away.
        QTimer.singleShot(0, self.refresh)

    # ------------------------------------------------------------------ public API
    @property
    def ready(self) -> bool:
        """Whether the tables show the current model, tile and batch size."""
        return (
            (self.run is None or self.run.done)
            and not self._pending
            and self._key() in self._cache
        )

    @property
    def idle(self) -> bool:
        """Whether no summary is being computed."""
        return (self.run is None or self.run.done) and not self._pending

    @property
    def summary(self) -> ModelSummary | None:
        """The summary of the selected model, once computed."""
        return self.summaries.get(self.model_combo.currentText())

    def set_config(self, model: str, tile_size: int, batch_size: int | None = None) -> None:
        """Show ``model`` at ``tile_size`` (and ``batch_size``, when not None)."""
        for widget in (self.model_combo, self.tile_spin, self.batch_spin):
            widget.blockSignals(True)
        self.model_combo.setCurrentText(model)
        self.tile_spin.setValue(tile_size)
        if batch_size:
            self.batch_spin.setValue(batch_size)
        for widget in (self.model_combo, self.tile_spin, self.batch_spin):
            widget.blockSignals(False)
        self.refresh()

    def table_rows(self, table: QTableWidget) -> list[tuple[str, ...]]:
        """The cells of one of the panel's tables, row by row."""
        return [
            tuple(table.item(r, c).text() for c in range(table.columnCount()))
            for r in range(table.rowCount())
        ]

    def report(self, fmt: str = "text") -> str:
        """The full report (comparison, then each model) in the seed's text layout."""
        from ..summary import render

        return render([self.summaries[name] for name in MODEL_NAMES], fmt)

    def copy_report(self) -> None:
        """Copy the full text report to the clipboard."""
        QApplication.clipboard().setText(self.report())

    def save_report(self, path: str | Path) -> Path:
        """Write the full report to ``path`` (Markdown for ``.md``, JSON for ``.json``)."""
        path = Path(path)
        fmt = {".md": "markdown", ".json": "json"}.get(path.suffix.lower(), "text")
        path.write_text(self.report(fmt) + "\n", encoding="utf-8")
        return path

    def refresh(self) -> None:
        """Show the cached summaries for the current settings, or compute them in a worker."""
        key = self._key()
        if self.run is not None and not self.run.done:
            self._pending = True
            return
        self._pending = False
        if key in self._cache:
            self._show()
            return
        _, tile, batch = key
        self.busy.setVisible(True)
        self._set_buttons(False)
        self.run = BackgroundRun(
            lambda cancel: _summaries_job(tile, batch),
            on_progress=lambda name: None,
            on_result=lambda found: self._store(tile, batch, found),
            on_done=self._run_done,
            what="Model summary",
        )

    # ------------------------------------------------------------------ internals
    def _key(self) -> tuple[str, int, int]:
        return (self.model_combo.currentText(), self.tile_spin.value(), self.batch_spin.value())

    def _store(self, tile: int, batch: int, found: dict[str, ModelSummary]) -> None:
        for name, summary in found.items():
            self._cache[(name, tile, batch)] = summary

    def _run_done(self, run: BackgroundRun) -> None:
        self.busy.setVisible(False)
        if self._pending:
            self.refresh()
        elif self._key() in self._cache:
            self._show()

    def _set_buttons(self, enabled: bool) -> None:
        self.copy_button.setEnabled(enabled)
        self.save_button.setEnabled(enabled)

    def _show(self) -> None:
        _, tile, batch = self._key()
        self.summaries = {name: self._cache[(name, tile, batch)] for name in MODEL_NAMES}
        s = self.summary
        self.header.setText(
            f"<b>{s.class_name}</b> ({s.description}): {s.total_params:,} parameters, "
            f"{s.size_mb:.1f} MB (fp32), {s.gflops:.1f} GFLOP per {tile}x{tile} tile"
        )
        _fill(self.layers_table, LAYER_COLUMNS, [layer_row_cells(r) for r in s.layers])
        components = [
            (c.name, f"{c.params:,}", f"{c.percent:.1f}%", _bar(c.percent)) for c in s.components
        ]
        _fill(self.components_table, ("Component", "Params", "Share", "Distribution"), components)
        _fill(self.memory_table, (f"Tile {tile}, batch {batch}", "MB"), memory_rows(s))
        from ..summary import comparison_rows

        pair = [self.summaries[name] for name in MODEL_NAMES]
        rows = [(metric, *values) for metric, values in comparison_rows(pair)]
        _fill(self.comparison_table, ("Metric", "Basic", "Deep"), rows)
        self._set_buttons(True)

    def _ask_save(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self,
            "Save model report",
            "model_report.txt",
            "Text (*.txt);;Markdown (*.md);;JSON (*.json)",
        )
        if path:
            self.save_report(path)


def _bar(percent: float, width: int = 30) -> str:
    """A text bar for the distribution column."""
    return "█" * round(percent / 100 * width)


def _summaries_job(tile: int, batch: int):
    """Worker job: the core summaries of both models at one tile and batch size."""
    from ..summary import model_summary

    found = {}
    for name in MODEL_NAMES:
        found[name] = model_summary(name, input_shape=(1, 3, tile, tile), batch_size=batch)
        yield name
    return found
