"""Denoise view through a real viewer: what the canvas shows, where the result lands, reuse."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.data import immunohistochemistry
from skimage.transform import downscale_local_mean

import napari_histo_denoise as hd
from napari_histo_denoise.checkpoint import save_weights
from napari_histo_denoise.engine import denoise
from napari_histo_denoise.models import build_model

PLUGIN = "napari-histo-denoise"
EXACT = {"tile_size": 64, "overlap": 16, "device": "cpu", "precision": "fp32", "backend": "torch"}


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Weights of a freshly built basic model (placement and reuse are tested, not quality)."""
    torch.manual_seed(0)
    return save_weights(tmp_path_factory.mktemp("w") / "basic.safetensors", build_model("basic"))


@pytest.fixture(scope="module")
def pyramid():
    """A real IHC image mirrored to 1024 x 1024 and its half-resolution level."""
    level0 = np.pad(immunohistochemistry(), ((0, 512), (0, 512), (0, 0)), mode="reflect")
    level1 = downscale_local_mean(level0, (2, 2, 1)).round().astype(np.uint8)
    return [level0, level1]


@pytest.fixture
def viewer(make_napari_viewer, pyramid, qtbot):
    viewer = make_napari_viewer()
    viewer.canvas.size = (200, 300)  # a hidden viewer's canvas keeps what it is given
    viewer.add_image(pyramid, name="slide", multiscale=True, scale=(2, 2), translate=(5, -7))
    yield viewer
    for widget in viewer.window.dock_widgets.values():
        if hasattr(widget, "run_view"):
            widget.cancel()
            qtbot.waitUntil(lambda w=widget: w.idle, timeout=60_000)


def _look_at(viewer, y, x, zoom):
    viewer.scene.camera.zoom = zoom
    viewer.scene.camera.center = (y, x)


def _expected(pyramid, level, weights, view):
    whole = denoise(pyramid[level], "basic", weights, **EXACT).compute()
    rows, columns = view["rows"], view["columns"]
    return whole[rows[0] : rows[1], columns[0] : columns[1]]


def test_view_lands_on_the_displayed_level_and_a_pan_reuses_tiles(viewer, pyramid, weights):
    source = viewer.layers["slide"]
    before = [level.copy() for level in pyramid]
    # 800 x 1200 world units on a 200 x 300 canvas: napari draws level 1 (a pixel a screen pixel).
    _look_at(viewer, 900, 1000, 0.25)
    result = hd.denoise_view(viewer, "slide", weights=weights, timeout=300, **EXACT)
    view = result.metadata["histo_denoise"]["view"]
    assert view["level"] == 1 and view["tiles_reused"] == 0 and view["tiles_computed"] > 0
    assert view["rows"] == [124, 325] and view["columns"] == [102, 403]  # 200 x 300, rounded out
    np.testing.assert_array_equal(result.data, _expected(pyramid, 1, weights, view))
    # Each result pixel sits in the world where its level-1 pixel is drawn.
    r0, c0 = view["rows"][0], view["columns"][0]
    height, width = result.data.shape[:2]
    for y, x in ((0, 0), (height - 1, width - 1), (17, 230)):
        np.testing.assert_allclose(
            result.data_to_world((y, x)), source.data_to_world(((r0 + y) * 2, (c0 + x) * 2))
        )

    _look_at(viewer, 900 + 60, 1000 - 100, 0.25)  # a small pan
    panned = hd.denoise_view(viewer, weights=weights, timeout=300, **EXACT)
    assert panned.name == result.name and len(viewer.layers) == 2  # updated, not added
    moved = panned.metadata["histo_denoise"]["view"]
    assert moved["rows"][0] > r0 and moved["columns"][0] < c0
    assert moved["tiles_reused"] > 0 and 0 < moved["tiles_computed"] < view["tiles_computed"]
    np.testing.assert_array_equal(panned.data, _expected(pyramid, 1, weights, moved))
    np.testing.assert_allclose(
        panned.data_to_world((0, 0)),
        source.data_to_world((moved["rows"][0] * 2, moved["columns"][0] * 2)),
    )
    for level, original in zip(source.data, before, strict=True):
        np.testing.assert_array_equal(np.asarray(level), original)  # the source is untouched


def test_the_level_is_the_one_napari_draws(make_napari_viewer, pyramid, qtbot):
    from napari_histo_denoise._napari.view import visible_region

    viewer = make_napari_viewer(show=True)
    layer = viewer.add_image(pyramid, name="slide", multiscale=True, scale=(2, 2))
    levels = set()
    for zoom, centre in ((0.1, (1000, 1000)), (0.4, (700, 900)), (1.5, (1200, 300))):
        _look_at(viewer, *centre, zoom)
        qtbot.waitUntil(lambda z=zoom: viewer.scene.camera.zoom == z)
        qtbot.wait(300)  # let the canvas draw
        view = visible_region(viewer, layer)
        assert view.level == layer.data_level
        levels.add(view.level)
        corners = layer.corner_pixels[:, -2:]  # what napari loaded: the view, chunk-aligned
        assert corners[0, 0] <= view.rows.start and view.rows.stop - 1 <= corners[1, 0]
        assert corners[0, 1] <= view.columns.start and view.columns.stop - 1 <= corners[1, 1]
    assert levels == {0, 1}


def test_cancel_leaves_the_viewer_as_it_was(viewer, weights, qtbot):
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Histo Denoise")
    _look_at(viewer, 300, 300, 2.0)
    first = hd.denoise_view(viewer, "slide", weights=weights, timeout=300, **EXACT)
    kept = (first.data.copy(), first.translate.copy(), dict(first.metadata))
    _look_at(viewer, 1500, 1500, 2.0)
    widget.set_settings(tile_size=32, overlap=8, batch_size=1)
    widget.view_button.click()
    run = widget.current_run
    qtbot.waitUntil(lambda: widget.progress_row.bar.value() > 0, timeout=60_000)
    widget.progress_row.cancel_button.click()
    qtbot.waitUntil(lambda: run.done, timeout=5_000)
    assert run.status == "cancelled"
    assert len(viewer.layers) == 2
    np.testing.assert_array_equal(first.data, kept[0])
    np.testing.assert_array_equal(first.translate, kept[1])
    assert first.metadata == kept[2]
    assert widget.view_button.isEnabled()


def test_the_view_is_redone_when_the_camera_stops(viewer, weights, qtbot):
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Histo Denoise")
    widget.set_layer("slide")
    widget.set_settings(weights=weights, **EXACT)
    widget.view_auto_check.setChecked(True)
    _look_at(viewer, 300, 300, 2.0)
    name = "slide [view denoised: basic, basic.safetensors]"
    qtbot.waitUntil(lambda: name in viewer.layers and widget.idle, timeout=60_000)
    rows = viewer.layers[name].metadata["histo_denoise"]["view"]["rows"]
    _look_at(viewer, 340, 300, 2.0)
    qtbot.waitUntil(
        lambda: viewer.layers[name].metadata["histo_denoise"]["view"]["rows"] != rows,
        timeout=60_000,
    )
    assert viewer.layers[name].metadata["histo_denoise"]["view"]["rows"][0] > rows[0]
    widget.view_auto_check.setChecked(False)


def test_a_plane_of_a_stack_shows_on_that_plane_only(make_napari_viewer, weights, qtbot):
    viewer = make_napari_viewer()
    viewer.canvas.size = (200, 300)
    stack = np.stack([immunohistochemistry()[:96, :128], immunohistochemistry()[200:296, :128]])
    viewer.add_image(stack, name="stack", rgb=True)
    viewer.dims.set_point(0, 1)
    _look_at(viewer, 48, 64, 3.0)
    result = hd.denoise_view(viewer, "stack", weights=weights, timeout=300, **EXACT)
    view = result.metadata["histo_denoise"]["view"]
    assert view["plane"] == [1] and result.data.shape[0] == 1
    whole = denoise(stack[1], "basic", weights, **EXACT).compute()
    rows, columns = slice(*view["rows"]), slice(*view["columns"])
    np.testing.assert_array_equal(result.data[0], whole[rows, columns])
    np.testing.assert_allclose(result.translate[0], 1)  # on plane 1, not broadcast over planes


def test_views_it_cannot_denoise_are_refused_clearly(viewer, weights):
    _look_at(viewer, 90_000, 90_000, 2.0)
    with pytest.raises(ValueError, match="No pixel of layer 'slide' is in view"):
        hd.denoise_view(viewer, "slide", weights=weights)
    viewer.dims.ndisplay = 3
    with pytest.raises(ValueError, match="2D view"):
        hd.denoise_view(viewer, "slide", weights=weights)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Histo Denoise")
    widget.set_settings(weights=weights)
    widget.view_button.click()  # refused: the widget's status line says why, as the notification
    assert "works in the 2D view" in widget.progress_row.status.text()
    viewer.dims.ndisplay = 2
    viewer.add_image(np.zeros((3, 64, 64), np.uint8), name="stack", translate=(5, 0, 0))
    viewer.add_image(np.zeros((3, 8, 8), np.uint8), name="other")  # planes 0-2 in the world
    _look_at(viewer, 32, 32, 2.0)
    viewer.dims.set_point(0, 0)  # before the stack's first plane
    with pytest.raises(ValueError, match="No plane of layer 'stack' is in view"):
        hd.denoise_view(viewer, "stack", weights=weights)
    viewer.dims.set_point(0, 6)
    viewer.dims.thickness = (2, 0, 0)  # napari shows the mean of the planes around the point
    with pytest.raises(ValueError, match="projection of planes"):
        hd.denoise_view(viewer, "stack", weights=weights)
    viewer.layers.remove("stack")
    viewer.layers.remove("other")
    viewer.dims.thickness = (0, 0)
    viewer.add_image(np.zeros((8000, 8000), np.uint8), name="huge")
    _look_at(viewer, 4000, 4000, 0.01)
    with pytest.raises(ValueError, match=r"at most 16\.8 Mpx"):
        hd.denoise_view(viewer, "huge", weights=weights)
    assert len(viewer.layers) == 2


def test_an_updated_view_follows_the_source_when_it_moves(make_napari_viewer):
    from napari_histo_denoise._napari.view import View, show_view_result

    viewer = make_napari_viewer()
    source = viewer.add_image(np.zeros((64, 80), np.uint8), scale=(2, 3), rotate=30, name="s")
    view = View(0, (), slice(10, 30), slice(20, 50))
    record = {"model": "basic", "weights_label": "w.safetensors"}
    for rotate in (30, 75):
        source.rotate = rotate
        result = show_view_result(viewer, source, np.ones((20, 30), np.uint8), view, record)
        for y, x in ((0, 0), (19, 0), (7, 29)):
            np.testing.assert_allclose(
                result.data_to_world((y, x)), source.data_to_world((10 + y, 20 + x)), atol=1e-9
            )
    assert len(viewer.layers) == 2


def test_new_data_in_a_layer_is_never_served_old_tiles(viewer):
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Histo Denoise")
    layer = viewer.layers["slide"]
    token = widget._view_source(layer)
    assert widget._view_source(layer) == token
    layer.data = [np.asarray(level)[::-1].copy() for level in layer.data]
    assert widget._view_source(layer) != token


def test_a_cancel_is_not_undone_by_a_pending_redo(viewer, weights, qtbot):
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Histo Denoise")
    widget.set_layer("slide")
    widget.set_settings(weights=weights, tile_size=32, overlap=8, batch_size=1, device="cpu")
    _look_at(viewer, 300, 300, 0.5)
    run = widget.run_view()
    widget.view_auto_check.setChecked(True)
    _look_at(viewer, 340, 300, 0.5)  # the camera stops during the run: a redo is queued
    qtbot.waitUntil(lambda: widget._view_redo, timeout=5_000)
    widget.cancel()
    qtbot.waitUntil(lambda: run.done, timeout=5_000)
    qtbot.wait(2 * 500)
    assert run.status == "cancelled" and widget.current_run is run and widget.idle
    assert len(viewer.layers) == 1
    widget.view_auto_check.setChecked(False)
