"""Scripting the plugin: denoise_layer / train_layer block and return, through the widget."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.data import immunohistochemistry

import napari_histo_denoise as hd
from napari_histo_denoise._napari.runs import RunFailed
from napari_histo_denoise.checkpoint import save_weights
from napari_histo_denoise.engine import denoise
from napari_histo_denoise.models import build_model


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(1)
    return save_weights(tmp_path_factory.mktemp("w") / "basic.safetensors", build_model("basic"))


@pytest.fixture
def viewer(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.add_image(immunohistochemistry()[100:164, 100:164], name="ihc", rgb=True)
    yield viewer
    from napari_histo_denoise._napari.scripting import histo_denoise_widget

    widget = histo_denoise_widget(viewer)
    qtbot.waitUntil(lambda: widget.idle, timeout=60_000)
    for panel in viewer.window.dock_widgets.values():
        if hasattr(panel, "idle"):
            qtbot.waitUntil(lambda p=panel: p.idle, timeout=60_000)


def test_denoise_layer_blocks_and_returns_the_new_layer(viewer, weights):
    layer = hd.denoise_layer(viewer, "ihc", weights=weights, tile_size=32, overlap=8, device="cpu")
    # The name says which weights made it.
    assert layer.name == "ihc [denoised: basic, basic.safetensors]" and layer.name in viewer.layers
    source = viewer.layers["ihc"].data
    expected = denoise(source, "basic", weights, tile_size=32, overlap=8, device="cpu")
    np.testing.assert_array_equal(layer.data, np.asarray(expected))
    assert layer.metadata["histo_denoise"]["tile_size"] == 32
    assert layer.metadata["histo_denoise"]["weights_label"] == "basic.safetensors"


def test_denoise_layer_with_the_residual_under_the_result(viewer, weights):
    options = dict(weights=weights, tile_size=32, overlap=8, device="cpu")
    layer = hd.denoise_layer(viewer, "ihc", residual=True, **options)
    names = [x.name for x in viewer.layers]
    residual = viewer.layers["ihc [residual: basic, basic.safetensors]"]
    assert names == ["ihc", residual.name, layer.name]  # the result stays on top
    source = viewer.layers["ihc"].data
    assert residual.data.dtype == np.int16 and residual.rgb
    np.testing.assert_array_equal(residual.data, source.astype(np.int16) - layer.data)
    assert tuple(residual.contrast_limits) == (-63.75, 63.75)  # zero at mid-grey
    assert residual.metadata["histo_denoise"]["weights_sha256"]
    hd.denoise_layer(viewer, "ihc", **options)  # the option is per call
    assert len(viewer.layers) == 4


def test_denoise_layer_rejects_bad_input_before_running(viewer, weights):
    with pytest.raises(ValueError, match="no Image layer named 'nope'"):
        hd.denoise_layer(viewer, "nope", weights=weights)
    with pytest.raises(ValueError, match="multiple of 16"):
        hd.denoise_layer(viewer, "ihc", weights=weights, tile_size=30)
    with pytest.raises(ValueError, match="needs weights"):
        hd.denoise_layer(viewer, "ihc")
    assert len(viewer.layers) == 1


def test_denoise_layer_raises_when_the_run_fails(viewer, tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(RunFailed, match="Bad weights file"):
        hd.denoise_layer(viewer, "ihc", weights=bad, tile_size=32, overlap=8, device="cpu")
    assert len(viewer.layers) == 1


def test_the_dock_widget_way(viewer, weights):
    _, widget = viewer.window.add_plugin_dock_widget("napari-histo-denoise", "Histo Denoise")
    widget.set_layer("ihc")
    widget.set_settings(weights=weights, tile_size=64, overlap=16, device="cpu")
    layer = widget.run().wait(timeout=60)
    assert layer.name == "ihc [denoised: basic, basic.safetensors]"


def test_train_layer_returns_the_result_and_selects_the_weights(viewer):
    result = hd.train_layer(
        viewer, "ihc", steps=2, patch_size=32, batch_size=2, device="cpu", seed=3
    )
    assert len(result.history["loss"]) == 2 and result.metadata["architecture"] == "basic"
    from napari_histo_denoise._napari.scripting import histo_denoise_widget

    widget = histo_denoise_widget(viewer)
    assert widget.weights.path() == widget.train.last_trained.path
    assert widget.train.extra["seed"] == 3
    with pytest.raises(ValueError, match="unknown training mode"):
        hd.train_layer(viewer, "ihc", mode="magic")
