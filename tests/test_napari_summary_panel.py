"""The Model summary dock widget shows the core summaries, follows the model, saves reports."""

from __future__ import annotations

import pytest

from napari_histo_denoise._napari.summary_panel import layer_row_cells, memory_rows
from napari_histo_denoise.summary import comparison_rows, model_summary

PLUGIN = "napari-histo-denoise"
TILE, BATCH = 64, 2


@pytest.fixture
def panel(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    _, panel = viewer.window.add_plugin_dock_widget(PLUGIN, "Model summary")
    panel.set_config("basic", TILE, BATCH)
    qtbot.waitUntil(lambda: panel.ready, timeout=60_000)
    return panel


def test_rows_equal_the_core_summary(panel, qtbot):
    core = model_summary("basic", input_shape=(1, 3, TILE, TILE), batch_size=BATCH)
    assert panel.table_rows(panel.layers_table) == [layer_row_cells(r) for r in core.layers]
    assert panel.table_rows(panel.memory_table) == memory_rows(core)
    assert [row[0] for row in panel.table_rows(panel.components_table)] == [
        c.name for c in core.components
    ]
    pair = [core, model_summary("deep", input_shape=(1, 3, TILE, TILE), batch_size=BATCH)]
    expected = [(metric, *values) for metric, values in comparison_rows(pair)]
    assert panel.table_rows(panel.comparison_table) == expected


def test_follows_the_model_selection(panel, qtbot):
    panel.set_config("deep", TILE, BATCH)
    qtbot.waitUntil(lambda: panel.ready, timeout=60_000)
    core = model_summary("deep", input_shape=(1, 3, TILE, TILE), batch_size=BATCH)
    assert panel.summary.class_name == "DeepHistoAutoencoder"
    assert panel.table_rows(panel.layers_table) == [layer_row_cells(r) for r in core.layers]
    assert f"{core.total_params:,}" in panel.header.text()


def test_copy_and_save_the_full_report(panel, tmp_path):
    from qtpy.QtWidgets import QApplication

    panel.copy_report()
    text = QApplication.clipboard().text()
    assert text.startswith("HISTOPATHOLOGY AUTOENCODER - COMPREHENSIVE VISUALIZATION REPORT")
    assert "MODEL COMPARISON" in text
    assert "ARCHITECTURE MAP - BASIC AUTOENCODER" in text
    assert "ARCHITECTURE MAP - DEEP AUTOENCODER" in text
    assert f"Analysis for batch size: {BATCH}" in text
    saved = panel.save_report(tmp_path / "report.md")
    assert saved.read_text(encoding="utf-8").startswith("# Model report")
