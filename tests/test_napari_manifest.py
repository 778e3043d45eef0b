"""The plugin manifest: valid, categorised, and its widgets where napari users look for them."""

from __future__ import annotations

from pathlib import Path

from npe2 import PluginManifest

import napari_histo_denoise

MANIFEST = Path(napari_histo_denoise.__file__).parent / "napari.yaml"
PLUGIN = "napari-histo-denoise"


def test_manifest_is_valid_and_categorised():
    manifest = PluginManifest.from_file(MANIFEST)
    manifest.validate_imports()  # what `npe2 validate` checks beyond the schema
    assert {str(c) for c in manifest.categories} == {"Image Processing", "IO", "Dataset"}


def test_the_denoiser_is_under_layers_filter(make_napari_viewer, qtbot):
    from app_model.types import MenuItem
    from napari._app_model import get_app_model

    from napari_histo_denoise._napari.widget import HistoDenoiseWidget

    viewer = make_napari_viewer()
    app = get_app_model()
    command = f"{PLUGIN}.make_denoise_widget"
    items = app.menus.get_menu("napari/layers/filter")
    assert any(isinstance(i, MenuItem) and i.command.id == command for i in items)
    app.commands.execute_command(command).result()  # what clicking the menu entry does
    docked = viewer.window.dock_widgets.values()
    [widget] = [w for w in docked if isinstance(w, HistoDenoiseWidget)]
    qtbot.waitUntil(lambda: widget.idle, timeout=60_000)
